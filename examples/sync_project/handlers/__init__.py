"""Request handlers: the middleware injects a session and commits after the handler."""
