"""What JupySQL's users write that has another spelling here, and what to write instead.

One place for the decisions about JupySQL's forms (the options themselves are
rows of :mod:`lunepool_magic.notebook.options`):

* ``SETTINGS``: each ``%config SqlMagic.NAME`` and what it does here: mapped
  to one of our settings, a no-op that says so, or a one-time note naming
  the equivalent. :func:`apply_setting` turns one assignment into the
  changes to make and the line to print.
* The ResultSet API (``result.DataFrame()``, ``.dict()``, ``.dicts()``,
  ``.csv()``, ``.PolarsDataFrame()``, ``.pie()``, ``.bar()``): results are
  pandas DataFrames, and these methods are registered on DataFrame with
  pandas' accessor API (no subclass, so pandas' own behaviour is untouched).
  Indexing, iteration, ``.plot()`` and ``.keys`` are pandas' (``result[0][0]``
  is ``df.iat[0, 0]`` there, and :func:`resultset_hint` says so when it
  fails; the other three get a note from
  :mod:`lunepool_magic.notebook.resultforms`).
* ``--section NAME``: a section of JupySQL's connections file, as a
  conninfo; without one, libpq's own service of that name.
"""

from __future__ import annotations

import configparser
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DBAPI_REFUSED",
    "DEFAULT_CONNECTIONS_FILE",
    "INTERACT_REFUSED",
    "SETTINGS",
    "Setting",
    "SettingChange",
    "apply_setting",
    "is_dbapi_connection",
    "register_resultset_methods",
    "resultset_hint",
    "section_target",
    "sqlalchemy_url",
]

DEFAULT_CONNECTIONS_FILE = "~/.jupysql/connections.ini"

INTERACT_REFUSED = (
    "--interact (JupySQL's widgets) is not available: set the variable in a cell of its own "
    "and use it as :{name} in the query, or in a loop: for {name} in ...: %sql ... :{name}"
)


@dataclass(frozen=True)
class SettingChange:
    """What one ``%config SqlMagic.NAME = value`` does: our settings to set and a line to print."""

    ours: dict[str, Any]
    line: str | None
    pandas_rows: int | bool | None = False  # False: leave pandas' display.max_rows alone


@dataclass(frozen=True)
class Setting:
    """A JupySQL setting: its default (as JupySQL has it) and how to apply a value."""

    default: Any
    apply: Callable[[Any], SettingChange]
    once: bool = False  # the line is shown the first time only


def _autolimit(value: Any) -> SettingChange:
    rows = int(value) if value else None  # JupySQL: 0 or None means no limit
    return SettingChange({"row_limit": rows}, None)


def _displaylimit(value: Any) -> SettingChange:
    rows = int(value) if value else None
    return SettingChange(
        {},
        "displaylimit sets pandas' display.max_rows (for every DataFrame shown); the whole "
        "result is still fetched: SqlMagic.autolimit or --limit N fetches fewer rows.",
        pandas_rows=rows,
    )


def _no_op(why: str) -> Callable[[Any], SettingChange]:
    return lambda value: SettingChange({}, why)


def _note(equivalent: str) -> Callable[[Any], SettingChange]:
    return lambda value: SettingChange({}, equivalent)


def _autopolars(value: Any) -> SettingChange:
    # Built from the result's columns, not from Python row tuples (jupysql#312).
    return SettingChange({"output": "polars" if value else "pandas"}, None)


def _short_errors(value: Any) -> SettingChange:
    return SettingChange({"show_traceback": not value}, None)


def _dsn_filename(value: Any) -> SettingChange:
    return SettingChange({"connections_file": str(value)}, None)


def _autocommit(value: Any) -> SettingChange:
    if value:
        return SettingChange({}, None)
    return SettingChange(
        {},
        "autocommit=False has no effect here: each cell commits unless it opens a "
        "transaction; write BEGIN in a cell and COMMIT or ROLLBACK later.",
    )


