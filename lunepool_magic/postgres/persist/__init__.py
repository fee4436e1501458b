"""Store a pandas DataFrame as a PostgreSQL table through COPY: ``%sql --persist df``.

``persist(conn, df, "sales.orders", mode="create" | "append" | "replace")``
runs ``CREATE TABLE`` and one ``COPY ... FROM STDIN`` in one transaction
(a savepoint inside an open one): all or nothing. The column types come from
the server types a ``%sql`` result recorded, else from the dtypes; the type
table, the round-trip rules and the design are in docs/persist.md.

Importing this package costs only the standard library: the table-name
parser and the errors are here at once (option parsing checks ``--table``
with them), the rest loads pandas, pyarrow and psycopg on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from lunepool_magic.postgres.persist.errors import PersistError, TableExists
from lunepool_magic.postgres.persist.names import parse_table_name

if TYPE_CHECKING:
    from lunepool_magic.postgres.persist.store import PersistResult, column_types, persist
    from lunepool_magic.postgres.persist.targets import COLUMNS_ATTR

__all__ = [
    "COLUMNS_ATTR",
    "PersistError",
    "PersistResult",
    "TableExists",
    "column_types",
    "parse_table_name",
    "persist",
]

# Public name -> the submodule that defines it, imported when first asked for.
_LAZY = {
    "COLUMNS_ATTR": "targets",
    "PersistResult": "store",
    "column_types": "store",
    "persist": "store",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
