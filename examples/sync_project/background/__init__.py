"""Background jobs (run by a scheduler, not by the request handlers)."""
