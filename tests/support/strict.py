"""Strict CI mode: with ``LUNEPOOL_CI_STRICT=1`` every skip is a failure.

A skip in CI usually means a missing tool (pgbouncer, a server) and silently
hides the tests that needed it. In strict mode the skip becomes a failure
(an error when it happens in setup, e.g. from a fixture or a skip marker) and
its message keeps the original reason. Expected failures (xfail) are not
skips and stay as they are.

Loaded as a plugin by ``tests/conftest.py`` (``pytest_plugins``).
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

import pytest

STRICT_ENV = "LUNEPOOL_CI_STRICT"


def strict_mode() -> bool:
    """True when skips must fail (``LUNEPOOL_CI_STRICT=1``)."""
    return os.environ.get(STRICT_ENV) == "1"


def _skip_reason(longrepr: Any) -> str:
    # A skip's longrepr is (path, lineno, "Skipped: reason").
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        path, lineno, message = longrepr
        return f"{message} ({path}:{lineno})"
    return str(longrepr)


def _fail_skip(report: pytest.TestReport | pytest.CollectReport) -> None:
    report.outcome = "failed"
    report.longrepr = (
        f"{STRICT_ENV}=1: skipped tests fail in strict CI mode; "
        f"skip reason: {_skip_reason(report.longrepr)}"
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Turn a skipped setup/call/teardown report into a failure in strict mode."""
    report = yield
    if strict_mode() and report.skipped and not hasattr(report, "wasxfail"):
        _fail_skip(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    """Same for a whole module skipped at collection (``pytest.importorskip``, ...)."""
    report = yield
    if strict_mode() and report.skipped:
        _fail_skip(report)
    return report
