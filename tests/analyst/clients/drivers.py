#!/usr/bin/env python3
"""The analysts' Python drivers and tools against a Postgres server (run by
tests/pg_clients.rs against supportlake and against a real PostgreSQL holding the same
`events` rows).

usage: drivers.py CLIENT HOST PORT PASSWORD
CLIENT: psycopg | psycopg2 | asyncpg | sqlalchemy | odbc | pgcli

Prints one JSON object per check: {"check", "ok", "value", "detail"}. "value" is what both
servers must agree on (null when the check is only about working at all). A check fails
with the driver's own error, as the analyst would see it.
"""

import asyncio
import datetime
import decimal
import json
import os
import subprocess
import sys
import tempfile
import traceback

client, host, port, password = sys.argv[1:5]
DSN = f"host={host} port={port} dbname=supportlake user=analyst password={password} sslmode=disable"

# The rows every check reads: events with a CSAT score (the Int8 column), ordered.
SCORED = ("SELECT event_id, ts, csat_score, date, kind FROM events "
          "WHERE csat_score IS NOT NULL ORDER BY event_id LIMIT 25")


def plain(v):
    """A value as JSON both servers' answers can be compared in."""
    if isinstance(v, (datetime.datetime,)):
        return v.astimezone(datetime.timezone.utc).isoformat() if v.tzinfo else v.isoformat()
    if isinstance(v, (datetime.date, datetime.time, datetime.timedelta)):
        return str(v)
    if isinstance(v, decimal.Decimal):
        return str(v)
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v).hex()
    return v


def check(name, f):
    try:
        value = f()
        print(json.dumps({"check": name, "ok": True, "value": plain(value)}), flush=True)
    except Exception as e:  # the driver's error is the finding
        print(json.dumps({"check": name, "ok": False, "value": None,
                          "detail": f"{type(e).__name__}: {e}".strip()[:2000]}), flush=True)


def expect(cond, what):
    if not cond:
        raise AssertionError(what)


# --- psycopg 3 -----------------------------------------------------------------------
def run_psycopg():
    import psycopg

    conn = psycopg.connect(DSN, autocommit=True)

    def text_and_binary():
        text = conn.cursor().execute(SCORED).fetchall()
        binary = conn.cursor(binary=True).execute(SCORED).fetchall()
        expect(len(text) > 5, f"only {len(text)} scored events")
        expect(text == binary, f"text {text[:3]} != binary {binary[:3]}")
        expect(all(1 <= r[2] <= 5 for r in text), f"scores out of 1..5: {[r[2] for r in text]}")
        return [list(r) for r in text]

    check("psycopg: text and binary results agree (csat_score int2)", text_and_binary)

    def every_table_binary():
        tables = [r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' "
            "ORDER BY table_name").fetchall()]
        expect("events" in tables, f"no events in {tables}")
        for t in tables:
            q = f'SELECT * FROM "{t}"'
            text = conn.cursor().execute(q).fetchall()
            binary = conn.cursor(binary=True).execute(q).fetchall()
            key = lambda r: repr(r)
            expect(sorted(text, key=key) == sorted(binary, key=key), f"{t}: text and binary rows differ")
        return None

    check("psycopg: every column of every table and view reads the same in binary", every_table_binary)

    def named_cursor(binary):
        def run():
            with psycopg.connect(DSN) as c:
                with c.transaction():
                    cur = c.cursor(name="scored", binary=binary)
                    cur.execute(SCORED)
                    first = cur.fetchmany(4)
                    rest = cur.fetchall()
                    expect([d.name for d in cur.description] == ["event_id", "ts", "csat_score", "date", "kind"],
                           f"description {cur.description}")
                    cur.close()
            return [list(r) for r in first + rest]
        return run

    check("psycopg: named cursor (DECLARE, Describe portal, FETCH)", named_cursor(False))
    check("psycopg: named cursor in binary", named_cursor(True))

    def copy_out():
        cur = conn.cursor()
        data = b""
        with cur.copy("COPY (SELECT event_id, csat_score FROM events WHERE csat_score IS NOT NULL "
                      "ORDER BY event_id LIMIT 10) TO STDOUT") as copy:
            for block in copy:
                data += bytes(block)
        lines = data.decode().splitlines()
        expect(len(lines) == 10, f"{len(lines)} lines")
        return lines

    check("psycopg: COPY (query) TO STDOUT", copy_out)

    def several_statements():
        cur = psycopg.ClientCursor(conn)
        cur.execute("SELECT 1 AS a; SELECT 'two' AS b, 2.5 AS c")
        first = cur.fetchall()
        expect(cur.nextset(), "no second result")
        return [first, cur.fetchall()]

    check("psycopg: several statements in one query", several_statements)

    def empty_and_comment():
        out = []
        for q in ["-- a comment only", "/* a block comment */", ";"]:
            cur = psycopg.ClientCursor(conn)
            cur.execute(q)
            out.append(str(cur.pgresult.status) if cur.pgresult else None)
        return out

    check("psycopg: empty and comment-only queries", empty_and_comment)

    def savepoints():
        with psycopg.connect(DSN) as c:
            with c.transaction():
                try:
                    with c.transaction():  # a savepoint
                        c.execute("SELECT nope FROM events")
                except psycopg.errors.Error:
                    pass
                n = c.execute("SELECT count(*) FROM events").fetchone()[0]
        return n

    check("psycopg: a failed statement rolled back to its savepoint", savepoints)

    def bound_parameters():
        rows = []
        for _ in range(7):  # prepared by the server from the sixth time on
            rows = conn.execute("SELECT count(*), max(csat_score) FROM events WHERE kind = %s AND csat_score >= %s",
                                ("csat_submitted", 1)).fetchall()
        return [list(r) for r in rows]

    check("psycopg: bound parameters, prepared after five executions", bound_parameters)

    def version():
        v = conn.execute("SELECT version()").fetchone()[0]
        expect(v.startswith("PostgreSQL "), v)
        return None

    check("psycopg: version() is PostgreSQL-shaped", version)

    def refused():
        # What the sandbox refuses, PostgreSQL refuses too for this read-only role.
        out = []
        for q in ["COPY events FROM STDIN", "INSERT INTO events (event_id) VALUES ('x')"]:
            try:
                conn.execute(q)
                out.append("accepted")
            except psycopg.Error:
                out.append("refused")
        expect(out == ["refused", "refused"], f"{out}")
        return out

    check("psycopg: writes refused, connection still usable", refused)
    check("psycopg: after refusals", lambda: conn.execute("SELECT 40 + 2").fetchone()[0])


