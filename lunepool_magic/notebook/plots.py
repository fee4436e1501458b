"""JupySQL's ``%sqlplot histogram | boxplot | bar | pie``: aggregated by the server, drawn here.

Only the aggregates cross the wire: bin counts, quartiles and whisker ends,
category counts, and the outliers of a boxplot. The numbers are JupySQL's
for the same data (its bins and its ``percentile_disc`` quartiles), so a
notebook's figures do not change when it moves here; matplotlib draws them
(``Axes.bar``, ``Axes.bxp``, ``Axes.pie``) and is optional: without it the
cell says how to install it. Each function returns the matplotlib Axes.
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
FLIERS_MAX = 10_000


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
    """A histogram as JupySQL draws it: bar ``centers``, their ``counts``, one ``width``."""

    centers: list[float]
    counts: list[int]
    width: float


def histogram_counts(conn: Any, source: Source, column: str, bins: int) -> Histogram:
    """JupySQL's bins, counted by the server.

    JupySQL (after ggplot) spaces ``bins`` bar centres (max - min) / (bins - 1)
    apart, on multiples of that width, and counts each value into the centre
    nearest to it, a value halfway between two going to the lower one
    (right-closed intervals); empty bins get no bar. The same SQL arithmetic
    here gives the same counts.
    """
    if bins < 2:
        raise SqlcmdError(f"--bins needs 2 or more bins, not {bins}")
    col = ident(column)
    low, high, count = conn.execute(
        source.query(f"SELECT min({col}), max({col}), count({col}) FROM {{rel}}")
    ).fetchone()
    if not count:
        raise SqlcmdError(f"{column} of {source.label} has no values to plot (all NULL or empty)")
    width = (float(high) - float(low)) / (bins - 1)
    if width == 0:  # one value only: one bar
        return Histogram([float(low)], [int(count)], 1.0)
    rows = conn.execute(
        source.query(
            f"SELECT ceiling({col} / {width!r} - 0.5) * {width!r} AS bin, count(*) "
            f"FROM {{rel}} WHERE {col} IS NOT NULL GROUP BY bin ORDER BY bin"
        )
    ).fetchall()
    return Histogram([float(b) for b, _ in rows], [int(n) for _, n in rows], width)


def histogram(
    conn: Any, source: Source, columns: list[str], bins: int = DEFAULT_BINS, ax: Any = None
) -> Any:
    """``%sqlplot histogram``: one histogram per column, on one Axes."""
    ax = _axes(ax)
    for column in columns:
        hist = histogram_counts(conn, source, column, bins)
        ax.bar(hist.centers, hist.counts, width=hist.width, align="center", label=column)
    ax.set_title(f"{', '.join(repr(c) for c in columns)} from {source.label!r}")
    ax.set_xlabel(columns[0] if len(columns) == 1 else "")
    ax.set_ylabel("Count")
    if len(columns) > 1:
        ax.legend()
    return ax


def box_stats(conn: Any, source: Source, column: str) -> dict[str, Any]:
    """The boxplot statistics JupySQL computes, by the server.

    Quartiles are ``percentile_disc`` (values of the column, as JupySQL's);
    whiskers reach the furthest value within 1.5 IQR of the box, never inside
    it; values beyond them are the fliers (at most FLIERS_MAX are drawn).
    """
    col = ident(column)
    quartiles, mean = conn.execute(
        source.query(
            f"SELECT percentile_disc(ARRAY[0.25, 0.5, 0.75]) WITHIN GROUP (ORDER BY {col}), "
            f"avg({col})::float8 FROM {{rel}}"
        )
    ).fetchone()
    if quartiles is None or quartiles[0] is None:
        raise SqlcmdError(f"{column} of {source.label} has no values to plot (all NULL or empty)")
    q1, med, q3 = (float(q) for q in quartiles)
    reach = 1.5 * (q3 - q1)
    lo, hi = q1 - reach, q3 + reach
    low_end, high_end = conn.execute(
        source.query(
            f"SELECT min({col}) FILTER (WHERE {col} >= {lo!r})::float8, "
            f"max({col}) FILTER (WHERE {col} <= {hi!r})::float8 FROM {{rel}}"
        )
    ).fetchone()
    whislo = q1 if low_end is None or low_end > q1 else low_end
    whishi = q3 if high_end is None or high_end < q3 else high_end
    fliers = conn.execute(
        source.query(
            f"SELECT {col}::float8 FROM {{rel}} WHERE {col} < {whislo!r} OR {col} > {whishi!r} "
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


def category_counts(conn: Any, source: Source, columns: list[str]) -> tuple[list[str], list[Any]]:
    """Labels and heights for a bar or pie chart, without NULLs (as JupySQL leaves them out).

    One column: rows per value, in the column's order. Two: labels from the
    first and heights from the second, one bar per row.
    """
    if len(columns) not in (1, 2):
        raise SqlcmdError("bar and pie take one --column (counted) or two (labels, heights)")
    label = ident(columns[0])
    if len(columns) == 1:
        body = (
            f"SELECT {label}::text, count(*) FROM {{rel}} WHERE {label} IS NOT NULL "
            f"GROUP BY {label} ORDER BY {label}"
        )
    else:
        height = ident(columns[1])
        body = (
            f"SELECT {label}::text, {height} FROM {{rel}} "
            f"WHERE {label} IS NOT NULL AND {height} IS NOT NULL"
        )
    rows = conn.execute(source.query(body)).fetchall()
    return [v for v, _ in rows], [n for _, n in rows]


def bar(
    conn: Any,
    source: Source,
    columns: list[str],
    orient: str = "v",
    show_numbers: bool = False,
    ax: Any = None,
) -> Any:
    """``%sqlplot bar``: rows per value of a column (or heights from a second column)."""
    labels, heights = category_counts(conn, source, columns)
    ax = _axes(ax)
    value_label = columns[1] if len(columns) == 2 else "Count"
    if orient == "h":
        bars = ax.barh(labels, heights)
        ax.set_ylabel(columns[0])
        ax.set_xlabel(value_label)
    else:
        bars = ax.bar(labels, heights)
        ax.set_xlabel(columns[0])
        ax.set_ylabel(value_label)
    if show_numbers:
        ax.bar_label(bars)
    ax.set_title(f"{columns[0]!r} from {source.label!r}")
    return ax


def pie(
    conn: Any, source: Source, columns: list[str], show_numbers: bool = False, ax: Any = None
) -> Any:
    """``%sqlplot pie``: the share of rows per value (or of a second column's values)."""
    labels, sizes = category_counts(conn, source, columns)
    ax = _axes(ax)
    ax.pie(sizes, labels=labels, autopct="%1.2f%%" if show_numbers else None)
    ax.set_title(f"{columns[0]!r} from {source.label!r}")
    return ax
