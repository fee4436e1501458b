"""Decoding CSV COPY rows with pyarrow's CSV reader; other types through psycopg's loaders.

CSV carries the same text the row path gets (the same output functions), so
every type is exact by construction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from lunepool_magic.postgres.errors import CopyProtocolError
from lunepool_magic.postgres.fetch.columns import Column, Loaders
from lunepool_magic.postgres.fetch.plan import CSV_ARROW_TYPES
from lunepool_magic.postgres.frames import Kind


class CsvDecoder:
    """Decodes blocks of CSV COPY rows with pyarrow; loads 'loader' columns with psycopg."""

    def __init__(self, columns: list[Column], loaders: Loaders, keep_text: bool = False):
        # keep_text (Arrow output): 'loader' columns keep the server's text, for
        # lunepool_magic.postgres.arrow to convert by column.
        self.columns = columns
        self.keep_text = keep_text
        self.rows = 0
        names = [f"c{j}" for j in range(len(columns))]
        types = {}
        self.loads: dict[int, Callable[[bytes], Any]] = {}
        for j, col in enumerate(columns):
            if col.decoder in ("int", "float", "bool"):
                types[names[j]] = CSV_ARROW_TYPES[col.oid]
            elif col.decoder == "text":
                types[names[j]] = pa.large_string()
            else:
                types[names[j]] = pa.large_binary()
                self.loads[j] = loaders.load_function(col.oid)
        self.read_options = pacsv.ReadOptions(column_names=names, use_threads=True)
        # COPY CSV: NULL is an unquoted empty field, an empty string is "".
        # Quoted fields may hold newlines; an empty line is a one-column NULL row.
        self.parse_options = pacsv.ParseOptions(newlines_in_values=True, ignore_empty_lines=False)
        self.convert_options = pacsv.ConvertOptions(
            column_types=types,
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
            true_values=["t"],
            false_values=["f"],
        )

    def __call__(self, block: bytearray, lens: list[int]) -> None:
        if not lens:
            return
        table = pacsv.read_csv(
            pa.py_buffer(block),
            read_options=self.read_options,
            parse_options=self.parse_options,
            convert_options=self.convert_options,
        )
        if table.num_rows != len(lens):
            raise CopyProtocolError("CSV COPY data did not parse into one row per message")
        for j, col in enumerate(self.columns):
            column = table.column(j)
            load = self.loads.get(j)
            if col.decoder == "text":
                col.add_arrow(column.chunks)
            elif load is None:  # int, float, bool
                fill = False if col.decoder == "bool" else 0
                nulls = column.is_null().to_numpy(zero_copy_only=False)
                col.append(pc.fill_null(column, fill).to_numpy(zero_copy_only=False), nulls)
            elif self.keep_text:
                col.add_arrow(column.chunks)
            else:
                raw = column.to_pylist()
                col.add_values([None if v is None else load(v) for v in raw])
                if col.ct.kind is Kind.JSON:  # JSON null loads as None too: keep SQL NULLs
                    col.nulls += memoryview(column.is_null().to_numpy(zero_copy_only=False))
        self.rows += table.num_rows
