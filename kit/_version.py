"""The kit's version (one place; ``kit.__version__`` re-exports it)."""

__version__ = "0.1.0"
