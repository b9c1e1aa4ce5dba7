#!/usr/bin/env python3
"""Replays the SQL that Grafana, Metabase and DBeaver send to a PostgreSQL data source
when it is added ("Save & test" / connect) and while its schema is browsed (table list,
column list with types, primary and foreign keys, the query editor's time-column
lookup). Run by tests/pg_clients.rs against supportlake and against a real PostgreSQL
holding the same `events` table.

usage: replay.py CLIENT HOST PORT PASSWORD
CLIENT: grafana | metabase | dbeaver

Prints one JSON object per statement: {"check", "ok", "value", "detail"}. "value" is what
both servers must agree on, narrowed to the `events` table (supportlake has more views
than the control has tables); it is null where the answers legitimately differ (OIDs,
versions, lists of other relations). A failing statement does not stop the others. The
exit code is 0 unless the connection itself cannot be made.

The statements were read from each tool's source (the repository and file are named
above each group below) and are written here in our own formatting; where the tool binds
a parameter, the parameter is the one it would bind for table `events` in schema
`public`. How each tool talks:
- Grafana runs the editor's metadata SQL through its backend with pgconn's `Exec`, the
  simple query protocol (psycopg without parameters does the same); its health check is
  pgx's `Ping`, the simple query `-- ping`. The newer backend schema lookups use pgx's
  `Query` with `$n` arguments: the extended protocol.
- Metabase and DBeaver run through PgJDBC, which prepares every statement: the extended
  protocol, unnamed statements, Java `long` parameters as int8. Here, a statement without
  parameters is sent through `Cursor.stream`, which psycopg always sends as
  Parse/Bind/Execute. (PgJDBC's own DatabaseMetaData SQL is checked by JdbcCheck.java.)
"""

import json
import sys

import psycopg
from psycopg.types.numeric import Int8

client, host, port, password = sys.argv[1:5]
DSN = f"host={host} port={port} dbname=supportlake user=analyst password={password} sslmode=disable"

# The columns of `events` and their types, for reading the answers.
TABLE = "events"
SCHEMA = "public"

conn = None


def connect():
    global conn
    conn = psycopg.connect(DSN, autocommit=True, connect_timeout=20)


def ensure_connection():
    """A server that drops the connection after an error must not fail every later check."""
    if conn is None or conn.closed or conn.broken:
        connect()


def plain(v):
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    return str(v)


def emit(name, ok, value=None, detail=""):
    line = {"check": f"{client}: {name}", "ok": ok, "value": plain(value)}
    if detail:
        line["detail"] = detail
    print(json.dumps(line), flush=True)


def check(name, f):
    try:
        ensure_connection()
        value = f()
        emit(name, True, value)
    except Exception as e:  # the server's error is the finding
        emit(name, False, None, f"{type(e).__name__}: {e}".strip()[:2000])


class Missing(Exception):
    pass


def expect(cond, what):
    if not cond:
        raise AssertionError(what)


def simple(sql):
    """The simple query protocol (psycopg sends a statement without parameters so)."""
    with conn.cursor() as cur:
        cur.execute(sql)
        names = [d.name for d in cur.description] if cur.description else []
        return names, (cur.fetchall() if cur.description else [])


def extended(sql, params=None):
    """The extended query protocol, as PgJDBC and pgx's Query send it."""
    with conn.cursor() as cur:
        if params is None:
            rows = list(cur.stream(sql))
        else:
            cur.execute(sql, params)
            rows = cur.fetchall() if cur.description else []
        names = [d.name for d in cur.description] if cur.description else []
        return names, rows


def extended_command(sql):
    """A statement without a result set over the extended protocol (Parse/Bind/Execute
    through libpq's PQexecParams; psycopg's stream() wants rows)."""
    res = conn.pgconn.exec_params(sql.encode(), [])
    if res.status not in (psycopg.pq.ExecStatus.COMMAND_OK, psycopg.pq.ExecStatus.TUPLES_OK):
        raise psycopg.errors.error_from_result(res, encoding=conn.info.encoding)
    return None