#: Every setting JupySQL's docs show, by name.
SETTINGS: dict[str, Setting] = {
    "autolimit": Setting(0, _autolimit),
    "displaylimit": Setting(10, _displaylimit, once=True),
    "autopandas": Setting(
        False, _no_op("autopandas is not needed: results are always pandas DataFrames."), True
    ),
    "autopolars": Setting(False, lambda value: _autopolars(value)),
    "feedback": Setting(
        1,
        _no_op("feedback has no effect: a cell always shows its status and notices."),
        True,
    ),
    "named_parameters": Setting(
        "warn",
        _no_op("named_parameters has no effect: :name is always bound server-side."),
        True,
    ),
    "short_errors": Setting(True, _short_errors),
    "dsn_filename": Setting(DEFAULT_CONNECTIONS_FILE, _dsn_filename),
    "autocommit": Setting(True, _autocommit, True),
    "displaycon": Setting(
        True, _no_op("displaycon has no effect: %sql --list shows the connections."), True
    ),
    "column_local_vars": Setting(
        False, _note("column_local_vars is not available: use df['column'] or df.column."), True
    ),
    "lazy_execution": Setting(
        False, _note("lazy_execution is not available: results are fetched when a cell runs."), True
    ),
    "style": Setting(
        "DEFAULT", _no_op("style has no effect: results are shown as pandas DataFrames."), True
    ),
    "polars_dataframe_kwargs": Setting(
        {}, _note("polars_dataframe_kwargs has no effect: results are pandas DataFrames."), True
    ),
}


def apply_setting(name: str, value: Any, shown: set[str]) -> SettingChange:
    """The change for ``SqlMagic.name = value``; a once-only line is dropped if in ``shown``."""
    setting = SETTINGS[name]
    change = setting.apply(value)
    if change.line and setting.once:
        if name in shown:
            return SettingChange(change.ours, None, change.pandas_rows)
        shown.add(name)
    return change


class SectionError(ValueError):
    """``--section NAME`` names nothing usable; the message says where it looked."""


def section_target(name: str, connections_file: str | None) -> tuple[str, str]:
    """The conninfo for ``--section name`` and where it came from (for the "Connected" line).

    A section of JupySQL's connections file (``drivername``, ``username``,
    ``password``, ``host``, ``port``, ``database``, ``query``) wins; without
    one, the name is libpq's service (``service=NAME``, from
    ``~/.pg_service.conf`` or ``PGSERVICEFILE``), which libpq reads itself.
    """
    from psycopg.conninfo import make_conninfo

    path = os.path.expanduser(connections_file or DEFAULT_CONNECTIONS_FILE)
    parser = configparser.ConfigParser(interpolation=None)
    if os.path.exists(path):
        try:
            parser.read(path, encoding="utf-8")
        except configparser.Error as exc:
            raise SectionError(f"could not read {path}: {exc.message}") from None
    if not parser.has_section(name):
        return make_conninfo("", service=name), "libpq service"
    section = parser[name]
    driver = section.get("drivername", "postgresql").split("+", 1)[0]
    if driver not in ("postgresql", "postgres"):
        raise SectionError(
            f"section [{name}] of {path} is a {driver} connection; "
            "lunepool_magic connects to PostgreSQL only"
        )
    params: dict[str, Any] = {
        "host": section.get("host"),
        "port": section.get("port"),
        "dbname": section.get("database"),
        "user": section.get("username"),
        "password": section.get("password"),
    }
    query = section.get("query")
    if query:
        import ast

        try:
            extra = ast.literal_eval(query)
        except (ValueError, SyntaxError):
            raise SectionError(
                f"section [{name}] of {path}: query must be a dict, like {{'sslmode': 'require'}}"
            ) from None
        params.update(extra)
    return make_conninfo("", **{k: v for k, v in params.items() if v}), f"[{name}] of {path}"


DBAPI_REFUSED = (
    "{name} is a DB-API connection, which the pool cannot share: connect with its "
    "URL instead, %sql postgresql://user@host/db --alias {name}"
)


def is_dbapi_connection(value: Any) -> bool:
    """Whether ``value`` looks like a DB-API connection (JupySQL's ``%sql conn``)."""
    return all(callable(getattr(value, name, None)) for name in ("cursor", "commit", "rollback"))


def sqlalchemy_url(value: Any) -> str | None:
    """The URL of a SQLAlchemy Engine or Connection (password included), else None.

    Read by duck typing, so SQLAlchemy is not imported; the URL goes to the
    connection as typed and, like any target, is never shown with its password.
    """
    if not type(value).__module__.startswith("sqlalchemy"):
        return None
    engine = getattr(value, "engine", value)
    url = getattr(engine, "url", None)
    render = getattr(url, "render_as_string", None)
    if render is None:
        return None
    text = render(hide_password=False)
    return text if isinstance(text, str) else None


# ------------------------------------------------------------ ResultSet API

_registered = False


