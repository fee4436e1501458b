"""JupySQL's ``%sqlcmd tables | columns | profile | test``, computed in the database.

Each function takes a psycopg connection and returns a DataFrame (or True
for a passing test); nothing fetches a table's rows: a profile of a large
table is one aggregate query per column kind, so only the statistics cross
the wire. The table may be a saved snippet: :class:`Source` carries the CTEs
that define it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "NUMERIC_TYPES",
    "PROFILE_ROWS",
    "Source",
    "SqlcmdError",
    "columns",
    "profile",
    "run_test",
    "source_for",
    "tables",
]

#: The rows of ``%sqlcmd profile``, as JupySQL (and pandas' describe) names them.
PROFILE_ROWS = ["count", "unique", "top", "freq", "mean", "std", "min", "25%", "50%", "75%", "max"]

#: Type OIDs profiled as numbers: int2, int4, int8, oid, float4, float8, numeric, money.
NUMERIC_TYPES = frozenset({21, 23, 20, 26, 700, 701, 1700})


class SqlcmdError(ValueError):
    """A ``%sqlcmd`` request that cannot be answered; the message says what to do."""


@dataclass(frozen=True)
class Source:
    """What ``--table`` names, as SQL: ``prefix`` (CTEs of snippets, or "") and ``relation``."""

    relation: str
    prefix: str
    label: str

    def query(self, body: str) -> str:
        """``body`` (which reads FROM ``{rel}``) with the relation and its CTEs filled in."""
        return self.prefix + body.replace("{rel}", self.relation)


def ident(*parts: str) -> str:
    """A quoted identifier, as psycopg quotes it."""
    from psycopg import sql

    return sql.Identifier(*parts).as_string(None)


def source_for(table: str, schema: str | None, snippet_prefix: str | None) -> Source:
    """The Source for ``--table table [--schema schema]``; ``snippet_prefix`` if it is a snippet."""
    if snippet_prefix is not None:
        return Source(ident(table), snippet_prefix, table)
    if schema is None and "." in table and '"' not in table:
        schema, table = table.split(".", 1)
    relation = ident(schema, table) if schema else ident(table)
    return Source(relation, "", f"{schema}.{table}" if schema else table)


def _frame(rows: list[Any], names: list[str]) -> Any:
    import pandas as pd

    return pd.DataFrame(rows, columns=names)


def tables(conn: Any, schema: str | None = None) -> Any:
    """The tables of ``schema`` (default: the current schema), one per row, column ``Name``."""
    rows = conn.execute(
        "SELECT c.relname FROM pg_catalog.pg_class c "
        "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind IN ('r', 'p', 'f') AND n.nspname = coalesce(%s, current_schema()) "
        "ORDER BY c.relname",
        (schema,),
    ).fetchall()
    return _frame([[r[0]] for r in rows], ["Name"])


def columns(conn: Any, source: Source) -> Any:
    """The columns of a table or snippet: name, type, nullable, default, autoincrement, comment."""
    if not source.prefix:
        oid = conn.execute("SELECT to_regclass(%s)::oid", (source.relation,)).fetchone()[0]
        if oid is None:
            raise SqlcmdError(f"there is no table {source.label} (%sqlcmd tables lists them)")
        rows = conn.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull, "
            "pg_get_expr(d.adbin, d.adrelid), "
            "a.attidentity <> '' OR coalesce(pg_get_expr(d.adbin, d.adrelid), '') "
            "LIKE 'nextval(%%', col_description(a.attrelid, a.attnum) "
            "FROM pg_catalog.pg_attribute a LEFT JOIN pg_catalog.pg_attrdef d "
            "ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
            "WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            (oid,),
        ).fetchall()
        names = ["name", "type", "nullable", "default", "autoincrement", "comment"]
        return _frame([list(r) for r in rows], names)
    described = _describe(conn, source)
    rows = conn.execute(
        "SELECT format_type(t, NULL) FROM unnest(%s::oid[]) WITH ORDINALITY AS u(t, i) ORDER BY i",
        ([oid for _, oid in described],),
    ).fetchall()
    types = [r[0] for r in rows]
    return _frame(
        [[name, t, None, None, False, None] for (name, _), t in zip(described, types, strict=True)],
        ["name", "type", "nullable", "default", "autoincrement", "comment"],
    )


def _describe(conn: Any, source: Source) -> list[tuple[str, int]]:
    """(name, type oid) of each column the source gives, from a query that returns no row."""
    cur = conn.execute(source.query("SELECT * FROM {rel} LIMIT 0"))
    return [(d.name, d.type_code) for d in cur.description or []]


def profile(conn: Any, source: Source) -> Any:
    """JupySQL's profile: the statistics of every column, computed by the server.

    Numbers get count, unique, mean, std, min, quartiles and max, the way
    JupySQL computes them (std of the population, ``stddev_pop``; quartiles
    that are values of the column, ``percentile_disc``), so the numbers match
    its profile; other columns get count, unique, top (the most frequent
    value, as text; ties go to the smallest) and freq. What does not apply
    is NaN. ``numeric`` columns count as numbers (JupySQL shows top and freq
    for them instead).
    """
    import pandas as pd

    described = _describe(conn, source)
    if not described:
        raise SqlcmdError(f"{source.label} has no columns to profile")
    selects: list[str] = []
    for name, oid in described:
        col = ident(name)
        if oid in NUMERIC_TYPES:
            selects += [
                f"count({col})",
                f"count(DISTINCT {col})",
                f"avg({col})::float8",
                f"stddev_pop({col})::float8",
                f"min({col})",
                f"percentile_disc(ARRAY[0.25, 0.5, 0.75]) WITHIN GROUP (ORDER BY {col})",
                f"max({col})",
            ]
        else:
            selects += [f"count({col})", f"count(DISTINCT {col}::text)"]
    row = conn.execute(source.query(f"SELECT {', '.join(selects)} FROM {{rel}}")).fetchone()
    nan = float("nan")
    stats: dict[str, list[Any]] = {}
    pos = 0
    for name, oid in described:
        if oid in NUMERIC_TYPES:
            count, unique, mean, std, low, quartiles, high = row[pos : pos + 7]
            pos += 7
            q = quartiles or [None, None, None]
            values = [count, unique, nan, nan, mean, std, low, *q, high]
        else:
            count, unique = row[pos : pos + 2]
            pos += 2
            col = ident(name)
            top = conn.execute(
                source.query(
                    f"SELECT {col}::text, count(*) FROM {{rel}} WHERE {col} IS NOT NULL "
                    f"GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1"
                )
            ).fetchone()
            top_value, freq = top if top is not None else (nan, nan)
            values = [count, unique, top_value, freq, nan, nan, nan, nan, nan, nan, nan]
        stats[name] = [nan if v is None else v for v in values]
    return pd.DataFrame(stats, index=PROFILE_ROWS, dtype=object)


#: ``%sqlcmd test`` conditions: flag -> (what a passing row satisfies, how a failure reads).
TESTS = {
    "greater": ("{col} > {value}", "<= {value}"),
    "greater_or_equal": ("{col} >= {value}", "< {value}"),
    "less_than": ("{col} < {value}", ">= {value}"),
    "less_than_or_equal": ("{col} <= {value}", "> {value}"),
}


def run_test(conn: Any, source: Source, column: str, checks: dict[str, Any]) -> bool:
    """JupySQL's ``%sqlcmd test``: True if every row passes; else SqlcmdError counting failures.

    ``checks`` maps ``greater``, ``greater_or_equal``, ``less_than``,
    ``less_than_or_equal`` to a number, and ``no_nulls``, ``unique`` to True.
    """
    from psycopg import sql

    col = ident(column)
    failures: list[str] = []
    for key, value in checks.items():
        if key in TESTS:
            condition, reads = TESTS[key]
            # A literal, not a parameter: a snippet's text may hold % signs.
            literal = sql.Literal(value).as_string(None)
            where = f"NOT ({condition.format(col=col, value=literal)})"
            bad = conn.execute(
                source.query(f"SELECT count(*) FROM {{rel}} WHERE {where}")
            ).fetchone()[0]
            if bad:
                failures.append(f"{bad} rows have {column} {reads.format(value=value)}")
        elif key == "no_nulls":
            bad = conn.execute(
                source.query(f"SELECT count(*) FROM {{rel}} WHERE {col} IS NULL")
            ).fetchone()[0]
            if bad:
                failures.append(f"{bad} rows have {column} NULL")
        elif key == "unique":
            bad = conn.execute(
                source.query(
                    f"SELECT count(*) FROM (SELECT {col} FROM {{rel}} WHERE {col} IS NOT NULL "
                    f"GROUP BY {col} HAVING count(*) > 1) d"
                )
            ).fetchone()[0]
            if bad:
                failures.append(f"{bad} values of {column} appear more than once")
    if not checks:
        raise SqlcmdError(
            "%sqlcmd test needs a condition: --greater N, --greater-or-equal N, "
            "--less-than N, --less-than-or-equal N, --no-nulls or --unique"
        )
    if failures:
        raise SqlcmdError(f"test failed on {source.label}: " + "; ".join(failures))
    return True