def column(result, name):
    names, rows = result
    i = names.index(name)
    return [r[i] for r in rows]


def records(result):
    names, rows = result
    return [dict(zip(names, r)) for r in rows]


# --- Grafana ------------------------------------------------------------------------

def grafana():
    # Health check ("Save & test"): grafana/grafana
    # pkg/tsdb/grafana-postgresql-datasource/pgx/handler_checkhealth.go -> sqleng/sql_engine.go
    # `Ping` -> pgxpool Ping -> pgconn `Exec(ctx, "-- ping")` (jackc/pgx pgconn/pgconn.go).
    check("health check ping", lambda: (simple("-- ping"), None)[1])

    # Connection settings' version auto-detection: grafana/grafana
    # public/app/plugins/datasource/grafana-postgresql-datasource/postgresMetaQuery.ts
    # (getVersion, getTimescaleDBVersion), called by configuration/useAutoDetectFeatures.ts.
    def version():
        v = column(simple("SELECT current_setting('server_version_num')::int/100 as version"),
                   "version")
        expect(len(v) == 1 and isinstance(v[0], int) and v[0] >= 906, f"version {v}")
        return None
    check("server version", version)
    check("timescaledb version", lambda: column(simple(
        "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"), "extversion"))

    # The SQL editor's table list and column list: postgresMetaQuery.ts (showTables without
    # a schema, getSchema, buildSchemaConstraint), called by datasource.ts (fetchTables,
    # fetchFields).
    search_path_schemas = """
          quote_ident(table_schema) IN (
          SELECT
            CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
          FROM
            generate_series(
              array_lower(string_to_array(current_setting('search_path'),','),1),
              array_upper(string_to_array(current_setting('search_path'),','),1)
            ) as i,
            string_to_array(current_setting('search_path'),',') s
          )"""
    check("editor table list", lambda: TABLE in column(simple(f"""
        SELECT
          CASE WHEN {search_path_schemas}
            THEN quote_ident(table_name)
            ELSE quote_ident(table_schema) || '.' || quote_ident(table_name)
          END AS "table"
        FROM information_schema.tables
        WHERE quote_ident(table_schema) NOT IN ('information_schema',
                                 'pg_catalog',
                                 '_timescaledb_cache',
                                 '_timescaledb_catalog',
                                 '_timescaledb_internal',
                                 '_timescaledb_config',
                                 'timescaledb_information',
                                 'timescaledb_experimental')
        ORDER BY CASE WHEN {search_path_schemas} THEN 0 ELSE 1 END, 1"""), "table"))

    check("editor column list", lambda: sorted(simple(f"""
        SELECT quote_ident(column_name) AS "column", data_type AS "type"
        FROM information_schema.columns
        WHERE
          CASE WHEN array_length(parse_ident('{TABLE}'),1) = 2
            THEN quote_ident(table_schema) = (parse_ident('{TABLE}'))[1]
              AND quote_ident(table_name) = (parse_ident('{TABLE}'))[2]
            ELSE quote_ident(table_name) = '{TABLE}'
              AND {search_path_schemas}
          END""")[1]))

    # The query builder's metadata queries (time column, metric column, column type,
    # aggregates, the first table with a time and a value column): grafana/grafana
    # public/app/plugins/datasource/postgres/meta_query.ts (PostgresMetaQuery: buildTableQuery,
    # buildColumnQuery, buildDatatypeQuery, buildAggregateQuery, findMetricTable).
    legacy_schemas = """
        table_schema IN (
          SELECT
            CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
          FROM
            generate_series(
              array_lower(string_to_array(current_setting('search_path'),','),1),
              array_upper(string_to_array(current_setting('search_path'),','),1)
            ) as i,
            string_to_array(current_setting('search_path'),',') s
        )"""
    table_constraint = f"{legacy_schemas} AND table_name = '{TABLE}'"
    check("builder table list", lambda: TABLE in [r[0] for r in simple(
        f"SELECT quote_ident(table_name) FROM information_schema.tables WHERE {legacy_schemas}"
        " ORDER BY table_name")[1]])
    check("builder time column", lambda: [r[0] for r in simple(
        f"SELECT quote_ident(column_name) FROM information_schema.columns WHERE {table_constraint}"
        " AND data_type IN ('timestamp without time zone','timestamp with time zone','bigint',"
        "'integer','double precision','real') ORDER BY column_name")[1]])
    check("builder metric column", lambda: [r[0] for r in simple(
        f"SELECT quote_ident(column_name) FROM information_schema.columns WHERE {table_constraint}"
        " AND data_type IN ('text','character','character varying') ORDER BY column_name")[1]])
    check("builder column type", lambda: [r[0] for r in simple(
        f"SELECT udt_name FROM information_schema.columns WHERE {table_constraint}"
        " AND column_name = 'ts'")[1]])

    def aggregates():
        names = [r[0] for r in simple(
            "SELECT DISTINCT proname FROM pg_aggregate "
            "INNER JOIN pg_proc ON pg_aggregate.aggfnoid = pg_proc.oid "
            "INNER JOIN pg_type ON pg_type.oid=pg_proc.prorettype "
            "WHERE pronargs=1 AND typname IN ('float8') AND aggkind='n' ORDER BY 1")[1]]
        expect("avg" in names, f"no avg among float8 aggregates: {names}")
        return None
    check("builder aggregates", aggregates)

    check("builder metric table", lambda: (simple(f"""
        SELECT
          quote_ident(table_name) as table_name,
          ( SELECT quote_ident(column_name) as column_name
            FROM information_schema.columns c
            WHERE c.table_schema = t.table_schema AND c.table_name = t.table_name
              AND udt_name IN ('timestamptz','timestamp')
            ORDER BY ordinal_position LIMIT 1
          ) AS time_column,
          ( SELECT quote_ident(column_name) AS column_name
            FROM information_schema.columns c
            WHERE c.table_schema = t.table_schema AND c.table_name = t.table_name
              AND udt_name='float8'
            ORDER BY ordinal_position LIMIT 1
          ) AS value_column
        FROM information_schema.tables t
        WHERE {legacy_schemas} AND
          EXISTS
          ( SELECT 1 FROM information_schema.columns c
            WHERE c.table_schema = t.table_schema AND c.table_name = t.table_name
              AND udt_name IN ('timestamptz','timestamp')
          ) AND
          EXISTS
          ( SELECT 1 FROM information_schema.columns c
            WHERE c.table_schema = t.table_schema AND c.table_name = t.table_name
              AND udt_name='float8'
          )
        LIMIT 1
        ;"""), None)[1])

    # The backend's schema lookups (pgx Query with arguments): grafana/grafana
    # pkg/tsdb/grafana-postgresql-datasource/schema.go (querySchemas, queryTables,
    # queryColumns).
    check("schema list", lambda: SCHEMA in column(extended(
        "SELECT schema_name FROM information_schema.schemata"
        " WHERE schema_name NOT LIKE 'pg_%' AND schema_name != 'information_schema'"
        " ORDER BY schema_name"), "schema_name"))
    check("schema table list", lambda: TABLE in column(extended(
        "SELECT table_name FROM information_schema.tables"
        " WHERE table_schema = %s AND table_type IN ('BASE TABLE', 'VIEW')"
        " ORDER BY table_name", [SCHEMA]), "table_name"))
    check("schema column list", lambda: extended(
        "SELECT column_name, data_type, udt_name, numeric_precision, numeric_scale"
        " FROM information_schema.columns"
        " WHERE table_schema = %s AND table_name = %s"
        " ORDER BY ordinal_position", [SCHEMA, TABLE])[1])


