-- What fixture_schema.sql needs PostgreSQL 15 for: publications with column
-- lists, row filters and whole schemas.
CREATE PUBLICATION lpm_fx_filtered FOR TABLE lpm_fx.customers (id, name) WHERE (id > 0);
CREATE PUBLICATION lpm_fx_schema FOR TABLES IN SCHEMA lpm_fx_sales;
