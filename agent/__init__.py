"""Watchword: an edge video analytics agent for standing natural-language anomaly queries."""

__version__ = "0.1.0"