# --- Metabase -----------------------------------------------------------------------

def metabase():
    # "Save" (connection test): metabase/metabase
    # src/metabase/driver/sql_jdbc/connection.clj (can-connect-with-spec?).
    check("connection test", lambda: extended("SELECT 1")[1])

    # The database's time zone and the report time zone: metabase/metabase
    # src/metabase/driver/postgres.clj (db-default-timezone, set-timezone-sql).
    def timezone():
        rows = extended("show timezone;")[1]
        expect(len(rows) == 1 and rows[0][0], f"no time zone: {rows}")
        return None
    check("show timezone", timezone)
    check("set session timezone", lambda: extended_command("SET SESSION TIMEZONE TO 'UTC';"))

    # Sync: which tables the user may read, the table list, enum types, the fields with
    # their types and primary keys, the foreign keys. metabase/metabase
    # src/metabase/driver/postgres.clj (current-user-table-privileges, get-tables-sql via
    # describe-syncable-tables, enum-types via describe-fields-pre-process-xf,
    # describe-fields-sql, describe-fks-sql), written out from their HoneySQL.
    def privileges():
        quoted = "'\"' || replace(t.schemaname, '\"', '\"\"') || '\"' || '.' || '\"' || replace(t.objectname, '\"', '\"\"') || '\"'"
        sql = "\n".join([
            "with table_privileges as (",
            " select",
            "   NULL as role,",
            "   t.schemaname as schema,",
            "   t.objectname as table,",
            f"   pg_catalog.has_any_column_privilege(current_user, {quoted},  'update') as update,",
            f"   pg_catalog.has_any_column_privilege(current_user, {quoted},  'select') as select,",
            f"   pg_catalog.has_any_column_privilege(current_user, {quoted},  'insert') as insert,",
            f"   pg_catalog.has_table_privilege(     current_user, {quoted},  'delete') as delete",
            " from (",
            "   select schemaname, tablename as objectname from pg_catalog.pg_tables",
            "   union",
            "   select schemaname, viewname as objectname from pg_catalog.pg_views",
            "   union",
            "   select schemaname, matviewname as objectname from pg_catalog.pg_matviews",
            " ) t",
            " where t.schemaname !~ '^pg_'",
            "   and t.schemaname <> 'information_schema'",
            "   and pg_catalog.has_schema_privilege(current_user, t.schemaname, 'usage')",
            ")",
            "select t.*",
            "from table_privileges t",
        ])
        rows = [r for r in records(extended(sql))
                if r["schema"] == SCHEMA and r["table"] == TABLE]
        expect(len(rows) == 1, f"{TABLE} is not listed once: {rows}")
        r = rows[0]
        return [r["select"], r["update"], r["insert"], r["delete"]]
    check("table privileges", privileges)

    check("table list", lambda: TABLE in column(extended(
        'SELECT "n"."nspname" AS "schema", "c"."relname" AS "name",'
        ' CASE "c"."relkind" WHEN \'r\' THEN \'TABLE\' WHEN \'p\' THEN \'PARTITIONED TABLE\''
        ' WHEN \'v\' THEN \'VIEW\' WHEN \'f\' THEN \'FOREIGN TABLE\''
        ' WHEN \'m\' THEN \'MATERIALIZED VIEW\' ELSE NULL END AS "type",'
        ' "d"."description" AS "description", "stat"."n_live_tup" AS "estimated_row_count"'
        ' FROM "pg_catalog"."pg_class" AS "c"'
        ' INNER JOIN "pg_catalog"."pg_namespace" AS "n" ON "c"."relnamespace" = "n"."oid"'
        ' LEFT JOIN "pg_catalog"."pg_description" AS "d" ON ("c"."oid" = "d"."objoid")'
        ' AND ("d"."objsubid" = %s) AND ("d"."classoid" = \'pg_class\'::regclass)'
        ' LEFT JOIN "pg_stat_user_tables" AS "stat" ON ("n"."nspname" = "stat"."schemaname")'
        ' AND ("c"."relname" = "stat"."relname")'
        ' WHERE (("c"."relnamespace" = "n"."oid") AND ("n"."nspname" !~ %s)'
        ' AND ("n"."nspname" <> %s) AND c.relkind in (\'r\', \'p\', \'v\', \'f\', \'m\'))'
        ' AND ("n"."nspname" IN (%s))'
        ' ORDER BY "type" ASC, "schema" ASC, "name" ASC',
        [Int8(0), "^pg_", "information_schema", SCHEMA]), "name"))

    check("enum types", lambda: extended(
        "SELECT nspname, typname "
        "FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
        "WHERE t.oid IN (SELECT DISTINCT enumtypid FROM pg_enum e)")[1])

    def fields():
        # The `%` of format() and LIKE are doubled for psycopg's parameter syntax.
        sql = (
            'SELECT "c"."column_name" AS "name",'
            ' CASE WHEN "c"."udt_schema" IN (\'public\', \'pg_catalog\')'
            ' THEN FORMAT(\'%%s\', "c"."udt_name")'
            ' ELSE FORMAT(\'"%%s"."%%s"\', "c"."udt_schema", "c"."udt_name") END AS "database-type",'
            ' "c"."ordinal_position" - 1 AS "database-position",'
            ' "c"."table_schema" AS "table-schema", "c"."table_name" AS "table-name",'
            ' "pk"."column_name" IS NOT NULL AS "pk?",'
            ' COL_DESCRIPTION(CAST(CAST(FORMAT(\'%%I.%%I\', CAST("c"."table_schema" AS TEXT),'
            ' CAST("c"."table_name" AS TEXT)) AS REGCLASS) AS OID), "c"."ordinal_position")'
            ' AS "field-comment",'
            ' ((("column_default" IS NULL) OR (LOWER("column_default") = \'null\'))'
            ' AND ("is_nullable" = \'NO\')'
            ' AND NOT ((("column_default" IS NOT NULL) AND ("column_default" LIKE \'%%nextval(%%\'))'
            ' OR ("is_identity" <> \'NO\'))) AS "database-required",'
            ' ((("column_default" IS NOT NULL) AND ("column_default" LIKE \'%%nextval(%%\'))'
            ' OR ("is_identity" <> \'NO\')) AS "database-is-auto-increment"'
            ' FROM "information_schema"."columns" AS "c"'
            ' LEFT JOIN (SELECT "tc"."table_schema", "tc"."table_name", "kc"."column_name"'
            ' FROM "information_schema"."table_constraints" AS "tc"'
            ' INNER JOIN "information_schema"."key_column_usage" AS "kc"'
            ' ON ("tc"."constraint_name" = "kc"."constraint_name")'
            ' AND ("tc"."table_schema" = "kc"."table_schema")'
            ' AND ("tc"."table_name" = "kc"."table_name")'
            ' WHERE "tc"."constraint_type" = \'PRIMARY KEY\') AS "pk"'
            ' ON ("c"."table_schema" = "pk"."table_schema")'
            ' AND ("c"."table_name" = "pk"."table_name")'
            ' AND ("c"."column_name" = "pk"."column_name")'
            " WHERE c.table_schema !~ '^information_schema|catalog_history|pg_'"
            ' AND ("c"."table_schema" IN (%s)) AND ("c"."table_name" IN (%s))'
            ' UNION ALL'
            ' SELECT "pa"."attname" AS "name",'
            ' CASE WHEN "ptn"."nspname" IN (\'public\', \'pg_catalog\')'
            ' THEN FORMAT(\'%%s\', "pt"."typname")'
            ' ELSE FORMAT(\'"%%s"."%%s"\', "ptn"."nspname", "pt"."typname") END AS "database-type",'
            ' "pa"."attnum" - 1 AS "database-position",'
            ' "pn"."nspname" AS "table-schema", "pc"."relname" AS "table-name",'
            ' FALSE AS "pk?", NULL AS "field-comment", FALSE AS "database-required",'
            ' FALSE AS "database-is-auto-increment"'
            ' FROM "pg_catalog"."pg_class" AS "pc"'
            ' INNER JOIN "pg_catalog"."pg_namespace" AS "pn" ON "pn"."oid" = "pc"."relnamespace"'
            ' INNER JOIN "pg_catalog"."pg_attribute" AS "pa" ON "pa"."attrelid" = "pc"."oid"'
            ' INNER JOIN "pg_catalog"."pg_type" AS "pt" ON "pt"."oid" = "pa"."atttypid"'
            ' INNER JOIN "pg_catalog"."pg_namespace" AS "ptn" ON "ptn"."oid" = "pt"."typnamespace"'
            ' WHERE ("pc"."relkind" = \'m\') AND ("pa"."attnum" >= 1)'
            ' AND ("pn"."nspname" IN (%s)) AND ("pc"."relname" IN (%s))'
            ' ORDER BY "table-schema" ASC, "table-name" ASC, "database-position" ASC'
        )
        rows = records(extended(sql, [SCHEMA, TABLE, SCHEMA, TABLE]))
        expect(rows, f"no fields for {TABLE}")
        return [[r["name"], r["database-type"], r["database-position"], r["pk?"]] for r in rows]
    check("describe fields", fields)

    check("describe fks", lambda: extended(
        'SELECT "fk_ns"."nspname" AS "fk-table-schema", "fk_table"."relname" AS "fk-table-name",'
        ' "fk_column"."attname" AS "fk-column-name", "pk_ns"."nspname" AS "pk-table-schema",'
        ' "pk_table"."relname" AS "pk-table-name", "pk_column"."attname" AS "pk-column-name"'
        ' FROM "pg_constraint" AS "c"'
        ' INNER JOIN "pg_class" AS "fk_table" ON "c"."conrelid" = "fk_table"."oid"'
        ' INNER JOIN "pg_namespace" AS "fk_ns" ON "c"."connamespace" = "fk_ns"."oid"'
        ' INNER JOIN "pg_attribute" AS "fk_column" ON "c"."conrelid" = "fk_column"."attrelid"'
        ' INNER JOIN "pg_class" AS "pk_table" ON "c"."confrelid" = "pk_table"."oid"'
        ' INNER JOIN "pg_namespace" AS "pk_ns" ON "pk_table"."relnamespace" = "pk_ns"."oid"'
        ' INNER JOIN "pg_attribute" AS "pk_column" ON "c"."confrelid" = "pk_column"."attrelid"'
        " WHERE (fk_ns.nspname !~ '^information_schema|catalog_history|pg_')"
        " AND (\"c\".\"contype\" = 'f'::char)"
        ' AND ("fk_column"."attnum" = ANY(c.conkey))'
        ' AND ("pk_column"."attnum" = ANY(c.confkey))'
        ' AND ("fk_table"."relname" IN (%s)) AND ("fk_ns"."nspname" IN (%s))'
        ' ORDER BY "fk-table-schema" ASC, "fk-table-name" ASC', [TABLE, SCHEMA])[1])


