"""Drift engine."""
