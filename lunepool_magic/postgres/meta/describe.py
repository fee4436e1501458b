"""``\\d NAME``: one relation's columns, with psql's title and footer lines.

The frame holds the columns psql tabulates (for an index: Key? and
Definition; for a sequence: its parameters); ``title`` is psql's title and
``footer`` the entries psql prints under the table, each a string (some,
such as a rule's definition, span several lines). The footers follow psql
18's order and wording: partition bound and key, indexes, constraints,
referencing foreign keys, policies, statistics objects, rules,
publications, triggers, foreign server, inheritance and partition counts,
tablespace.

Catalogs differ between the supported servers (catalog.OLDEST_SERVER to 18)
in a few places, each branched on the server version where it is used:
``inhdetachpending`` (14), ``pg_get_statisticsobjdef_columns`` and
``attcompression`` (14), ``indnullsnotdistinct`` (15), nullable
``attstattarget`` (17), VIRTUAL generated columns (18).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import psycopg

from lunepool_magic.postgres.meta.catalog import (
    MetaCommand,
    MetaError,
    MetaResult,
    name_filter,
    query,
    server_version,
)
from lunepool_magic.postgres.meta.lists import list_relations

__all__ = ["describe"]

Connection = psycopg.Connection[Any]

_TITLES = {
    "r": "Table",
    "p": "Partitioned table",
    "v": "View",
    "m": "Materialized view",
    "i": "Index",
    "I": "Partitioned index",
    "S": "Sequence",
    "f": "Foreign table",
    "t": "TOAST table",
    "c": "Composite type",
}
_TABLE_LIKE = ("r", "p", "m", "f", "t")  # kinds with indexes, constraints and triggers


def describe(conn: Connection, command: MetaCommand) -> MetaResult:
    """``\\d PATTERN``: describe the one relation it names, or list those it matches."""
    version = server_version(conn)
    params: dict[str, Any] = {}
    where = name_filter(
        command.pattern, "c.relname", "n.nspname", "pg_catalog.pg_table_is_visible(c.oid)", params
    )
    found = query(
        conn,
        "SELECT c.oid::pg_catalog.int8 AS oid, c.relkind::pg_catalog.text AS relkind "
        "FROM pg_catalog.pg_class c "
        "LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        f"WHERE true {where} ORDER BY n.nspname, c.relname",
        params,
    )
    if found.empty:
        raise MetaError(f'Did not find any relation named "{command.pattern}".')
    if len(found) > 1:
        # psql would describe each; a cell gives one frame, so it lists them.
        kinds = sorted(set(found["relkind"]))
        listing = list_relations(
            conn, MetaCommand("d", True, False, command.pattern, command.text), kinds
        )
        listing.footer = [
            f"({len(found)} relations match {command.pattern!r}; \\d NAME describes one)"
        ]
        return listing
    return _Relation(conn, version, int(found.iat[0, 0]), command.verbose).result()


class _Relation:
    """One relation's catalog facts, and the queries that build its description."""

    def __init__(self, conn: Connection, version: int, oid: int, verbose: bool) -> None:
        self.conn, self.version, self.oid, self.verbose = conn, version, oid, verbose
        info = self.query(
            "SELECT n.nspname, c.relname, c.relkind::pg_catalog.text AS kind, "
            "c.relpersistence::pg_catalog.text AS persistence, c.relispartition, "
            "c.relrowsecurity, c.relforcerowsecurity, c.relhasindex, c.relchecks, "
            "COALESCE(t.spcname, '') AS tablespace, "
            "CASE WHEN c.reloftype = 0 THEN '' "
            "ELSE c.reloftype::pg_catalog.regtype::pg_catalog.text END AS oftype, "
            "COALESCE(am.amname, '') AS am, "
            "COALESCE(pg_catalog.array_to_string(c.reloptions, ', '), '') AS options, "
            "c.relreplident::pg_catalog.text AS replident "
            "FROM pg_catalog.pg_class c "
            "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "LEFT JOIN pg_catalog.pg_tablespace t ON t.oid = c.reltablespace "
            "LEFT JOIN pg_catalog.pg_am am ON am.oid = c.relam "
            "WHERE c.oid = %(oid)s::pg_catalog.oid"
        ).iloc[0]
        self.info = info
        self.kind: str = info["kind"]
        self.partitioned = self.kind in ("p", "I")

    def query(self, sql: str) -> pd.DataFrame:
        return query(self.conn, sql, {"oid": self.oid})

    def values(self, sql: str) -> list[Any]:
        """The first column of a query's rows."""
        return list(self.query(sql).iloc[:, 0])

    # ---------------------------------------------------------------- result

    def result(self) -> MetaResult:
        title = f'{self.title_word()} "{self.info["nspname"]}.{self.info["relname"]}"'
        if self.kind == "S":
            return MetaResult(self.sequence(), title=title, footer=self.sequence_footer())
        frame = self.index_columns() if self.kind in ("i", "I") else self.columns()
        return MetaResult(frame, title=title, footer=self.footer())

    def title_word(self) -> str:
        word = _TITLES.get(self.kind, "Relation")
        if self.info["persistence"] == "u" and self.kind in ("r", "p", "m", "i", "I", "S"):
            return "Unlogged " + word[0].lower() + word[1:]
        return word

    # ---------------------------------------------------------------- columns

    def columns(self) -> pd.DataFrame:
        generated = (
            "WHEN a.attgenerated = 's' THEN 'generated always as (' || {expr} || ') stored' "
            "WHEN a.attgenerated = 'v' THEN 'generated always as (' || {expr} || ')' "
        ).format(expr="pg_catalog.pg_get_expr(d.adbin, d.adrelid, true)")
        columns = [
            'a.attname AS "Column"',
            'pg_catalog.format_type(a.atttypid, a.atttypmod) AS "Type"',
            "COALESCE((SELECT co.collname FROM pg_catalog.pg_collation co, pg_catalog.pg_type t "
            "WHERE co.oid = a.attcollation AND t.oid = a.atttypid "
            "AND a.attcollation <> t.typcollation), '') AS \"Collation\"",
            "CASE WHEN a.attnotnull THEN 'not null' ELSE '' END AS \"Nullable\"",
            "COALESCE(CASE WHEN a.attidentity = 'a' THEN 'generated always as identity' "
            "WHEN a.attidentity = 'd' THEN 'generated by default as identity' "
            f"{generated}"
            "ELSE pg_catalog.pg_get_expr(d.adbin, d.adrelid, true) END, '') AS \"Default\"",
        ]
        if self.kind == "f":
            columns.append(
                "CASE WHEN a.attfdwoptions IS NULL THEN '' ELSE '(' || pg_catalog.array_to_string("
                "ARRAY(SELECT pg_catalog.quote_ident(option_name) || ' ' || "
                "pg_catalog.quote_literal(option_value) FROM pg_catalog.pg_options_to_table("
                "a.attfdwoptions)), ', ') || ')' END AS \"FDW options\""
            )
        if self.verbose:
            columns.append(self._storage())
            if self.kind in ("r", "p", "m") and self.version >= 140000:
                columns.append(
                    "COALESCE(CASE a.attcompression WHEN 'p' THEN 'pglz' "
                    "WHEN 'l' THEN 'lz4' END, '') "
                    'AS "Compression"'
                )
            if self.kind in ("r", "p", "m", "f"):
                columns.append(self._stats_target())
            columns.append(
                "COALESCE(pg_catalog.col_description(a.attrelid, a.attnum), '') AS \"Description\""
            )
        return self.query(
            f"SELECT {', '.join(columns)} FROM pg_catalog.pg_attribute a "
            "LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
            "WHERE a.attrelid = %(oid)s::pg_catalog.oid AND a.attnum > 0 AND NOT a.attisdropped "
            "ORDER BY a.attnum"
        )

    def index_columns(self) -> pd.DataFrame:
        columns = [
            'a.attname AS "Column"',
            'pg_catalog.format_type(a.atttypid, a.atttypmod) AS "Type"',
            "CASE WHEN a.attnum <= i.indnkeyatts THEN 'yes' ELSE 'no' END AS \"Key?\"",
            'pg_catalog.pg_get_indexdef(a.attrelid, a.attnum, true) AS "Definition"',
        ]
        if self.verbose:
            columns += [self._storage(), self._stats_target()]
        return self.query(
            f"SELECT {', '.join(columns)} FROM pg_catalog.pg_attribute a "
            "JOIN pg_catalog.pg_index i ON i.indexrelid = a.attrelid "
            "WHERE a.attrelid = %(oid)s::pg_catalog.oid AND a.attnum > 0 AND NOT a.attisdropped "
            "ORDER BY a.attnum"
        )

    @staticmethod
    def _storage() -> str:
        return (
            "CASE a.attstorage WHEN 'p' THEN 'plain' WHEN 'm' THEN 'main' "
            "WHEN 'x' THEN 'extended' WHEN 'e' THEN 'external' END AS \"Storage\""
        )

    def _stats_target(self) -> str:
        # 17 made attstattarget NULL for "the default"; before, the default was -1.
        target = "a.attstattarget" if self.version >= 170000 else "NULLIF(a.attstattarget, -1)"
        return f"COALESCE({target}::pg_catalog.text, '') AS \"Stats target\""

    def sequence(self) -> pd.DataFrame:
        return self.query(
            'SELECT pg_catalog.format_type(s.seqtypid, NULL) AS "Type", s.seqstart AS "Start", '
            's.seqmin AS "Minimum", s.seqmax AS "Maximum", s.seqincrement AS "Increment", '
            "CASE WHEN s.seqcycle THEN 'yes' ELSE 'no' END AS \"Cycles?\", "
            's.seqcache AS "Cache" FROM pg_catalog.pg_sequence s '
            "WHERE s.seqrelid = %(oid)s::pg_catalog.oid"
        )

    def sequence_footer(self) -> list[str]:
        owners = self.query(
            "SELECT pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname) "
            "|| '.' || pg_catalog.quote_ident(a.attname) AS owner, "
            "d.deptype::pg_catalog.text AS kind "
            "FROM pg_catalog.pg_depend d "
            "JOIN pg_catalog.pg_class c ON c.oid = d.refobjid "
            "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = d.refobjsubid "
            "WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass "
            "AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass "
            "AND d.objid = %(oid)s::pg_catalog.oid AND d.deptype IN ('a', 'i')"
        )
        lines = []
        for owner, kind in owners.itertuples(index=False):
            what = "Sequence for identity column" if kind == "i" else "Owned by"
            lines.append(f"{what}: {owner}")
        return lines

    # ---------------------------------------------------------------- footer

    def footer(self) -> list[str]:
        lines: list[str] = []
        if self.info["relispartition"]:
            lines += self.partition_of()
        if self.kind in ("i", "I"):
            lines.append(self.index_line())
        elif self.kind in _TABLE_LIKE:
            if self.kind == "p":
                key = self.values("SELECT pg_catalog.pg_get_partkeydef(%(oid)s::pg_catalog.oid)")
                lines.append(f"Partition key: {key[0]}")
            lines += self.indexes()
            lines += self.section(
                "Check constraints",
                "SELECT '\"' || conname || '\" ' || pg_catalog.pg_get_constraintdef(oid, true) "
                "FROM pg_catalog.pg_constraint WHERE conrelid = %(oid)s::pg_catalog.oid "
                "AND contype = 'c' ORDER BY conname",
            )
            lines += self.foreign_keys()
            lines += self.referenced_by()
            lines += self.policies()
            lines += self.statistics()
            if self.kind != "m":
                lines += self.rules()
            lines += self.publications()
            if self.verbose and self.version >= 180000:
                lines += self.not_null_constraints()
        if self.verbose and self.kind in ("v", "m"):
            definition = self.values(
                "SELECT pg_catalog.pg_get_viewdef(%(oid)s::pg_catalog.oid, true)"
            )
            lines += ["View definition:", str(definition[0])]
        if self.kind == "v" and self.verbose:  # a view's rules show under \\d+ only
            lines += self.rules()
        lines += self.triggers()
        if self.kind == "f":
            lines += self.foreign_server()
        if self.kind in _TABLE_LIKE or self.partitioned:
            lines += self.inheritance()
        return lines + self.trailer()

    def trailer(self) -> list[str]:
        """The last footers: typed table, replica identity, tablespace, access method, options."""
        lines = []
        if self.info["oftype"]:
            lines.append(f"Typed table of type: {self.info['oftype']}")
        # Shown when not the default: DEFAULT for tables, NOTHING for system catalogs.
        usual = "n" if self.info["nspname"] == "pg_catalog" else "d"
        replident = {"f": "FULL", "n": "NOTHING", "d": "DEFAULT"}.get(self.info["replident"])
        if (
            self.verbose
            and replident
            and self.info["replident"] != usual
            and self.kind in ("r", "m")
        ):
            lines.append(f"Replica Identity: {replident}")
        if self.info["tablespace"] and self.kind in ("r", "p", "m", "i", "I"):
            lines.append(f'Tablespace: "{self.info["tablespace"]}"')
        # psql names the access method of every kind but a plain index.
        if self.verbose and self.info["am"] and self.kind != "i":
            lines.append(f"Access method: {self.info['am']}")
        if self.verbose and self.info["options"]:
            lines.append(f"Options: {self.info['options']}")
        return lines

    def section(self, title: str, sql: str) -> list[str]:
        """``Title:`` then each value indented, or nothing when the query finds none."""
        values = self.values(sql)
        return [f"{title}:", *(f"    {value}" for value in values)] if values else []

    def partition_of(self) -> list[str]:
        pending = "i.inhdetachpending" if self.version >= 140000 else "false"
        rows = self.query(
            "SELECT i.inhparent::pg_catalog.regclass::pg_catalog.text AS parent, "
            "COALESCE(pg_catalog.pg_get_expr(c.relpartbound, c.oid), '') AS bound, "
            f"{pending} AS pending "
            "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_inherits i ON c.oid = i.inhrelid "
            "WHERE c.oid = %(oid)s::pg_catalog.oid"
        )
        lines = []
        for parent, bound, pending_detach in rows.itertuples(index=False):
            # psql's own format: an index's bound is empty, leaving a trailing blank.
            lines.append(
                f"Partition of: {parent} {bound}{' DETACH PENDING' if pending_detach else ''}"
            )
        if self.verbose:
            constraint = self.values(
                "SELECT COALESCE(pg_catalog.pg_get_partition_constraintdef("
                "%(oid)s::pg_catalog.oid), '')"
            )[0]
            lines.append(
                f"Partition constraint: {constraint}" if constraint else "No partition constraint"
            )
        return lines

    def index_line(self) -> str:
        """What psql prints under an index's columns: its kind, method and table."""
        nulls = "i.indnullsnotdistinct" if self.version >= 150000 else "false"
        row = self.query(
            "SELECT i.indisprimary, i.indisunique, i.indisclustered, i.indisvalid, "
            f"i.indisreplident, {nulls} AS nulls_not_distinct, am.amname, "
            "n.nspname || '.' || c.relname AS tablename, "
            "COALESCE(pg_catalog.pg_get_expr(i.indpred, i.indrelid, true), '') AS predicate, "
            "COALESCE(con.condeferrable, false) AS deferrable, "
            "COALESCE(con.condeferred, false) AS deferred "
            "FROM pg_catalog.pg_index i "
            "JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid "
            "JOIN pg_catalog.pg_am am ON am.oid = ic.relam "
            "JOIN pg_catalog.pg_class c ON c.oid = i.indrelid "
            "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "LEFT JOIN pg_catalog.pg_constraint con ON con.conindid = i.indexrelid "
            "AND con.conrelid = i.indrelid AND con.contype IN ('p', 'u', 'x') "
            "WHERE i.indexrelid = %(oid)s::pg_catalog.oid"
        ).iloc[0]
        line = ""
        if row["indisprimary"]:
            line = "primary key, "
        elif row["indisunique"]:
            line = "unique" + (" nulls not distinct" if row["nulls_not_distinct"] else "") + ", "
        line += f'{row["amname"]}, for table "{row["tablename"]}"'
        if row["predicate"]:
            line += f", predicate ({row['predicate']})"
        for flag, words in (
            (row["indisclustered"], "clustered"),
            (not row["indisvalid"], "invalid"),
            (row["deferrable"], "deferrable"),
            (row["deferred"], "initially deferred"),
            (row["indisreplident"], "replica identity"),
        ):
            if flag:
                line += f", {words}"
        return line

    def indexes(self) -> list[str]:
        if not self.info["relhasindex"]:
            return []
        return self.section(
            "Indexes",
            "SELECT '\"' || c2.relname || '\"' "
            "|| CASE WHEN i.indisprimary THEN ' PRIMARY KEY,' "
            "WHEN i.indisunique AND con.contype = 'u' THEN ' UNIQUE CONSTRAINT,' "
            "WHEN i.indisunique THEN ' UNIQUE,' ELSE '' END "
            # An exclusion constraint shows as its definition, any other index
            # as what follows USING in its CREATE INDEX.
            "|| ' ' || CASE WHEN con.contype = 'x' "
            "THEN pg_catalog.pg_get_constraintdef(con.oid, true) "
            "ELSE pg_catalog.regexp_replace(pg_catalog.pg_get_indexdef(i.indexrelid, 0, true), "
            "'^.*? USING ', '') "
            "|| CASE WHEN con.condeferrable THEN ' DEFERRABLE' ELSE '' END "
            "|| CASE WHEN con.condeferred THEN ' INITIALLY DEFERRED' ELSE '' END END "
            "|| CASE WHEN i.indisclustered THEN ' CLUSTER' ELSE '' END "
            "|| CASE WHEN NOT i.indisvalid THEN ' INVALID' ELSE '' END "
            "|| CASE WHEN i.indisreplident THEN ' REPLICA IDENTITY' ELSE '' END "
            "|| COALESCE(', tablespace \"' || ts.spcname || '\"', '') "
            "FROM pg_catalog.pg_index i "
            "JOIN pg_catalog.pg_class c2 ON c2.oid = i.indexrelid "
            "LEFT JOIN pg_catalog.pg_tablespace ts ON ts.oid = c2.reltablespace "
            "LEFT JOIN pg_catalog.pg_constraint con ON con.conindid = i.indexrelid "
            "AND con.conrelid = i.indrelid AND con.contype IN ('p', 'u', 'x') "
            "WHERE i.indrelid = %(oid)s::pg_catalog.oid "
            "ORDER BY i.indisprimary DESC, c2.relname",
        )

    def foreign_keys(self) -> list[str]:
        # A partition shows the keys it inherits too, named by the table that owns them.
        if self.info["relispartition"] or self.kind == "p":
            source = (
                "FROM pg_catalog.pg_constraint, "
                "pg_catalog.pg_partition_ancestors(%(oid)s::pg_catalog.oid) "
                "WHERE conrelid = relid AND contype = 'f' AND conparentid = 0"
            )
        else:
            source = (
                "FROM pg_catalog.pg_constraint WHERE conrelid = %(oid)s::pg_catalog.oid "
                "AND contype = 'f' AND conparentid = 0"
            )
        return self.section(
            "Foreign-key constraints",
            "SELECT CASE WHEN conrelid = %(oid)s::pg_catalog.oid THEN '' "
            "ELSE 'TABLE \"' || conrelid::pg_catalog.regclass::pg_catalog.text "
            "|| '\" CONSTRAINT ' END "
            "|| '\"' || conname || '\" ' || pg_catalog.pg_get_constraintdef(oid, true) "
            f"{source} ORDER BY conrelid = %(oid)s::pg_catalog.oid DESC, conname",
        )

    def referenced_by(self) -> list[str]:
        return self.section(
            "Referenced by",
            "SELECT 'TABLE \"' || conrelid::pg_catalog.regclass::pg_catalog.text "
            "|| '\" CONSTRAINT \"' "
            "|| conname || '\" ' || pg_catalog.pg_get_constraintdef(oid, true) "
            "FROM pg_catalog.pg_constraint "
            "WHERE confrelid IN (SELECT pg_catalog.pg_partition_ancestors(%(oid)s::pg_catalog.oid) "
            "UNION ALL VALUES (%(oid)s::pg_catalog.oid::pg_catalog.regclass)) "
            "AND contype = 'f' AND conparentid = 0 ORDER BY conname",
        )

    def policies(self) -> list[str]:
        values = self.values(
            "SELECT 'POLICY \"' || pol.polname || '\"' "
            "|| CASE WHEN NOT pol.polpermissive THEN ' AS RESTRICTIVE' ELSE '' END "
            "|| CASE pol.polcmd WHEN 'r' THEN ' FOR SELECT' WHEN 'a' THEN ' FOR INSERT' "
            "WHEN 'w' THEN ' FOR UPDATE' WHEN 'd' THEN ' FOR DELETE' ELSE '' END "
            "|| CASE WHEN pol.polroles = '{0}' THEN '' ELSE E'\\n      TO ' "
            "|| pg_catalog.array_to_string(ARRAY(SELECT rolname FROM pg_catalog.pg_roles "
            "WHERE oid = ANY (pol.polroles) ORDER BY 1), ',') END "
            "|| COALESCE(E'\\n      USING (' || pg_catalog.pg_get_expr(pol.polqual, pol.polrelid) "
            "|| ')', '') "
            "|| COALESCE(E'\\n      WITH CHECK (' "
            "|| pg_catalog.pg_get_expr(pol.polwithcheck, pol.polrelid) || ')', '') "
            "FROM pg_catalog.pg_policy pol WHERE pol.polrelid = %(oid)s::pg_catalog.oid ORDER BY 1"
        )
        enabled, forced = self.info["relrowsecurity"], self.info["relforcerowsecurity"]
        if not enabled and not values:
            return []
        if not enabled:
            title = "Policies (row security disabled):"
        elif forced:
            title = "Policies (forced row security enabled):"
        else:
            title = "Policies:" if values else "Policies (row security enabled):"
        if enabled and not values:
            return [f"{title} (none)"]
        return [title, *(f"    {value}" for value in values)]

    def statistics(self) -> list[str]:
        if self.version >= 140000:
            columns = "pg_catalog.pg_get_statisticsobjdef_columns(s.oid)"
        else:
            columns = (
                "(SELECT pg_catalog.string_agg(pg_catalog.quote_ident(a.attname), ', ') "
                "FROM pg_catalog.unnest(s.stxkeys) k(attnum) JOIN pg_catalog.pg_attribute a "
                "ON a.attrelid = s.stxrelid AND a.attnum = k.attnum AND NOT a.attisdropped)"
            )
        target = "s.stxstattarget" if self.version >= 170000 else "NULLIF(s.stxstattarget, -1)"
        rows = self.query(
            "SELECT s.stxnamespace::pg_catalog.regnamespace::pg_catalog.text AS nsp, s.stxname, "
            f"{columns} AS columns, 'd' = ANY(s.stxkind) AS ndistinct, "
            "'f' = ANY(s.stxkind) AS dependencies, 'm' = ANY(s.stxkind) AS mcv, "
            f"COALESCE({target}::pg_catalog.text, '') AS target, "
            "s.stxrelid::pg_catalog.regclass::pg_catalog.text AS relation "
            "FROM pg_catalog.pg_statistic_ext s WHERE s.stxrelid = %(oid)s::pg_catalog.oid "
            "ORDER BY 1, 2"
        )
        if rows.empty:
            return []
        lines = ["Statistics objects:"]
        for row in rows.itertuples(index=False):
            kinds = [k for k, on in (("ndistinct", row.ndistinct), ("dependencies",
                     row.dependencies), ("mcv", row.mcv)) if on]  # fmt: skip
            line = f'    "{row.nsp}.{row.stxname}"'
            if kinds and len(kinds) < 3:  # all three is the default, and not spelled out
                line += f" ({', '.join(kinds)})"
            line += f" ON {row.columns} FROM {row.relation}"
            if row.target:
                line += f"; STATISTICS {row.target}"
            lines.append(line)
        return lines

    def publications(self) -> list[str]:
        """The publications that publish this table, with their column lists and row filters."""
        if self.kind not in ("r", "p"):
            return []
        if self.version >= 150000:  # schema publications, row filters, column lists
            by_schema = (
                "SELECT p.pubname, '' AS columns, '' AS filter FROM pg_catalog.pg_publication p "
                "JOIN pg_catalog.pg_publication_namespace pn ON pn.pnpubid = p.oid "
                "JOIN pg_catalog.pg_class c ON c.relnamespace = pn.pnnspid "
                "WHERE c.oid = %(oid)s::pg_catalog.oid "
                "AND pg_catalog.pg_relation_is_publishable(%(oid)s::pg_catalog.oid) UNION "
            )
            details = (
                "COALESCE((SELECT pg_catalog.string_agg(a.attname, ', ' ORDER BY k.n) "
                "FROM pg_catalog.unnest(pr.prattrs) WITH ORDINALITY AS k(attnum, n) "
                "JOIN pg_catalog.pg_attribute a "
                "ON a.attrelid = pr.prrelid AND a.attnum = k.attnum), '') AS columns, "
                "COALESCE(pg_catalog.pg_get_expr(pr.prqual, pr.prrelid), '') AS filter"
            )
        else:
            by_schema, details = "", "'' AS columns, '' AS filter"
        rows = self.query(
            f"{by_schema}SELECT p.pubname, {details} FROM pg_catalog.pg_publication p "
            "JOIN pg_catalog.pg_publication_rel pr ON pr.prpubid = p.oid "
            "WHERE pr.prrelid = %(oid)s::pg_catalog.oid UNION "
            "SELECT p.pubname, '', '' FROM pg_catalog.pg_publication p WHERE p.puballtables "
            "AND pg_catalog.pg_relation_is_publishable(%(oid)s::pg_catalog.oid) ORDER BY 1"
        )
        lines = []
        for name, columns, condition in rows.itertuples(index=False):
            line = f'    "{name}"' + (f" ({columns})" if columns else "")
            lines.append(line + (f" WHERE {condition}" if condition else ""))
        return ["Publications:", *lines] if lines else []

    def not_null_constraints(self) -> list[str]:
        """PostgreSQL 18 keeps NOT NULL as named constraints; psql lists them under \\d+."""
        return self.section(
            "Not-null constraints",
            "SELECT '\"' || c.conname || '\" NOT NULL \"' || a.attname || '\"' "
            "|| CASE WHEN c.connoinherit THEN ' NO INHERIT' "
            "WHEN c.conislocal AND c.coninhcount <> 0 THEN ' (local, inherited)' "
            "WHEN NOT c.conislocal THEN ' (inherited)' ELSE '' END "
            "|| CASE WHEN NOT c.convalidated THEN ' NOT VALID' ELSE '' END "
            "FROM pg_catalog.pg_constraint c JOIN pg_catalog.pg_attribute a "
            "ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1] "
            "WHERE c.contype = 'n' AND c.conrelid = %(oid)s::pg_catalog.oid ORDER BY a.attnum",
        )

    def rules(self) -> list[str]:
        rows = self.query(
            "SELECT r.ev_enabled::pg_catalog.text AS enabled, "
            "pg_catalog.substr(pg_catalog.rtrim(pg_catalog.pg_get_ruledef(r.oid, true), ';'), 13) "
            "AS definition "  # after "CREATE RULE "
            "FROM pg_catalog.pg_rewrite r WHERE r.ev_class = %(oid)s::pg_catalog.oid "
            "AND r.rulename <> '_RETURN' ORDER BY r.rulename"
        )
        if self.kind == "v":  # psql lists a view's rules together, indented by one blank
            return ["Rules:", *(f" {d}" for d in rows["definition"])] if len(rows) else []
        lines: list[str] = []
        for state, title in (
            ("O", "Rules"),
            ("D", "Disabled rules"),
            ("A", "Rules firing always"),
            ("R", "Rules firing on replica only"),
        ):
            chosen = rows[rows["enabled"] == state]["definition"]
            if len(chosen):
                lines += [f"{title}:", *(f"    {d}" for d in chosen)]
        return lines

    def triggers(self) -> list[str]:
        rows = self.query(
            "SELECT t.tgenabled::pg_catalog.text AS enabled, t.tgisinternal AS internal, "
            "pg_catalog.regexp_replace(pg_catalog.pg_get_triggerdef(t.oid, true), "
            "'^.*? TRIGGER ', '') "
            "|| COALESCE(', ON TABLE ' || (SELECT u.tgrelid::pg_catalog.regclass::pg_catalog.text "
            "FROM pg_catalog.pg_trigger u, "
            "pg_catalog.pg_partition_ancestors(t.tgrelid) WITH ORDINALITY AS a(relid, depth) "
            "WHERE t.tgparentid <> 0 AND u.tgname = t.tgname AND u.tgrelid = a.relid "
            "AND u.tgparentid = 0 ORDER BY a.depth LIMIT 1), '') AS definition "
            "FROM pg_catalog.pg_trigger t WHERE t.tgrelid = %(oid)s::pg_catalog.oid "
            "AND (NOT t.tgisinternal OR t.tgenabled = 'D') ORDER BY t.tgname"
        )
        lines: list[str] = []
        for title, chosen in (
            ("Triggers", (rows["enabled"] == "O") & ~rows["internal"]),
            ("Disabled user triggers", (rows["enabled"] == "D") & ~rows["internal"]),
            ("Disabled internal triggers", (rows["enabled"] == "D") & rows["internal"]),
            ("Triggers firing always", rows["enabled"] == "A"),
            ("Triggers firing on replica only", rows["enabled"] == "R"),
        ):
            definitions = rows[chosen]["definition"]
            if len(definitions):
                lines += [f"{title}:", *(f"    {d}" for d in definitions)]
        return lines

    def foreign_server(self) -> list[str]:
        row = self.query(
            "SELECT s.srvname, CASE WHEN f.ftoptions IS NULL THEN '' ELSE '(' "
            "|| pg_catalog.array_to_string(ARRAY(SELECT pg_catalog.quote_ident(option_name) "
            "|| ' ' || pg_catalog.quote_literal(option_value) "
            "FROM pg_catalog.pg_options_to_table(f.ftoptions)), ', ') || ')' END AS options "
            "FROM pg_catalog.pg_foreign_table f "
            "JOIN pg_catalog.pg_foreign_server s ON s.oid = f.ftserver "
            "WHERE f.ftrelid = %(oid)s::pg_catalog.oid"
        ).iloc[0]
        lines = [f"Server: {row['srvname']}"]
        if row["options"]:
            lines.append(f"FDW options: {row['options']}")
        return lines

    def inheritance(self) -> list[str]:
        lines: list[str] = []
        if not self.info["relispartition"]:
            parents = self.values(
                "SELECT c.oid::pg_catalog.regclass::pg_catalog.text "
                "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_inherits i ON c.oid = i.inhparent "
                "WHERE i.inhrelid = %(oid)s::pg_catalog.oid ORDER BY i.inhseqno"
            )
            lines += _continued("Inherits", parents)
        pending = "i.inhdetachpending" if self.version >= 140000 else "false"
        children = self.query(
            "SELECT c.oid::pg_catalog.regclass::pg_catalog.text AS child, "
            "c.relkind::pg_catalog.text AS kind, "
            f"{pending} AS pending, "
            "COALESCE(pg_catalog.pg_get_expr(c.relpartbound, c.oid), '') AS bound "
            "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_inherits i ON c.oid = i.inhrelid "
            "WHERE i.inhparent = %(oid)s::pg_catalog.oid "
            "ORDER BY pg_catalog.pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT', "
            "c.oid::pg_catalog.regclass::pg_catalog.text"
        )
        noun = "partitions" if self.partitioned else "child tables"
        if self.partitioned and children.empty:
            lines.append("Number of partitions: 0")
        elif not self.verbose:
            if len(children):
                lines.append(f"Number of {noun}: {len(children)} (Use \\d+ to list them.)")
        else:
            entries = []
            for row in children.itertuples(index=False):
                entry = row.child + (f" {row.bound}" if row.bound else "")
                if row.kind in ("p", "I"):
                    entry += ", PARTITIONED"
                elif row.kind == "f":
                    entry += ", FOREIGN"
                if row.pending:
                    entry += " (DETACH PENDING)"
                entries.append(entry)
            lines += _continued("Partitions" if self.partitioned else "Child tables", entries)
        return lines


def _continued(title: str, entries: list[str]) -> list[str]:
    """psql's list footer: ``Title: a,`` then the rest aligned under it, comma-separated."""
    lines = []
    for i, entry in enumerate(entries):
        lead = f"{title}: " if i == 0 else " " * (len(title) + 2)
        lines.append(lead + entry + ("," if i < len(entries) - 1 else ""))
    return lines