def resultset_hint(error: BaseException, tb: Any) -> str | None:
    """The line for JupySQL's ``result[0][0]`` on a DataFrame, or None for any other error.

    In JupySQL ``result[0]`` is the first row; on a DataFrame it looks up a
    column named 0 and raises KeyError. Only that KeyError (an int key, raised
    in DataFrame.__getitem__) gets this line instead of pandas' traceback.
    """
    if not isinstance(error, KeyError) or len(error.args) != 1:
        return None
    key = error.args[0]
    if not isinstance(key, int) or isinstance(key, bool):
        return None
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code.co_name == "__getitem__" and type(frame.f_locals.get("self")).__name__ == (
            "DataFrame"
        ):
            return (
                f"KeyError: {key}: the result is a pandas DataFrame, where [{key}] is the "
                f"column named {key}; JupySQL's result[{key}][0] is result.iat[{key}, 0] "
                f"here (result.iloc[{key}] is row {key})"
            )
        tb = tb.tb_next
    return None


def register_resultset_methods() -> None:
    """Give DataFrames JupySQL's ResultSet methods, once per process, via pandas' accessors."""
    global _registered
    if _registered:
        return
    import warnings

    import pandas as pd

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # registering is idempotent; re-registering warns
        for name, accessor in _ACCESSORS.items():
            if not hasattr(pd.DataFrame, name):
                pd.api.extensions.register_dataframe_accessor(name)(accessor)
    _registered = True


class _Accessor:
    def __init__(self, frame: Any) -> None:
        self._frame = frame


class _AsDataFrame(_Accessor):
    """``result.DataFrame()``: the result is one already; returns it."""

    def __call__(self) -> Any:
        return self._frame


class _AsPolars(_Accessor):
    """``result.PolarsDataFrame()``: polars.from_pandas, if polars is installed."""

    def __call__(self, **kwargs: Any) -> Any:
        try:
            import polars
        except ImportError:
            raise ImportError(
                "PolarsDataFrame() needs polars (pip install polars); the result is a "
                "pandas DataFrame already"
            ) from None
        return polars.from_pandas(self._frame, **kwargs)


class _AsDict(_Accessor):
    """``result.dict()``: {column: tuple of its values}, as JupySQL's ResultSet.dict()."""

    def __call__(self) -> dict[str, tuple[Any, ...]]:
        frame = self._frame
        return {str(c): tuple(frame[c].tolist()) for c in frame.columns}


class _AsDicts(_Accessor):
    """``result.dicts()``: one dict per row, as JupySQL's ResultSet.dicts()."""

    def __call__(self) -> Any:
        return iter(self._frame.to_dict("records"))


class _AsCsv(_Accessor):
    """``result.csv(filename=None)``: the CSV text, or written to ``filename``; no index."""

    def __call__(self, filename: str | None = None, **kwargs: Any) -> Any:
        kwargs.setdefault("index", False)
        return self._frame.to_csv(filename, **kwargs)


def _labels_and_values(frame: Any, sep: str) -> tuple[list[str], Any, str]:
    """The last column as values, the others joined by ``sep`` as labels (JupySQL's layout)."""
    if frame.shape[1] < 2:
        raise ValueError("pie() and bar() need a column of labels and a column of values")
    labels = frame.iloc[:, :-1].astype(str).agg(sep.join, axis=1).tolist()
    return labels, frame.iloc[:, -1], str(frame.columns[-1])


class _Pie(_Accessor):
    """``result.pie()``: a pie of the last column, labelled by the others, on the current Axes."""

    def __call__(self, key_word_sep: str = " ", title: str | None = None, **kwargs: Any) -> Any:
        import matplotlib.pyplot as plt

        labels, values, name = _labels_and_values(self._frame, key_word_sep)
        ax = plt.gca()
        ax.pie(values, labels=labels, **kwargs)
        ax.set_title(title or name)
        return ax


class _Bar(_Accessor):
    """``result.bar()``: bars of the last column, labelled by the others, on the current Axes."""

    def __call__(self, key_word_sep: str = " ", title: str | None = None, **kwargs: Any) -> Any:
        import matplotlib.pyplot as plt

        labels, values, name = _labels_and_values(self._frame, key_word_sep)
        ax = plt.gca()
        ax.bar(range(len(labels)), values, **kwargs)
        ax.set_xticks(range(len(labels)), labels, rotation=45)
        ax.set_ylabel(name)
        ax.set_title(title or name)
        return ax


_ACCESSORS: dict[str, type[_Accessor]] = {
    "pie": _Pie,
    "bar": _Bar,
    "DataFrame": _AsDataFrame,
    "PolarsDataFrame": _AsPolars,
    "dict": _AsDict,
    "dicts": _AsDicts,
    "csv": _AsCsv,
}
