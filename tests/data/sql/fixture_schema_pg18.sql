-- What fixture_schema.sql needs PostgreSQL 18 for: VIRTUAL generated columns.
CREATE TABLE lpm_fx.shapes (
    id integer PRIMARY KEY,
    w numeric NOT NULL,
    h numeric NOT NULL,
    area numeric GENERATED ALWAYS AS (w * h) VIRTUAL,
    perimeter numeric GENERATED ALWAYS AS (2 * (w + h)) STORED,
    label text COLLATE "C" GENERATED ALWAYS AS ('shape ' || id) VIRTUAL
);
