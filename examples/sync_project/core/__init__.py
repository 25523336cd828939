"""Shared infrastructure: database access lives in core.db."""
