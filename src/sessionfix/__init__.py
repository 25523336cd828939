"""sessionfix: find and repair SQLAlchemy session anti-patterns with a concrete syntax tree."""

__version__ = "0.1.0"
