"""Stepline: step pipelines served as REST resources."""

__version__ = "0.1.0"
