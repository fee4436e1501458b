"""Describing and masking a connection target, so no password reaches any output.

The pool names its target in ``repr``, logs and errors; the notebook shows it
in "Connected to" and the connections list. Both take the description and the
masking from here.
"""

from __future__ import annotations

import os
import re
from typing import Any

__all__ = ["describe_target", "mask_password"]

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
