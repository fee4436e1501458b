"""Issue 3, behaviour 7: a password never shows, wherever the pool talks.

Checked places: ``repr``/``str``/``name``/``target`` of the pool and of its
stats, the messages (and reprs, and formatted tracebacks) of every exception
in a raised chain, and every log record at DEBUG from any logger
(lunepool_magic's, psycopg's, the root's), with their tracebacks.

The server must really check the password, or a wrong one proves nothing.
The shared server may trust every local client (the embedded server does), so
these tests use a private embedded server and make it require SCRAM for one
role of their own, whatever ``DATABASE_URL`` says.
"""

from __future__ import annotations

import logging
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from support.passwords import ROLE, PasswordServer

from lunepool_magic.postgres import ConnectionFailed, PoolTimeout, create_pool, destroy_pool

WAIT = 10.0  # upper bound of every wait below; reached only when a test fails


@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Capture every log record, from every logger, at DEBUG."""
    caplog.set_level(logging.DEBUG)
    for name in ("lunepool_magic", "psycopg"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def assert_not_in_logs(caplog: pytest.LogCaptureFixture, *secrets: str) -> None:
    texts = [caplog.text]  # formatted, tracebacks included
    for record in caplog.records:
        texts += [record.getMessage(), repr(record.args), str(record.exc_info or "")]
    for secret in secrets:
        assert not any(secret in text for text in texts), f"{secret!r} appears in a log record"


def assert_not_in_exception(exc: BaseException, *secrets: str) -> None:
    """Neither the exception, nor its formatted traceback, nor anything it chains shows a secret."""
    texts = ["".join(traceback.format_exception(exc))]
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        texts += [str(current), repr(current), *map(str, current.args)]
        current = current.__cause__ or current.__context__
    for secret in secrets:
        assert not any(secret in text for text in texts), f"{secret!r} appears in {exc!r}"


def all_reprs(pool) -> list[str]:
    return [repr(pool), str(pool), pool.name, pool.target, repr(pool.stats())]


@pytest.mark.parametrize("form", ["url", "conninfo", "keywords"])
def test_right_password_is_used_and_never_shown(
    form: str, password_server: PasswordServer, all_logs
) -> None:
    secret = password_server.password
    if form == "url":
        pool = create_pool(password_server.url(secret), max_connections=1)
    elif form == "conninfo":
        pool = create_pool(password_server.conninfo(secret), max_connections=1)
    else:
        pool = create_pool(
            host=password_server.host,
            port=password_server.port or None,
            database=password_server.dbname,
            user=ROLE,
            password=secret,
            max_connections=1,
        )
    try:
        with pool.connection() as conn:  # the server checked the password
            assert conn.execute("SELECT current_user").fetchone() == (ROLE,)
            for text in all_reprs(pool):
                assert secret not in text
            with pytest.raises(PoolTimeout) as info, pool.connection(timeout=0):
                pass
            assert_not_in_exception(info.value, secret)
        for text in all_reprs(pool):
            assert secret not in text
    finally:
        destroy_pool(pool)
    assert_not_in_logs(all_logs, secret)


@pytest.mark.parametrize("form", ["url", "conninfo"])
def test_wrong_password_fails_clearly_and_is_never_shown(
    form: str, password_server: PasswordServer, all_logs
) -> None:
    wrong = f"Wrong-{uuid.uuid4().hex}"
    target = password_server.url(wrong) if form == "url" else password_server.conninfo(wrong)
    pool = create_pool(target, max_connections=1)
    try:
        with pytest.raises(ConnectionFailed) as info, pool.connection():
            pass
        message = str(info.value)
        assert "password authentication failed" in message
        assert f"could not connect to postgresql://{ROLE}@" in message  # names the target
        assert_not_in_exception(info.value, wrong, password_server.password)
        for text in all_reprs(pool):
            assert wrong not in text
    finally:
        destroy_pool(pool)
    # The same when the pool opens connections at creation.
    with pytest.raises(ConnectionFailed) as info:
        create_pool(target, min_connections=1)
    assert_not_in_exception(info.value, wrong)
    assert_not_in_logs(all_logs, wrong, password_server.password)


def test_unreachable_server_error_does_not_show_the_password(tcp_proxy, all_logs) -> None:
    secret = f"Pw-{uuid.uuid4().hex}"
    params = conninfo_to_dict(tcp_proxy.url)
    params["password"] = secret
    tcp_proxy.refuse()
    pool = create_pool(make_conninfo("", **params), max_connections=1)
    try:
        with pytest.raises(ConnectionFailed) as info:
            pool.with_connection(lambda conn: None)
        assert "refused" in str(info.value).lower()
        assert_not_in_exception(info.value, secret)
    finally:
        destroy_pool(pool)
    assert_not_in_logs(all_logs, secret)


@pytest.mark.parametrize("source", ["PGPASSWORD", "pgpass"])
def test_password_from_the_libpq_environment(
    source: str, password_server: PasswordServer, tmp_path: Path, monkeypatch, all_logs
) -> None:
    """As psql users expect: PGPASSWORD, or a password file, and no password in the URL."""
    secret = password_server.password
    if source == "PGPASSWORD":
        monkeypatch.setenv("PGPASSWORD", secret)
    else:
        passfile = tmp_path / "pgpass"
        passfile.write_text(f"*:*:*:{ROLE}:{secret}\n")
        passfile.chmod(0o600)  # libpq ignores a file others can read
        monkeypatch.setenv("PGPASSFILE", str(passfile))
        monkeypatch.delenv("PGPASSWORD", raising=False)
    pool = create_pool(password_server.conninfo(None), max_connections=1)
    try:
        assert pool.with_connection(lambda c: c.execute("SELECT current_user").fetchone()) == (
            ROLE,
        )
        for text in all_reprs(pool):
            assert secret not in text
    finally:
        destroy_pool(pool)
    assert_not_in_logs(all_logs, secret)


SECRET = "Pw-NeverShowMe-1234"

MALFORMED: list[Callable[[], object]] = [
    # libpq quotes the whole URL in this parse error, password and all.
    lambda: create_pool(f"postgresql://someone:{SECRET}@[::1/db"),
    lambda: create_pool(f"postgresql://someone:{SECRET}@host/db?no_such_option=1"),
    lambda: create_pool(f"host=localhost password='{SECRET}"),
    lambda: create_pool(f"host=localhost password={SECRET} no_such_option=1"),
    lambda: create_pool("host=localhost", password=SECRET, no_such_option="1"),
]


@pytest.mark.parametrize("make", MALFORMED, ids=["url-ipv6", "url-query", "quote", "kv", "kwarg"])
def test_malformed_connection_string_error_does_not_show_the_password(
    make: Callable[[], object], all_logs
) -> None:
    with pytest.raises(psycopg.ProgrammingError) as info:
        make()
    assert "invalid connection parameters" in str(info.value)
    assert_not_in_exception(info.value, SECRET)
    assert_not_in_logs(all_logs, SECRET)
