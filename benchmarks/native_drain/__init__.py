"""A C receiving loop for the COPY fast path: a measurement prototype, not part of the package.

drain.c moves rows from libpq into a block in one call; build compiles and
binds it; loaded_libpq finds psycopg's own libpq; copy_out is
transfer.copy_out with the C loop. benchmarks/bench_native_drain.py measures
it against today's loop and ADBC (figures: benchmarks/README.md).
"""
