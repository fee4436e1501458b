-- Statements whose semicolons and colons are hard to place: routines, rules,
-- DO blocks, quoting of every kind. Written for the splitting corpus; every
-- statement here is valid for PostgreSQL 18's parser (it need not run).

CREATE SCHEMA corpus;
CREATE TABLE corpus.t (id int PRIMARY KEY, "array" int[], body text, "end" int);
CREATE TABLE corpus.log (id int, note text);

-- Rules with several actions, in the form pg_get_ruledef prints them.
CREATE RULE t_two AS ON INSERT TO corpus.t DO INSTEAD (
    INSERT INTO corpus.log VALUES (new.id, 'one; two');
    NOTIFY corpus_t;
);
CREATE RULE t_three AS ON UPDATE TO corpus.t DO ALSO (NOTIFY a; NOTIFY b; SELECT 1;);
CREATE OR REPLACE RULE t_nothing AS ON DELETE TO corpus.t WHERE old.id < 0 DO INSTEAD NOTHING;

-- SQL-standard bodies: CASE ... END inside, END as a bare column label, a
-- column named end, comments between BEGIN and ATOMIC.
CREATE FUNCTION corpus.sign_word(x int) RETURNS text LANGUAGE sql
BEGIN ATOMIC
    SELECT CASE WHEN x > 0 THEN 'positive; yes' WHEN x < 0 THEN 'negative' ELSE 'zero' END;
END;
CREATE FUNCTION corpus.labelled() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1 end; END;
CREATE FUNCTION corpus.case_then_label() RETURNS int LANGUAGE sql
    BEGIN ATOMIC SELECT CASE WHEN true THEN 1 END END; END;
CREATE PROCEDURE corpus.fill(n int) LANGUAGE sql BEGIN /* why not */ ATOMIC
    INSERT INTO corpus.t (id, "end") SELECT g, g FROM generate_series(1, n) AS g;
    UPDATE corpus.t SET body = 'x;y' WHERE t.end > 1;
    DELETE FROM corpus.log;
END;
CREATE OR REPLACE FUNCTION corpus.empty() RETURNS void LANGUAGE sql BEGIN ATOMIC END;
CREATE FUNCTION corpus.slice(a int[], n int) RETURNS int[] LANGUAGE sql RETURN a[1:n];
CREATE FUNCTION corpus.nested(x int) RETURNS int LANGUAGE sql
BEGIN ATOMIC
    SELECT (SELECT CASE x WHEN 1 THEN (CASE WHEN x > 0 THEN 1 END) ELSE 0 END);
    SELECT x AS end;
END;

-- Dollar quotes with tags, nested bodies, and plpgsql's own semicolons.
CREATE FUNCTION corpus.touch() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    q text := $q$SELECT 'a;b'$q$;
BEGIN
    EXECUTE q;
    NEW.body := coalesce(NEW.body, '') || ';';
    RETURN NEW;
END
$fn$;
DO $do$
BEGIN
    RAISE NOTICE 'done: %; %', 1, $x$ $$ not the end $x$;
END
$do$;
DO LANGUAGE plpgsql $body$ BEGIN PERFORM 1; END $body$;

-- Quoting of every kind, with semicolons and colons inside.
SELECT 'it''s; fine', E'tab\t; quote \' ;', U&'d\0061t;', $$dollar; $$, "end"
FROM corpus.t AS "t;x";
SELECT E'first'
    'continued; still a string' AS joined;
SELECT /* outer ; /* inner ; */ still ; */ 1 AS nested_comment;
SELECT 1 -- a ; in a line comment
    + 2 AS sum;
SELECT t.array[1:2], (t).array[2:3], t."array"[1:1] FROM corpus.t AS t;
SELECT (ARRAY[1, 2, 3])[2:3], (ARRAY[[1, 2], [3, 4]])[1:1][1:2];
SELECT x::text, j->>'k;', j #>> '{a,b}', j ?| ARRAY['a'] FROM (SELECT 1 AS x, '{}'::jsonb AS j) AS s;
SELECT 5 % 2, 'a%' LIKE 'a%';
SELECT ((((1))));
VALUES (1, 'a;'), (2, ')');

-- Transactions and a statement without its semicolon at the very end.
BEGIN;
SAVEPOINT s1;
ROLLBACK TO SAVEPOINT s1;
COMMIT;
SELECT 'last statement, no semicolon'
