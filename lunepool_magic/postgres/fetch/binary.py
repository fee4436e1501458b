"""Decoding binary COPY rows by column, with numpy gathers at the fields' offsets.

Row starts come from the CopyData message lengths; one column at a time numpy
gathers the field lengths and values at their offsets, whatever the alignment.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from lunepool_magic.postgres.copyformat import HEADER, SIGNATURE, TRAILER
from lunepool_magic.postgres.errors import CopyProtocolError
from lunepool_magic.postgres.fetch import plan
from lunepool_magic.postgres.fetch.columns import Column


def _gather(block: bytearray, dtype: str, positions: np.ndarray) -> np.ndarray:
    """Big-endian values of ``dtype`` at byte ``positions`` of ``block`` (any alignment)."""
    width = np.dtype(dtype).itemsize
    view = np.ndarray((len(block) - width + 1,), dtype, block, 0, (1,))
    gathered: np.ndarray = view[positions].astype(np.dtype(dtype).newbyteorder("="))
    return gathered


class BinaryDecoder:
    """Decodes blocks of binary COPY rows, appending to the columns' values."""

    def __init__(self, columns: list[Column]):
        self.columns = columns
        # Wire columns: the result's, then one text column per date/time column.
        self.extras = [j for j, c in enumerate(columns) if c.oid in plan.SAFE_WINDOW]
        self.nfields = len(columns) + len(self.extras)
        self.rows = 0
        self.first = True
        self.ended = False

    def __call__(self, block: bytearray, lens_list: list[int]) -> None:
        if not lens_list:
            return
        try:  # rows under 256 bytes (most): 6x faster than np.array
            lens = np.frombuffer(bytearray(lens_list), dtype=np.uint8).astype(np.int64)
        except ValueError:
            lens = np.array(lens_list, dtype=np.int64)
        starts = np.cumsum(lens)
        starts -= lens
        if self.first:
            self.first = False
            if bytes(block[: len(SIGNATURE)]) != SIGNATURE:
                raise CopyProtocolError("binary COPY data without the PGCOPY signature")
            extension = int.from_bytes(block[len(HEADER) - 4 : len(HEADER)], "big")
            skip = len(HEADER) + extension
            starts[0] += skip
            lens[0] -= skip
            if lens[0] == 0:  # the header came alone
                starts, lens = starts[1:], lens[1:]
        if len(lens) and lens[-1] == 2 and block[starts[-1] : starts[-1] + 2] == TRAILER:
            starts, lens = starts[:-1], lens[:-1]
            self.ended = True
        nrows = len(starts)
        if nrows == 0:
            return
        # Gathers at NULL fields may read past the last field (8 bytes), and
        # the inline part of a short text (12).
        block += b"\0" * 16
        u8 = np.frombuffer(block, dtype=np.uint8)
        if (_gather(block, ">i2", starts) != self.nfields).any():
            raise CopyProtocolError("binary COPY row with an unexpected number of fields")
        pos = starts + 2
        base = self.rows
        ncolumns = len(self.columns)
        for j in range(self.nfields):
            if j < ncolumns:
                col = self.columns[j]
                decoder, dtype, width = plan.BINARY_WIRE[col.oid]
            else:  # an exceptions column: text, nearly always NULL
                col = self.columns[self.extras[j - ncolumns]]
                decoder, dtype, width = "exceptions", None, -1
            dpos = pos + 4
            if width > 0:
                # A field length is -1 (NULL, first byte 0xff) or the type's
                # width (first byte 0): one byte tells. Wrong lengths would
                # show in the row-length check below.
                null = u8[pos] == 0xFF
                pos = dpos + width
                pos -= null * width
            elif decoder == "exceptions":
                null = u8[pos] == 0xFF
                pos = dpos
                for i in np.flatnonzero(~null).tolist():
                    start = int(dpos[i])
                    size = int.from_bytes(block[start - 4 : start], "big")
                    col.exceptions[base + i] = bytes(block[start : start + size])
                    pos[i] += size
                continue
            else:
                flen = _gather(block, ">i4", pos)
                null = flen < 0
                lengths = np.where(null, 0, flen).astype(np.int64)
                pos = dpos + lengths
            if decoder == "text":
                col.add_arrow([_string_chunk(block, u8, dpos, lengths, null)])
            elif decoder == "bool":
                col.append(u8[dpos] != 0, null)
            else:
                assert dtype is not None
                col.append(_gather(block, dtype, dpos), null)
        if (pos != starts + lens).any():
            raise CopyProtocolError("binary COPY fields do not add up to their rows")
        self.rows += nrows


#: Texts longer than this on average are built through Arrow's string_view
#: (offsets into the block, one C copy per text); shorter ones by gathering
#: their bytes, which costs less for a few bytes each.
VIEW_AFTER = 16

_STRING_VIEW = getattr(pa, "string_view", None)  # pyarrow 16+


def _string_chunk(
    block: bytearray, u8: np.ndarray, dpos: np.ndarray, lengths: np.ndarray, null: np.ndarray
) -> pa.Array:
    """A large_string array of the bytes at ``dpos`` (``lengths`` long); validates UTF-8."""
    if _STRING_VIEW is not None and int(lengths.sum()) > VIEW_AFTER * len(lengths):
        array = _viewed_strings(block, u8, dpos, lengths, null)
    else:
        array = _gathered_strings(u8, dpos, lengths, null)
    array.validate(full=True)  # UTF-8; PostgreSQL sends valid text, but check
    return array


def _viewed_strings(
    block: bytearray, u8: np.ndarray, dpos: np.ndarray, lengths: np.ndarray, null: np.ndarray
) -> pa.Array:
    """Through a string_view array over the block (16-byte views: length, then the
    text inline if at most 12 bytes, else its first 4 bytes, buffer 0 and offset)."""
    n = len(lengths)
    views = np.zeros((n, 4), dtype=np.int32)
    size = lengths.astype(np.int32)
    views[:, 0] = size
    raw = views.view(np.uint8)  # (n, 16)
    long = size > 12
    short = ~long & (size > 0)
    if short.any():
        inline = u8[dpos[short, None] + np.arange(12)]
        raw[short, 4:16] = np.where(np.arange(12) < size[short, None], inline, 0)
    if long.any():
        at = dpos[long]
        raw[long, 4:8] = u8[at[:, None] + np.arange(4)]
        views[long, 3] = at  # buffer 0 (views[:, 2]) is the block
    nulls = int(null.sum())
    validity = pa.py_buffer(np.packbits(~null, bitorder="little")) if nulls else None
    assert _STRING_VIEW is not None  # _string_chunk checked
    viewed = pa.Array.from_buffers(
        _STRING_VIEW(), n, [validity, pa.py_buffer(views), pa.py_buffer(block)], nulls
    )
    return viewed.cast(pa.large_string())  # copies the texts: the block is not kept


def _gathered_strings(
    u8: np.ndarray, dpos: np.ndarray, lengths: np.ndarray, null: np.ndarray
) -> pa.Array:
    """By gathering every byte of the texts into one buffer."""
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    total = int(offsets[-1])
    index = np.repeat(dpos - offsets[:-1], lengths)
    index += np.arange(total, dtype=np.int64)
    data = u8[index]
    nulls = int(null.sum())
    validity = pa.py_buffer(np.packbits(~null, bitorder="little")) if nulls else None
    return pa.LargeStringArray.from_buffers(
        len(lengths), pa.py_buffer(offsets), pa.py_buffer(data), validity, nulls
    )
