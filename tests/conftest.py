"""Shared test fixtures. (Minimal placeholder: DATABASE_URL only; the embedded
fallback is added with lunepool_magic.embedded.)"""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def pg_url() -> str:
    """URL of a real, running PostgreSQL server for the whole session."""
    url = os.environ.get("DATABASE_URL")
    if not url:
        pytest.fail("set DATABASE_URL (the embedded fallback is not wired yet)")
    return url
