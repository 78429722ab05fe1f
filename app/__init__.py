"""Stepline: step pipelines served as REST resources."""
