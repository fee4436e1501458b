"""Fixtures for the embedded server's tests: real OS users (root only) and a site they can use."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from osusers import IS_ROOT, OsUser, make_user, make_user_site, remove_user


@pytest.fixture
def os_users() -> Iterator[Callable[..., OsUser]]:
    """Factory: ``os_users(home=None)`` makes a user; removed, with its processes, at the end."""
    if not IS_ROOT:
        pytest.skip("making OS users needs root (CI runs as root)")
    made: list[OsUser] = []

    def make(home: Path | None = None) -> OsUser:
        made.append(make_user(home))
        return made[-1]

    try:
        yield make
    finally:
        errors = []
        for user in made:
            try:
                remove_user(user)
            except Exception as err:  # remove the others all the same
                errors.append(err)
        if errors:
            raise errors[0]


@pytest.fixture(scope="session")
def user_site() -> Iterator[Path]:
    """A world-readable folder to put on another user's PYTHONPATH."""
    root = Path(tempfile.mkdtemp(prefix="lpm-site-"))
    try:
        yield make_user_site(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