# --- DBeaver ------------------------------------------------------------------------

def dbeaver():
    found = {}

    # Connect: dbeaver/dbeaver plugins/org.jkiss.dbeaver.ext.postgresql/src/org/jkiss/dbeaver/
    # ext/postgresql/model/PostgreDatabase.java (readDatabaseInfo),
    # model/PostgreDataSource.java (initialize: version and the pg_enum / pg_class.reltype
    # probes of PostgreUtils.getQueryForSystemColumnChecking; initializeRemoteInstance: the
    # standard_conforming_strings setting of SettingCache).
    check("database info", lambda: column(extended(
        "SELECT db.oid,db.* FROM pg_catalog.pg_database db WHERE datname=%s",
        ["supportlake"]), "datname"))

    def version():
        v = extended("SELECT version()")[1]
        expect(len(v) == 1 and "PostgreSQL" in v[0][0], f"version {v}")
        return None
    check("server version", version)
    check("pg_enum probe", lambda: extended("SELECT * FROM pg_catalog.pg_enum WHERE 1<>1 LIMIT 1")[1])
    check("pg_class.reltype probe", lambda: extended(
        "SELECT reltype FROM pg_catalog.pg_class WHERE 1<>1 LIMIT 1")[1])
    check("setting standard_conforming_strings", lambda: column(extended(
        "select * from pg_catalog.pg_settings where name=%s",
        ["standard_conforming_strings"]), "setting"))

    # The context's defaults: model/PostgreExecutionContext.java (refreshDefaults).
    check("current schema and user", lambda: extended("SELECT current_schema(),session_user")[1])

    def search_path():
        rows = extended("SHOW search_path")[1]
        expect(len(rows) == 1, f"{rows}")
        # As DBeaver reads it: unquoted names; "$user" names no schema here.
        parts = [p.strip().strip('"') for p in rows[0][0].split(",")]
        return [p for p in parts if p and p != "$user"]
    check("search_path", search_path)

    # The navigator: schemas and data types (model/PostgreDatabase.java: SchemaCache,
    # cacheDataTypes with PostgreDataTypeCache.getBaseTypeNameClause), then the schema's
    # tables, columns, constraints and indexes (model/PostgreSchema.java: TableCache with
    # its children statement, ConstraintCache, IndexCache).
    def schemas():
        rows = records(extended(
            "SELECT n.oid,n.*,d.description FROM pg_catalog.pg_namespace n\n"
            "LEFT OUTER JOIN pg_catalog.pg_description d ON d.objoid=n.oid AND d.objsubid=0"
            " AND d.classoid='pg_namespace'::regclass\n ORDER BY nspname"))
        public = [r for r in rows if r["nspname"] == SCHEMA]
        expect(public, f"no schema {SCHEMA}")
        found["namespace"] = public[0]["oid"]
        return True
    check("schemas", schemas)

    def data_types():
        rows = records(extended(
            "SELECT t.oid,t.*,c.relkind,format_type(nullif(t.typbasetype, 0), t.typtypmod)"
            " as base_type_name, d.description\nFROM pg_catalog.pg_type t"
            "\nLEFT OUTER JOIN pg_catalog.pg_type et ON et.oid=t.typelem "
            "\nLEFT OUTER JOIN pg_catalog.pg_class c ON c.oid=t.typrelid"
            "\nLEFT OUTER JOIN pg_catalog.pg_description d ON t.oid=d.objoid"
            "\nWHERE t.typname IS NOT NULL"
            "\nAND (c.relkind IS NULL OR c.relkind = 'c')"
            " AND (et.typcategory IS NULL OR et.typcategory <> 'C')"))
        found["types"] = {int(r["oid"]): r["typname"] for r in rows}
        names = set(found["types"].values())
        return all(t in names for t in ("text", "timestamptz", "int2", "date"))
    check("data types", data_types)

    def oid(key, what):
        if key not in found:
            raise Missing(f"needs the oid of {what} from an earlier check")
        return Int8(int(found[key]))

    def tables():
        rows = records(extended(
            "SELECT c.oid,c.*,d.description,pg_catalog.pg_get_expr(c.relpartbound, c.oid)"
            " as partition_expr,  pg_catalog.pg_get_partkeydef(c.oid) as partition_key "
            "\nFROM pg_catalog.pg_class c\n"
            "LEFT OUTER JOIN pg_catalog.pg_description d ON d.objoid=c.oid AND d.objsubid=0"
            " AND d.classoid='pg_class'::regclass\n"
            "WHERE c.relnamespace=%s AND c.relkind not in ('i','I','c')",
            [oid("namespace", f"schema {SCHEMA}")]))
        mine = [r for r in rows if r["relname"] == TABLE]
        expect(len(mine) == 1, f"{TABLE} is not listed once")
        found["table"] = mine[0]["oid"]
        return True
    check("tables", tables)

    def columns():
        rows = records(extended(
            "SELECT c.relname,a.*,pg_catalog.pg_get_expr(ad.adbin, ad.adrelid, true) as def_value,"
            "dsc.description,dep.objid"
            "\nFROM pg_catalog.pg_attribute a"
            "\nINNER JOIN pg_catalog.pg_class c ON (a.attrelid=c.oid)"
            "\nLEFT OUTER JOIN pg_catalog.pg_attrdef ad ON (a.attrelid=ad.adrelid AND a.attnum = ad.adnum)"
            "\nLEFT OUTER JOIN pg_catalog.pg_description dsc ON (c.oid=dsc.objoid AND a.attnum = dsc.objsubid)"
            "\nLEFT OUTER JOIN pg_depend dep on dep.refobjid = a.attrelid AND dep.deptype = 'i' "
            "and dep.refobjsubid = a.attnum and dep.classid = dep.refclassid"
            "\nWHERE NOT a.attisdropped AND c.relkind not in ('i','I','c') AND c.oid=%s"
            "\nORDER BY a.attnum",
            [oid("table", f"table {TABLE}")]))
        types = found.get("types", {})
        # Only the user columns (system columns have attnum < 1), typed as DBeaver types
        # them: through the pg_type rows of its data type cache.
        return [[r["attname"], r["attnum"], types.get(int(r["atttypid"]))]
                for r in rows if r["attnum"] >= 1]
    check("columns", columns)

    check("constraints", lambda: sorted(column(extended(
        "SELECT c.oid,c.*,t.relname as tabrelname,rt.relnamespace as refnamespace,d.description"
        ", case when c.contype='c' then \"substring\"(pg_get_constraintdef(c.oid), 7) else null end consrc_copy"
        "\nFROM pg_catalog.pg_constraint c"
        "\nINNER JOIN pg_catalog.pg_class t ON t.oid=c.conrelid"
        "\nLEFT OUTER JOIN pg_catalog.pg_class rt ON rt.oid=c.confrelid"
        "\nLEFT OUTER JOIN pg_catalog.pg_description d ON d.objoid=c.oid AND d.objsubid=0"
        " AND d.classoid='pg_constraint'::regclass"
        "\nWHERE c.conrelid=%s\nORDER BY c.oid",
        [oid("table", f"table {TABLE}")]), "contype")))

    check("indexes", lambda: column(extended(
        "SELECT i.*,i.indkey as keys,c.relname,c.relnamespace,c.relam,c.reltablespace,"
        "tc.relname as tabrelname,dsc.description"
        ",pg_catalog.pg_get_expr(i.indpred, i.indrelid) as pred_expr"
        ",pg_catalog.pg_get_expr(i.indexprs, i.indrelid, true) as expr"
        ",pg_catalog.pg_relation_size(i.indexrelid) as index_rel_size"
        ",pg_catalog.pg_stat_get_numscans(i.indexrelid) as index_num_scans"
        "\nFROM pg_catalog.pg_index i"
        "\nINNER JOIN pg_catalog.pg_class c ON c.oid=i.indexrelid"
        "\nINNER JOIN pg_catalog.pg_class tc ON tc.oid=i.indrelid"
        "\nLEFT OUTER JOIN pg_catalog.pg_description dsc ON i.indexrelid=dsc.objoid"
        "\nWHERE  i.indrelid=%s ORDER BY c.relname",
        [oid("table", f"table {TABLE}")]), "relname"))


CLIENTS = {"grafana": grafana, "metabase": metabase, "dbeaver": dbeaver}

if client not in CLIENTS:
    sys.exit(f"unknown client {client!r}; one of {', '.join(CLIENTS)}")
try:
    connect()
except Exception as e:
    emit("connect", False, None, f"{type(e).__name__}: {e}".strip()[:2000])
    sys.exit(1)
emit("connect", True)
CLIENTS[client]()
conn.close()
