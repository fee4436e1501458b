"""Test infrastructure: private servers, a breakable proxy, PgBouncer, strict CI mode.

Imported as ``support.*`` (``tests/conftest.py`` puts ``tests/`` on sys.path).
"""
