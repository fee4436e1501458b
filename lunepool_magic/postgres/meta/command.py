"""Reading a backslash command: its name, the S and + modifiers, and its pattern."""

from __future__ import annotations

import re

from lunepool_magic.postgres.meta.catalog import MetaCommand, MetaError

__all__ = ["COMMANDS", "HELP", "parse_meta"]

# Every command we answer, with its help line; the modifiers it takes are in
# the usage. The order is the order of ``\?``.
HELP = [
    ("\\d [PATTERN]", "list relations, or describe the one PATTERN names"),
    ("\\dt[S+] [PATTERN]", "tables"),
    ("\\dv[S+] [PATTERN]", "views"),
    ("\\dm[S+] [PATTERN]", "materialized views"),
    ("\\di[S+] [PATTERN]", "indexes"),
    ("\\ds[S+] [PATTERN]", "sequences"),
    ("\\dE[S+] [PATTERN]", "foreign tables"),
    ("\\dn[S+] [PATTERN]", "schemas"),
    ("\\df[S+] [PATTERN]", "functions"),
    ("\\sf FUNCTION", "a function's definition (name, or name(argument types))"),
    ("\\dT[S+] [PATTERN]", "data types"),
    ("\\dD[S+] [PATTERN]", "domains"),
    ("\\dp [PATTERN]", "access privileges of tables, views and sequences (also \\z)"),
    ("\\du[S] [PATTERN]", "roles (also \\dg)"),
    ("\\dx[+] [PATTERN]", "extensions"),
    ("\\dy[+] [PATTERN]", "event triggers"),
    ("\\db[+] [PATTERN]", "tablespaces"),
    ("\\des[+] [PATTERN]", "foreign servers"),
    ("\\dew[+] [PATTERN]", "foreign-data wrappers"),
    ("\\l[+] [PATTERN]", "databases"),
    ("\\dconfig[+] [PATTERN]", "settings (without a pattern: those not at their default)"),
    ("\\?", "this list"),
]

# Command name -> the name it is an alias of.
COMMANDS = {
    name: name
    for name in (
        "d", "dt", "dv", "dm", "di", "ds", "dE", "dn", "df", "sf", "dT", "dD", "dp",
        "du", "dx", "dy", "db", "des", "dew", "l", "dconfig", "?",
    )
}  # fmt: skip
COMMANDS.update({"z": "dp", "dg": "du", "list": "l"})

_NOT_SUPPORTED = {
    "x": "expanded display is a psql setting; DataFrames have no such mode",
    "c": "connect with %sql postgresql://user@host/db [--alias NAME]",
    "connect": "connect with %sql postgresql://user@host/db [--alias NAME]",
    "copy": "load a DataFrame with %sql --persist df; read a table with %sql SELECT",
    "i": "paste the file into a %%sql cell",
    "timing": "IPython's %%time measures a cell",
    "pset": "display settings are pandas': pd.set_option(...)",
    "q": "there is nothing to quit",
}

# Longest names first, so that \des is not read as \d with pattern "es".
_NAMES = sorted({*COMMANDS, *_NOT_SUPPORTED} - {"?"}, key=len, reverse=True)
_COMMAND_RE = re.compile(
    rf"\\(\?|{'|'.join(map(re.escape, _NAMES))})(S?)(\+?)(?:\s+(.*?))?\s*;?\s*\Z", re.DOTALL
)
_ANY_COMMAND_RE = re.compile(r"\\([A-Za-z]+)")


def parse_meta(text: str) -> MetaCommand:
    """Parse one backslash command (the whole cell, one line)."""
    stripped = text.strip()
    lines = [line for line in stripped.splitlines() if line.strip()]
    if len(lines) > 1:
        raise MetaError(
            "one backslash command per cell (SQL and backslash commands do not mix); "
            "put each in its own cell"
        )
    match = _COMMAND_RE.match(stripped)
    if match is None:
        unknown = _ANY_COMMAND_RE.match(stripped)
        if unknown is not None:
            raise MetaError(
                f"unsupported backslash command \\{unknown.group(1)}; \\? lists the supported ones"
            )
        raise MetaError(f"could not read the backslash command {stripped!r}; \\? lists them")
    name, system, verbose, pattern = match.groups()
    if name in _NOT_SUPPORTED:
        raise MetaError(f"\\{name} is not supported in %sql: {_NOT_SUPPORTED[name]}")
    name = COMMANDS[name]
    if name == "sf":
        if not pattern:
            raise MetaError("\\sf needs a function: \\sf name, or \\sf name(argument types)")
        if system or verbose:
            raise MetaError(
                "\\sf takes no S or +: it shows the definition; the frame's index numbers its lines"
            )
    elif pattern is not None and _has_unquoted_space(pattern):
        raise MetaError(
            f'\\{name} takes one pattern, not {pattern!r}; quote a name with spaces: \\d "my table"'
        )
    return MetaCommand(name, bool(system), bool(verbose), pattern or None, stripped)


def _has_unquoted_space(pattern: str) -> bool:
    quoted = False
    for char in pattern:
        if char == '"':
            quoted = not quoted
        elif char.isspace() and not quoted:
            return True
    return False
