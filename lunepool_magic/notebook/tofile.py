"""``%sql --to FILE``: run one query on a session's connection and stream it into a file.

The engine half of the option (no IPython): checks the file name, runs
:func:`lunepool_magic.postgres.tofile.copy_to_file` on the cell's connection
with the session's settling and errors, and words the cell's last line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lunepool_magic.notebook import messages as display
from lunepool_magic.notebook.binding import BoundStatement
from lunepool_magic.notebook.session import CellResult, Session
from lunepool_magic.postgres.errors import NoResultSetError
from lunepool_magic.postgres.tofile import copy_to_file, file_format

__all__ = ["write_cell"]


def write_cell(
    session: Session,
    item: BoundStatement,
    path: Path,
    *,
    timeout: float | None,
    limit: int | None,
    on_progress: Any,
    line_offset: int,
) -> tuple[list[str], CellResult]:
    """Stream ``item``'s rows into ``path``; return the lines to print and the cell's notes.

    Raises ValueError (before anything runs) for a file name of unknown format
    or in a folder that does not exist; SqlCellError / QueryCancelled as
    ``Session.call`` does.
    """
    file_format(path)
    if not path.parent.is_dir():
        raise ValueError(f"--to {str(path)!r}: the folder {str(path.parent)!r} does not exist")

    def work(conn: Any) -> Any:
        try:
            return copy_to_file(
                conn, item.sql, path, item.params, limit=limit, on_progress=on_progress
            )
        except (ValueError, NoResultSetError) as exc:
            raise display.SqlCellError([f"ERROR:  {exc}"]) from exc
        except OSError as exc:  # the file, not the server: disk full, permissions, ...
            raise display.SqlCellError(
                [
                    f"ERROR:  could not write {str(path)!r}: {exc.strerror or exc}",
                    "(no file was made under that name)",
                ]
            ) from exc

    written, cell = session.call(
        work,
        timeout=timeout,
        what=f"--to {path.name}",
        statement=item,
        line_offset=line_offset,
    )
    lines = [
        f"Wrote {display.count_of(written.rows, 'row')} ({display.size(written.bytes)}) to {path} "
        f"in {display.duration(written.seconds)}."
    ]
    if written.truncated:
        lines.append(
            f"Only the first {display.count_of(limit, 'row')} (--limit); the result has more."
        )
    return lines, cell
