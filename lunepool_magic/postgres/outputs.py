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

__all__ = ["OUTPUTS", "arrow_table", "as_frame", "check_output", "convert"]

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


def as_frame(value: Any, conn: Any) -> Any:
    """The pandas DataFrame ``query()`` would give for an Arrow table or polars DataFrame.

    For ``--persist`` and whatever else takes DataFrames. A table of ours
    carries its PostgreSQL types (schema metadata): every column is rebuilt
    with the row path's builders, columns kept as the server's text are loaded
    with the row path's loaders (``conn``'s adapters, its TimeZone), JSON text
    is parsed. A table without them (polars drops metadata) gets a type per
    Arrow type (int64 -> int8, string -> text, ...). Anything else is returned
    as it is. Raises ValueError for date/time values pandas cannot hold.
    """
    import pandas as pd
    import pyarrow as pa
    from psycopg.adapt import Transformer
    from psycopg.pq import Format

    from lunepool_magic.postgres import frames

    if type(value).__module__.split(".")[0] == "polars":
        value = value.to_arrow()
    if not isinstance(value, pa.Table):
        return value
    metadata = value.schema.metadata or {}
    recorded = json.loads(metadata[COLUMNS_KEY]) if COLUMNS_KEY in metadata else None
    transformer = Transformer(frames.LoaderContext(frames.fallback_adapters(conn.adapters), conn))
    src = frames.ValueSource(None, conn.info.timezone)
    arrays, types = [], []
    for j, (name, column) in enumerate(zip(value.column_names, value.columns, strict=True)):
        if recorded is not None:
            oid, typmod = int(recorded[j][1]), int(recorded[j][2])
        else:
            oid, typmod = _oid_for(column.type), -1
        ct = frames.column_type(oid, conn.adapters)
        try:
            values = column.to_pylist()
        except (OverflowError, ValueError):
            raise ValueError(
                f"column {name!r} holds dates or times pandas cannot hold (infinity, years "
                "outside 1..9999); store it with SQL (INSERT ... SELECT) instead"
            ) from None
        textual = pa.types.is_large_string(column.type) or pa.types.is_string(column.type)
        if ct.kind is frames.Kind.JSON:
            arrays.append(
                frames.object_series([pd.NA if v is None else json.loads(v) for v in values])
            )
        else:
            if textual and ct.kind is not frames.Kind.STRING:  # kept as the server's text
                load = transformer.get_loader(oid, Format.TEXT).load
                values = [None if v is None else load(v.encode()) for v in values]
            elif oid == frames.type_oid("uuid"):
                import uuid

                values = [uuid.UUID(bytes=v) if isinstance(v, bytes) else v for v in values]
            arrays.append(frames.build_column(values, ct, src, j))
        types.append((oid, typmod))
    return frames.make_frame(value.column_names, arrays, value.num_rows, types)


def _oid_for(arrow: Any) -> int:
    """A PostgreSQL type for an Arrow type (columns that carry none): text if no other."""
    import pyarrow as pa

    from lunepool_magic.postgres.frames import type_oid

    checks = [
        (pa.types.is_int16, "int2"),
        (pa.types.is_int32, "int4"),
        (pa.types.is_integer, "int8"),
        (pa.types.is_float32, "float4"),
        (pa.types.is_floating, "float8"),
        (pa.types.is_boolean, "bool"),
        (lambda t: pa.types.is_timestamp(t) and t.tz is not None, "timestamptz"),
        (pa.types.is_timestamp, "timestamp"),
        (pa.types.is_date, "date"),
        (pa.types.is_time, "time"),
        (pa.types.is_duration, "interval"),
        (pa.types.is_decimal, "numeric"),
        (lambda t: pa.types.is_binary(t) or pa.types.is_large_binary(t), "bytea"),
        (lambda t: getattr(t, "extension_name", "") == "arrow.uuid", "uuid"),
    ]
    for check, name in checks:
        if check(arrow):
            return type_oid(name)
    return type_oid("text")
