"""The shapes a result can take: a pandas DataFrame, an Arrow table, a polars DataFrame.

``output=`` of :func:`~lunepool_magic.postgres.query` and ``run`` (and of the
COPY path) is one of ``OUTPUTS``. Arrow tables are assembled here from the
columns that :mod:`lunepool_magic.postgres.arrow` built; polars DataFrames are
made from them by ``polars.from_arrow``, which takes numeric and temporal
buffers over without copying (strings are copied into polars' own layout).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

__all__ = ["OUTPUTS", "arrow_table", "check_output", "convert"]

#: Every value ``output=`` takes; "pandas" is the default.
OUTPUTS = ("pandas", "arrow", "polars")

#: Arrow schema metadata key holding the PostgreSQL column types as JSON
#: ``[[name, type_oid, typmod], ...]`` (the DataFrame's ``attrs`` hold the same).
COLUMNS_KEY = b"lunepool_magic.columns"
#: Arrow schema metadata key: b"true" if a ``limit`` cut the result.
TRUNCATED_KEY = b"lunepool_magic.truncated"


def check_output(output: str) -> str:
    """``output`` if it is one of OUTPUTS (and its library is installed), else a one-line error."""
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {', '.join(OUTPUTS)}; not {output!r}")
    if output == "polars":
        _polars()
    return output


def _polars() -> Any:
    try:
        import polars
    except ImportError:
        raise ImportError("polars output needs the polars package: pip install polars") from None
    return polars


def arrow_table(
    names: Sequence[str], arrays: Sequence[Any], types: Sequence[tuple[int, int]]
) -> Any:
    """The Arrow table of a result, its PostgreSQL column types in the schema metadata."""
    import pyarrow as pa

    columns = [[name, oid, typmod] for name, (oid, typmod) in zip(names, types, strict=True)]
    table = pa.Table.from_arrays(list(arrays), names=list(names))
    return table.replace_schema_metadata({COLUMNS_KEY: json.dumps(columns).encode()})


def convert(table: Any, output: str, truncated: bool | None) -> Any:
    """``table`` in the ``output`` shape; ``truncated`` (None: no limit) marks a cut result."""
    if truncated is not None:
        metadata = dict(table.schema.metadata or {})
        metadata[TRUNCATED_KEY] = b"true" if truncated else b"false"
        table = table.replace_schema_metadata(metadata)
    if output == "arrow":
        return table
    names = table.column_names
    if len(set(names)) != len(names):
        seen = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(
            f"polars needs distinct column names; the result has {', '.join(map(repr, seen))} "
            "more than once: name them apart with AS"
        )
    return _polars().from_arrow(table, rechunk=False)
