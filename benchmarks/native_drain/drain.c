/*
 * Draining libpq's CopyData messages into a block: a MEASUREMENT PROTOTYPE.
 *
 * Not part of the package. benchmarks/bench_native_drain.py compiles it into a
 * temporary directory and calls drain() through ctypes, once per block or per
 * socket read, to measure what moving the COPY receiving loop out of Python
 * would buy (lunepool_magic/postgres/fetch/transfer.py calls PQgetCopyData
 * once per row from Python).
 *
 * It links against nothing: the caller passes the addresses of PQgetCopyData
 * and PQfreemem taken from the libpq that psycopg has loaded, so the PGconn is
 * only ever touched by the library that made it.
 */

#include <stdint.h>
#include <string.h>

typedef struct pg_conn PGconn;
typedef int (*get_copy_data_fn)(PGconn *conn, char **buffer, int async);
typedef void (*freemem_fn)(void *ptr);

/* One block being filled; the caller owns buf and lens and reads used/rows. */
typedef struct {
    char *buf;
    int64_t cap;         /* bytes buf can take */
    int64_t used;        /* bytes filled */
    int32_t *lens;
    int64_t lens_cap;    /* lengths lens can take */
    int64_t rows;        /* lengths filled */
    char *pending;       /* a received row that did not fit (libpq's memory) */
    int64_t pending_len;
} drain_block;

enum {
    DRAIN_FULL = 1,         /* the block is full; pending holds the next row */
    DRAIN_WOULD_BLOCK = 0,  /* libpq's buffer holds no whole row: wait, consume input */
    DRAIN_DONE = -1,        /* the COPY has ended: read its result */
    DRAIN_ERROR = -2        /* PQgetCopyData failed: see PQerrorMessage */
};

static int take(drain_block *b, char *row, int64_t len, freemem_fn freemem)
{
    if (b->used + len > b->cap || b->rows >= b->lens_cap) {
        b->pending = row;
        b->pending_len = len;
        return 0;
    }
    memcpy(b->buf + b->used, row, (size_t)len);
    b->used += len;
    b->lens[b->rows++] = (int32_t)len;
    freemem(row);
    return 1;
}

/*
 * Append rows to the block until libpq would block, the COPY ends or fails, or
 * the block is full. Returns one of the DRAIN_ codes. A pending row is taken
 * first (after the caller gave a new block); one larger than an empty block
 * stays pending, so the caller must give a block of at least pending_len.
 */
int drain(PGconn *conn, get_copy_data_fn get_copy_data, freemem_fn freemem, drain_block *b)
{
    if (b->pending != NULL) {
        char *row = b->pending;
        b->pending = NULL;
        if (!take(b, row, b->pending_len, freemem))
            return DRAIN_FULL;
        b->pending_len = 0;
    }
    for (;;) {
        char *row = NULL;
        int n = get_copy_data(conn, &row, 1);
        if (n == 0)
            return DRAIN_WOULD_BLOCK;
        if (n < 0)
            return n; /* DRAIN_DONE or DRAIN_ERROR */
        if (!take(b, row, n, freemem))
            return DRAIN_FULL;
    }
}
