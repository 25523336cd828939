"""Synchronisation with the configuration spreadsheet and incoming webhooks."""
