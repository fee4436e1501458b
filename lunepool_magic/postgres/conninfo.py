"""Describing and masking a connection target, so no password reaches any output.

The pool names its target in ``repr``, logs and errors; the notebook shows it
in "Connected to" and the connections list. Both take the description and the
masking from here.
"""

from __future__ import annotations

import os
import re
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from lunepool_magic.postgres.errors import ShownWithoutFrames

__all__ = ["ConnectionStringError", "describe_target", "mask_password", "parse_conninfo"]

# The password in a URL's user info ("postgresql://user:SECRET@host") and in a
# key=value conninfo or URL query ("password=SECRET", "password='SE CRET'").
_URL_PASSWORD = re.compile(r"(://[^:/?#@\s\"]*:)[^@/?#\s\"]*@")
_KV_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'?|[^\s&\"]+)", re.IGNORECASE)


def describe_target(params: dict[str, Any]) -> str:
    """A URL-like description of connection parameters, without the password."""
    env = os.environ
    user = params.get("user") or env.get("PGUSER") or ""
    host = params.get("host") or env.get("PGHOST") or ""
    port = params.get("port") or env.get("PGPORT") or ""
    dbname = params.get("dbname") or env.get("PGDATABASE") or ""
    # A Unix socket directory is shown in brackets, as it cannot be a host name;
    # the home directory is shortened to ~, so shared notebooks do not carry
    # the user's account name.
    if host.startswith("/"):
        home = os.path.expanduser("~")
        if home not in ("", "/") and (host == home or host.startswith(home + "/")):
            host = "~" + host[len(home) :]
        where = f"[{host}]"
    else:
        where = host or "localhost"
    if port:
        where += f":{port}"
    return f"postgresql://{user + '@' if user else ''}{where}/{dbname}"


def mask_password(text: str, password: str | None = None) -> str:
    """``text`` with any password in it replaced by ``***``.

    Masks a known ``password`` wherever it appears, and whatever looks like
    one in a URL or conninfo string quoted by a message (libpq quotes the whole
    URL in some parse errors, before we could know the password).
    """
    if password:
        text = text.replace(password, "***")
    text = _URL_PASSWORD.sub(r"\1***@", text)
    return _KV_PASSWORD.sub(r"\1***", text)


# libpq quotes the part of a connection string it could not parse ("pa%zz",
# "pa ss"): that part may be a piece of the password, so no quoted text of a
# parse error is ever shown.
_QUOTED = re.compile(r'"[^"]*"?')
# A URL's user info and host: everything between "://" and the path or query.
_AUTHORITY = re.compile(r"\s*postgres(?:ql)?://([^/?#]*)", re.IGNORECASE)


class ConnectionStringError(ShownWithoutFrames, psycopg.ProgrammingError):
    """A URL or conninfo string libpq cannot parse; the message never quotes it."""

    __module__ = "lunepool_magic.postgres"


def parse_conninfo(conninfo: str = "", **params: Any) -> dict[str, Any]:
    """libpq's parse of ``conninfo`` plus ``params``, or an error that shows no secret.

    Besides libpq's own errors, a URL with two ``@`` before its host is refused:
    it means a raw ``@`` in the password (``postgresql://u:p@ss@host``), and libpq
    would take the rest of the password for the host (and show it) or drop it.
    """
    message = None
    try:
        parsed = conninfo_to_dict(make_conninfo(conninfo, **params))
    except psycopg.ProgrammingError as exc:
        reason = mask_password(str(exc).strip(), params.get("password"))
        message = _QUOTED.sub('"..."', reason)
    # Raised outside the except block, so that no unmasked error is chained.
    if message is not None:
        raise ConnectionStringError(
            f"invalid connection parameters: {message}; percent-encode special characters "
            "in a URL (a space is %20, % is %25, @ is %40), or use key=value form"
        )
    authority = _AUTHORITY.match(conninfo)
    if authority is not None and authority.group(1).count("@") > 1:
        raise ConnectionStringError(
            "invalid connection parameters: the URL has more than one '@' before the host; "
            "write an '@' in the user name or password as %40"
        )
    return parsed
