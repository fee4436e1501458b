"""``lunepool_magic.persist``: the documented import path of the persist API.

The code lives in :mod:`lunepool_magic.postgres.persist` (it is wrapper code:
psycopg and pandas, no IPython); this module keeps the short path working.
"""

from lunepool_magic.postgres.persist import (
    COLUMNS_ATTR,
    PersistError,
    PersistResult,
    TableExists,
    column_types,
    parse_table_name,
    persist,
)

__all__ = [
    "COLUMNS_ATTR",
    "PersistError",
    "PersistResult",
    "TableExists",
    "column_types",
    "parse_table_name",
    "persist",
]