# --- psycopg 2 -----------------------------------------------------------------------
def run_psycopg2():
    import io
    import psycopg2

    conn = psycopg2.connect(DSN)

    def plain_query():
        cur = conn.cursor()
        cur.execute(SCORED)
        rows = cur.fetchall()
        conn.rollback()
        return [list(r) for r in rows]

    check("psycopg2: query", plain_query)

    def named():
        cur = conn.cursor(name="scored2")
        cur.itersize = 7
        cur.execute(SCORED)
        rows = [list(r) for r in cur]
        cur.close()
        conn.commit()
        return rows

    check("psycopg2: named cursor (DECLARE, FETCH FORWARD 7)", named)

    def copy_expert():
        buf = io.StringIO()
        cur = conn.cursor()
        cur.copy_expert("COPY (SELECT event_id, csat_score, ts FROM events WHERE csat_score IS NOT NULL "
                        "ORDER BY event_id LIMIT 10) TO STDOUT WITH CSV HEADER", buf)
        conn.commit()
        lines = buf.getvalue().splitlines()
        expect(lines[0] == "event_id,csat_score,ts", lines[0])
        return [l.split(",")[:2] for l in lines]

    check("psycopg2: COPY … TO STDOUT WITH CSV HEADER", copy_expert)

    def several():
        cur = conn.cursor()
        cur.execute("SET application_name = 'psycopg2-check'; SELECT count(*) FROM events")
        n = cur.fetchone()[0]
        conn.commit()
        return n

    check("psycopg2: SET and SELECT in one query", several)


# --- asyncpg -------------------------------------------------------------------------
def run_asyncpg():
    import asyncpg

    async def main():
        kw = dict(host=host, port=int(port), user="analyst", password=password,
                  database="supportlake", ssl=False)
        conn = await asyncpg.connect(**kw)

        async def binary():
            rows = await conn.fetch(SCORED)
            expect(len(rows) > 5, "few rows")
            expect(all(1 <= r["csat_score"] <= 5 for r in rows), [r["csat_score"] for r in rows])
            return [list(r.values()) for r in rows]

        async def prepared():
            stmt = await conn.prepare("SELECT count(*) FROM events WHERE kind = $1 AND csat_score >= $2")
            return [await stmt.fetchval("csat_submitted", 1) for _ in range(6)]

        async def cursor():
            n = 0
            async with conn.transaction():
                async for _ in conn.cursor("SELECT event_id FROM events ORDER BY event_id LIMIT 333", prefetch=40):
                    n += 1
            return n

        async def pool():
            async with asyncpg.create_pool(min_size=2, max_size=4, **kw) as p:
                counts = await asyncio.gather(*[
                    p.fetchval("SELECT count(*) FROM events WHERE csat_score = $1", s) for s in range(1, 6)])
            return counts

        for name, f in [("asyncpg: binary results", binary), ("asyncpg: prepared statement, six executions", prepared),
                        ("asyncpg: cursor in a transaction (portal read 40 rows at a time)", cursor),
                        ("asyncpg: pool of connections", pool)]:
            try:
                value = await f()
                print(json.dumps({"check": name, "ok": True, "value": plain(value)}), flush=True)
            except Exception as e:
                print(json.dumps({"check": name, "ok": False, "value": None,
                                  "detail": f"{type(e).__name__}: {e}"[:2000]}), flush=True)
        await conn.close()

    asyncio.run(main())


