"""Pipelines that ship with Stepline."""
