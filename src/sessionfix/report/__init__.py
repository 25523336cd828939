"""Renderers: diff, json, tables, markdown, sarif. They format records; they never decide."""
