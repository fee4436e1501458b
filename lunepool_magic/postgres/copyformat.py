"""PostgreSQL's binary COPY format: the constants that the reader and the writer share.

The fetch path (COPY TO) reads this format and persist (COPY FROM) writes it;
both take the file layout and the epochs from here, so the format is written
down once (see "Binary Format" in PostgreSQL's COPY documentation).
"""

from __future__ import annotations

#: The 11-byte signature that starts every binary COPY stream.
SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
#: Signature, a 32-bit flags field (0) and a 32-bit header-extension length (0).
HEADER = SIGNATURE + bytes(8)
#: The field count -1 that ends the stream.
TRAILER = b"\xff\xff"

#: 2000-01-01, PostgreSQL's epoch for dates and timestamps, in Unix microseconds...
PG_EPOCH_US = 946_684_800_000_000
#: ...and in days since 1970-01-01.
PG_EPOCH_DAYS = 10_957
