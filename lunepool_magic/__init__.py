"""lunepool_magic: PostgreSQL from Jupyter through a fair, thread-safe pool."""

__version__ = "0.1.0"