# --- SQLAlchemy 2 and pandas -------------------------------------------------------------
def run_sqlalchemy():
    import pandas
    import sqlalchemy

    for driver in ["psycopg2", "psycopg"]:
        url = f"postgresql+{driver}://analyst:{password}@{host}:{port}/supportlake"

        def connect():
            engine = sqlalchemy.create_engine(url)
            with engine.connect() as c:
                return c.execute(sqlalchemy.text("SELECT count(*) FROM events")).scalar()

        check(f"sqlalchemy+{driver}: connect (version(), settings)", connect)

        def inspect():
            engine = sqlalchemy.create_engine(url)
            i = sqlalchemy.inspect(engine)
            expect("events" in i.get_table_names() + i.get_view_names(), "no events")
            cols = [(c["name"], str(c["type"])) for c in i.get_columns("events")]
            pk = i.get_pk_constraint("events")["constrained_columns"]
            fks = i.get_foreign_keys("events")
            idx = i.get_indexes("events")
            return [cols, pk, fks, idx]

        check(f"sqlalchemy+{driver}: inspector (tables, columns, keys, indexes)", inspect)

        def read_sql():
            engine = sqlalchemy.create_engine(url)
            df = pandas.read_sql(SCORED, engine)
            expect(str(df["csat_score"].dtype).startswith("int"), str(df.dtypes))
            return df["csat_score"].tolist()

        check(f"pandas+{driver}: read_sql", read_sql)

        def read_sql_table():
            engine = sqlalchemy.create_engine(url)
            df = pandas.read_sql_table("events", engine, columns=["event_id", "csat_score", "ts"])
            return [len(df), int(df["csat_score"].sum())]

        check(f"pandas+{driver}: read_sql_table", read_sql_table)


# --- psqlODBC (Excel, Power BI) --------------------------------------------------------
def run_odbc():
    import pyodbc

    cs = (f"DRIVER={{PostgreSQL Unicode}};SERVER={host};PORT={port};DATABASE=supportlake;"
          f"UID=analyst;PWD={password};SSLmode=disable")

    def connect():
        conn = pyodbc.connect(cs, timeout=20)
        rows = conn.cursor().execute(SCORED).fetchall()
        conn.close()
        return [[plain(x) for x in r] for r in rows]

    check("odbc: connect and query", connect)

    def catalog():
        conn = pyodbc.connect(cs, timeout=20)
        cur = conn.cursor()
        tables = [r.table_name for r in cur.tables(schema="public")]
        expect("events" in tables, f"{tables}")
        cols = [(r.column_name, r.type_name) for r in cur.columns(table="events", schema="public")]
        conn.close()
        return cols

    check("odbc: tables and columns (what Excel's navigator lists)", catalog)

    def parameters():
        conn = pyodbc.connect(cs, timeout=20)
        n = conn.cursor().execute("SELECT count(*) FROM events WHERE kind = ? AND csat_score >= ?",
                                  "csat_submitted", 1).fetchone()[0]
        conn.close()
        return n

    check("odbc: bound parameters", parameters)


# --- pgcli ------------------------------------------------------------------------------
def run_pgcli():
    home = tempfile.mkdtemp()
    env = dict(os.environ, PGPASSWORD=password, HOME=home, XDG_CONFIG_HOME=home, TERM="dumb")

    def pgcli(command):
        p = subprocess.run(["pgcli", "--less-chatty", "--single-connection", "-t", "-h", host, "-p", port,
                            "-U", "analyst", "-d", "supportlake", "-c", command],
                           capture_output=True, text=True, env=env, timeout=120, stdin=subprocess.DEVNULL)
        expect(p.returncode == 0, f"exit {p.returncode}: {p.stderr[-1500:]}")
        return p.stdout

    def query():
        out = pgcli("SELECT count(*) FROM events WHERE csat_score IS NOT NULL")
        digits = [w for w in out.replace("|", " ").split() if w.isdigit()]
        expect(digits, out)
        return digits[0]

    check("pgcli: query", query)

    def describe():
        out = pgcli("\\d events")
        expect("csat_score" in out and "smallint" in out, out[-1500:])
        return None

    check("pgcli: \\d events", describe)


if __name__ == "__main__":
    try:
        {"psycopg": run_psycopg, "psycopg2": run_psycopg2, "asyncpg": run_asyncpg,
         "sqlalchemy": run_sqlalchemy, "odbc": run_odbc, "pgcli": run_pgcli}[client]()
    except Exception:
        print(json.dumps({"check": f"{client}: runs", "ok": False, "value": None,
                          "detail": traceback.format_exc()[-2000:]}), flush=True)
