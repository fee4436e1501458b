"""JupySQL's ``%sqlplot histogram | boxplot | bar | pie``: aggregated by the server, drawn here.

Only the aggregates cross the wire: bin counts (``width_bucket``), quartiles
(``percentile_cont``) and whisker ends, category counts. The drawing is
matplotlib's own (``Axes.hist`` with the counts as weights, ``Axes.bxp``,
``Axes.bar``, ``Axes.pie``), so a histogram has the bins ``numpy.histogram``
gives for the same column: equal widths from min to max, the last bin
closed. matplotlib is optional; without it the cell says how to install it.
Each function returns the matplotlib Axes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lunepool_magic.notebook.sqlcmd import Source, SqlcmdError, ident

__all__ = [
    "DEFAULT_BINS",
    "FLIERS_MAX",
    "Histogram",
    "bar",
    "boxplot",
    "histogram",
    "histogram_counts",
    "pie",
]

#: JupySQL's default number of bins.
DEFAULT_BINS = 50
#: At most this many outliers per column are fetched for a boxplot.
FLIERS_MAX = 1000


def _pyplot() -> Any:
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        raise SqlcmdError("%sqlplot needs matplotlib: pip install matplotlib") from None
    return plt


def _axes(ax: Any) -> Any:
    return ax if ax is not None else _pyplot().subplots()[1]


@dataclass(frozen=True)
class Histogram:
    """A column's histogram: ``edges`` (bins + 1 floats) and ``counts`` (bins ints)."""

    edges: list[float]
    counts: list[int]


def histogram_counts(conn: Any, source: Source, column: str, bins: int) -> Histogram:
    """Bin counts as numpy.histogram would give them, computed by the server."""
    if bins < 1:
        raise SqlcmdError(f"--bins needs a positive number, not {bins}")
    col = ident(column)
    low, high, count = conn.execute(
        source.query(f"SELECT min({col})::float8, max({col})::float8, count({col}) FROM {{rel}}")
    ).fetchone()
    if not count:
        raise SqlcmdError(f"{column} of {source.label} has no values to plot (all NULL or empty)")
    if low == high:  # numpy's choice for a constant column: a range of width 1 around it
        low, high = low - 0.5, high + 0.5
    width = (high - low) / bins
    edges = [low + i * width for i in range(bins)] + [high]
    rows = conn.execute(
        source.query(
            f"SELECT least(width_bucket({col}::float8, {low!r}::float8, {high!r}::float8, "
            f"{bins}), {bins}) AS b, count(*) FROM {{rel}} WHERE {col} IS NOT NULL "
            "GROUP BY b ORDER BY b"
        )
    ).fetchall()
    counts = [0] * bins
    for bucket, n in rows:
        counts[bucket - 1] = int(n)
    return Histogram(edges, counts)


def histogram(
    conn: Any, source: Source, columns: list[str], bins: int = DEFAULT_BINS, ax: Any = None
) -> Any:
    """``%sqlplot histogram``: one histogram per column, on one Axes."""
    ax = _axes(ax)
    for column in columns:
        hist = histogram_counts(conn, source, column, bins)
        ax.hist(hist.edges[:-1], bins=hist.edges, weights=hist.counts, label=column, alpha=0.8)
    ax.set_title(f"{', '.join(repr(c) for c in columns)} from {source.label!r}")
    ax.set_xlabel(columns[0] if len(columns) == 1 else "")
    ax.set_ylabel("Count")
    if len(columns) > 1:
        ax.legend()
    return ax


def box_stats(conn: Any, source: Source, column: str) -> dict[str, Any]:
    """matplotlib's boxplot statistics (1.5 IQR whiskers), computed by the server."""
    col = ident(column)
    row = conn.execute(
        source.query(
            f"SELECT percentile_cont(ARRAY[0.25, 0.5, 0.75]) WITHIN GROUP (ORDER BY {col}), "
            f"avg({col})::float8 FROM {{rel}}"
        )
    ).fetchone()
    quartiles, mean = row
    if quartiles is None or quartiles[0] is None:
        raise SqlcmdError(f"{column} of {source.label} has no values to plot (all NULL or empty)")
    q1, med, q3 = (float(q) for q in quartiles)
    reach = 1.5 * (q3 - q1)
    lo, hi = q1 - reach, q3 + reach
    whislo, whishi = conn.execute(
        source.query(
            f"SELECT min({col}) FILTER (WHERE {col} >= {lo!r})::float8, "
            f"max({col}) FILTER (WHERE {col} <= {hi!r})::float8 FROM {{rel}}"
        )
    ).fetchone()
    fliers = conn.execute(
        source.query(
            f"SELECT {col}::float8 FROM {{rel}} WHERE {col} < {lo!r} OR {col} > {hi!r} "
            f"LIMIT {FLIERS_MAX}"
        )
    ).fetchall()
    return {
        "label": column,
        "q1": q1,
        "med": med,
        "q3": q3,
        "mean": mean,
        "whislo": whislo,
        "whishi": whishi,
        "fliers": [f[0] for f in fliers],
    }


def boxplot(conn: Any, source: Source, columns: list[str], ax: Any = None) -> Any:
    """``%sqlplot boxplot``: one box per column."""
    stats = [box_stats(conn, source, c) for c in columns]
    ax = _axes(ax)
    ax.bxp(stats)
    ax.set_title(f"{', '.join(repr(c) for c in columns)} from {source.label!r}")
    return ax


def category_counts(conn: Any, source: Source, column: str) -> tuple[list[str], list[int]]:
    """(value as text, rows) per value of ``column``, in the column's order, NULL last."""
    col = ident(column)
    rows = conn.execute(
        source.query(
            f"SELECT {col}::text, count(*) FROM {{rel}} GROUP BY {col} ORDER BY {col} NULLS LAST"
        )
    ).fetchall()
    return ["NULL" if v is None else v for v, _ in rows], [int(n) for _, n in rows]


def bar(conn: Any, source: Source, column: str, orient: str = "v", ax: Any = None) -> Any:
    """``%sqlplot bar``: rows per value of ``column``."""
    labels, counts = category_counts(conn, source, column)
    ax = _axes(ax)
    if orient == "h":
        ax.barh(labels, counts)
        ax.set_ylabel(column)
        ax.set_xlabel("Count")
    else:
        ax.bar(labels, counts)
        ax.set_xlabel(column)
        ax.set_ylabel("Count")
    ax.set_title(f"{column!r} from {source.label!r}")
    return ax


def pie(conn: Any, source: Source, column: str, ax: Any = None) -> Any:
    """``%sqlplot pie``: the share of rows per value of ``column``."""
    labels, counts = category_counts(conn, source, column)
    ax = _axes(ax)
    ax.pie(counts, labels=labels)
    ax.set_title(f"{column!r} from {source.label!r}")
    return ax
