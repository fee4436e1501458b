"""What persist raises when a DataFrame cannot be stored as asked.

A class of its own (not psycopg's errors) so that callers tell "your frame
cannot be stored like this" from "the server refused": the first comes with
a hint and is raised before anything is written.
"""

from __future__ import annotations

__all__ = ["PersistError", "TableExists", "unsupported"]


class PersistError(ValueError):
    """The DataFrame cannot be stored as asked; the message says why and what to do.

    ``hint`` is a second line of advice (may be empty).
    """

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


class TableExists(PersistError):
    """``mode="create"`` and the table is already there."""


def unsupported(name: str, what: str) -> PersistError:
    """The error for a column whose values have no PostgreSQL type here."""
    return PersistError(
        f"column {name!r} holds {what}, which has no PostgreSQL type here",
        "convert it first, e.g. df[col].astype(str), or drop it",
    )
