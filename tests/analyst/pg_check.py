#!/usr/bin/env python3
"""Real Postgres clients against `supportlake serve --pg-listen` (driven by tests/analyst.rs).

usage: pg_check.py PG_PORT TOKEN HTTP_ADDR LAKE CONFIG FROM TO

Checks, failing with a message on the first that does not hold:
- psql signs in with a read token (and is refused with a wrong one or another database),
  lists the tables (\\dt), describes one (\\d events), runs metric SQL;
- psycopg (extended protocol, bound parameters) gets the same numbers as /api/v1/metrics and
  /api/v1/sql;
- DuckDB, reading the lake's Parquet directly with the same metric definitions, gets the same
  numbers for the calendar-time metrics;
- statements that would write, read files or change settings are refused, and the connection
  stays usable afterwards.
"""

import json
import os
import subprocess
import sys
import urllib.request

import psycopg

port, token, http_addr, lake, config, t_from, t_to = sys.argv[1:8]
here = os.path.dirname(os.path.abspath(__file__))
root = os.path.dirname(os.path.dirname(here))
dsn = f"host=127.0.0.1 port={port} dbname=supportlake user=analyst sslmode=disable"


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def psql(sql, password=token, dsn=dsn):
    env = dict(os.environ, PGPASSWORD=password, PGCONNECT_TIMEOUT="10")
    p = subprocess.run(["psql", dsn, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql],
                       capture_output=True, text=True, env=env, timeout=120)
    return p.returncode, p.stdout, p.stderr


def http(method, path, body=None, ctype="text/plain"):
    req = urllib.request.Request(f"http://{http_addr}{path}", data=body, method=method,
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": ctype})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read())


def close(a, b, what):
    if a is None or b is None:
        if a != b:
            fail(f"{what}: {a!r} != {b!r}")
        return
    if abs(float(a) - float(b)) > 1e-6 * max(1.0, abs(float(a))):
        fail(f"{what}: {a!r} != {b!r}")


# --- psql: sign-in ------------------------------------------------------------------
code, out, err = psql("SELECT 1", password="wrong-token")
if code == 0:
    fail("psql signed in with a wrong token")
if "password" not in err.lower():
    fail(f"a wrong token should be a password error, got: {err}")
code, out, err = psql("SELECT 1", dsn=dsn.replace("dbname=supportlake", "dbname=postgres"))
if code == 0 or "supportlake" not in err:
    fail(f"another database name should be refused naming supportlake: {err}")

# --- psql: catalog ------------------------------------------------------------------
code, out, err = psql("\\dt")
if code != 0:
    fail(f"\\dt failed: {err}")
for table in ("events", "settings", "sla_policies"):
    if f"|{table}|" not in out:
        fail(f"\\dt does not list {table}: {out}")
code, out, err = psql("\\d events")
if code != 0 or "event_id" not in out or "conversation_id" not in out:
    fail(f"\\d events: {code} {out} {err}")
code, out, err = psql("\\d conversations")
if code != 0 or "first_response_at" not in out:
    fail(f"\\d conversations: {code} {out} {err}")

# --- the same numbers on every path -------------------------------------------------
metric = http("GET", f"/api/v1/metrics/wait?from={t_from}&to={t_to}&interval=month")
points = metric["series"][0]["points"] if metric["series"] else []
if len(points) != 1:
    fail(f"expected one monthly point for wait: {metric}")
api_count, api_mean = points[0]["count"], points[0]["value"]
if api_count < 10:
    fail(f"too few conversations to compare: {api_count}")

wait_sql = (f"SELECT count(*) AS n, avg(wait_s) AS mean FROM conversations "
            f"WHERE first_response_at >= TIMESTAMP '{t_from}' AND first_response_at < TIMESTAMP '{t_to}' "
            f"AND queued_at IS NOT NULL")
code, out, err = psql(wait_sql)
if code != 0:
    fail(f"psql metric SQL: {err}")
n, mean = out.strip().split("|")
close(int(n), api_count, "psql wait count vs /api/v1/metrics")
close(float(mean), api_mean, "psql wait mean vs /api/v1/metrics")

over_http = http("POST", "/api/v1/sql", wait_sql.encode())
close(over_http["rows"][0]["n"], api_count, "/api/v1/sql wait count")
close(over_http["rows"][0]["mean"], api_mean, "/api/v1/sql wait mean")

with psycopg.connect(dsn, password=token, autocommit=True) as conn:
    with conn.cursor() as cur:
        # Bound parameters go through the extended protocol.
        cur.execute("SELECT count(*) FROM events WHERE kind = %s", ("message_in",))
        (pg_in,) = cur.fetchone()
        cur.execute(
            "SELECT count(*), avg(wait_s) FROM conversations WHERE first_response_at >= %s::timestamptz "
            "AND first_response_at < %s::timestamptz AND queued_at IS NOT NULL", (t_from, t_to))
        n2, mean2 = cur.fetchone()
        close(n2, api_count, "psycopg wait count")
        close(mean2, api_mean, "psycopg wait mean")
        cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")
        names = {r[0] for r in cur.fetchall()}
        for t in ("events", "conversations", "sla_targets"):
            if t not in names:
                fail(f"information_schema.tables lacks {t}: {sorted(names)}")
        # Refused statements fail alone; the connection keeps working.
        for bad in ["COPY (SELECT 1) TO '/tmp/supportlake-pg-copy.csv'",
                    "CREATE EXTERNAL TABLE leak STORED AS CSV LOCATION '/etc/passwd'",
                    "SET datafusion.runtime.memory_limit = '100G'",
                    "DROP TABLE events",
                    "INSERT INTO settings VALUES ('x', 'y', 1, 1, 1)"]:
            try:
                cur.execute(bad)
            except psycopg.Error as e:
                if not any(w in str(e) for w in ("not allowed", "read-only", "does not parse")):
                    fail(f"{bad}: refused for the wrong reason: {e}")
            else:
                fail(f"{bad}: was accepted")
        cur.execute("SELECT 41 + 1")
        if cur.fetchone()[0] != 42:
            fail("the connection did not survive the refused statements")
if os.path.exists("/tmp/supportlake-pg-copy.csv"):
    fail("COPY wrote a file")
sql_in = http("POST", "/api/v1/sql", b"SELECT count(*) AS n FROM events WHERE kind = 'message_in'")
close(pg_in, sql_in["rows"][0]["n"], "psycopg vs /api/v1/sql message_in count")

# --- DuckDB on the Parquet: calendar-time metrics -----------------------------------------
for name in ("wait", "handle", "messages"):
    api = http("GET", f"/api/v1/metrics/{name}?from={t_from}&to={t_to}&interval=month")
    pts = [p for s in api["series"] for p in s["points"]]
    p = subprocess.run([sys.executable, os.path.join(root, "benches", "duckdb_metrics.py"), lake,
                        os.path.join(root, "queries"), config, name, t_from, t_to, "month", "UTC",
                        "none"], capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        fail(f"duckdb_metrics.py {name}: {p.stderr}")
    duck = json.loads(p.stdout.strip().splitlines()[-1])["totals"]
    if "count" in duck:
        close(duck["count"], sum(x.get("count", 0) for x in pts), f"DuckDB {name} count")
    close(duck["value"], sum(x["value"] or 0 for x in pts), f"DuckDB {name} value")

print(json.dumps({"wait_count": api_count, "wait_mean_s": api_mean, "message_in": pg_in}))
