#!/usr/bin/env python3
"""Analyst queries over the same Parquet: DuckDB in-process beside supportlake's HTTP
(`POST /api/v1/sql`) and Postgres (psycopg) paths, in the same run.

usage: analyst_queries.py LAKE HTTP_ADDR PG_PORT TOKEN REPEAT

Each query runs once to warm up, then REPEAT times per engine; the median is reported. The
results of the three paths are compared (row counts and, for numbers, values) so a fast
wrong answer cannot pass. Prints a table and one JSON line with the figures.
"""

import json
import statistics
import sys
import time
import urllib.request

import duckdb
import psycopg

lake, http_addr, pg_port, token, repeat = sys.argv[1:6]
repeat = int(repeat)

QUERIES = [
    ("events by kind",
     "SELECT kind, count(*) AS n FROM events GROUP BY kind ORDER BY kind"),
    ("inbound messages per day",
     "SELECT date_trunc('day', ts) AS day, count(*) AS n FROM events "
     "WHERE kind = 'message_in' GROUP BY 1 ORDER BY 1"),
    ("per-agent summary",
     "SELECT agent_id, count(*) AS messages, count(DISTINCT conversation_id) AS conversations "
     "FROM events WHERE kind = 'message_out' AND author = 'agent' GROUP BY agent_id ORDER BY agent_id"),
    ("CSAT by team",
     "SELECT team, count(*) AS answers, avg(csat_score) AS mean, "
     "sum(CASE WHEN csat_score >= 4 THEN 1 ELSE 0 END) AS satisfied "
     "FROM events WHERE kind = 'csat_submitted' GROUP BY team ORDER BY team"),
    ("one week, hourly by channel",
     "SELECT date_trunc('hour', ts) AS hour, channel, count(*) AS n FROM events "
     "WHERE date BETWEEN DATE '2026-10-05' AND DATE '2026-10-11' AND kind IN ('message_in', 'message_out') "
     "GROUP BY 1, 2 ORDER BY 1, 2"),
    ("top customers",
     "SELECT customer_key, count(*) AS n FROM events WHERE kind = 'message_in' "
     "GROUP BY customer_key ORDER BY n DESC, customer_key LIMIT 20"),
    ("daily median message gap per conversation",
     "WITH c AS (SELECT conversation_id, date_trunc('day', min(ts)) AS day, "
     "  epoch(max(ts)) - epoch(min(ts)) AS span_s FROM events "
     "  WHERE conversation_id IS NOT NULL GROUP BY conversation_id) "
     "SELECT day, count(*) AS n, median(span_s) AS p50 FROM c GROUP BY day ORDER BY day"),
    ("failed deliveries by reason",
     "SELECT reason, count(*) AS n FROM events WHERE kind = 'message_status' AND status = 'failed' "
     "GROUP BY reason ORDER BY n DESC, reason"),
]

# DataFusion spells the epoch of a timestamp differently from DuckDB.
def for_supportlake(sql):
    return sql.replace("epoch(max(ts))", "date_part('epoch', max(ts))").replace(
        "epoch(min(ts))", "date_part('epoch', min(ts))")


con = duckdb.connect()
con.execute("SET TimeZone = 'UTC'")
con.execute(f"CREATE VIEW events AS SELECT * FROM read_parquet('{lake}/events/*/*.parquet', "
            "hive_partitioning = true)")


def run_duck(sql):
    return con.execute(sql).fetchall()


def run_http(sql):
    req = urllib.request.Request(f"http://{http_addr}/api/v1/sql?format=json",
                                 data=for_supportlake(sql).encode(), method="POST",
                                 headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=600) as r:
        body = json.loads(r.read())
    cols = [c["name"] for c in body["columns"]]
    return [tuple(row[c] for c in cols) for row in body["rows"]]


pg = psycopg.connect(f"host=127.0.0.1 port={pg_port} dbname=supportlake user=bench sslmode=disable",
                     password=token, autocommit=True)


def run_pg(sql):
    with pg.cursor() as cur:
        cur.execute(for_supportlake(sql))
        return cur.fetchall()


def timed(fn, sql):
    fn(sql)  # warm-up (also builds caches, as a dashboard's first load would)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn(sql)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def same(a, b):
    if len(a) != len(b):
        return False
    for ra, rb in zip(a, b):
        for x, y in zip(ra, rb):
            if isinstance(x, (int, float)) or isinstance(y, (int, float)):
                try:
                    if abs(float(x) - float(y)) > 1e-6 * max(1.0, abs(float(x))):
                        return False
                except (TypeError, ValueError):
                    return False
    return True


rows = []
for name, sql in QUERIES:
    d, h, p = run_duck(sql), run_http(sql), run_pg(sql)
    if not (same(d, h) and same(d, p)):
        sys.exit(f"{name}: results differ\nduckdb: {d[:3]}\nhttp: {h[:3]}\npg: {p[:3]}")
    td, th, tp = timed(run_duck, sql), timed(run_http, sql), timed(run_pg, sql)
    rows.append({"query": name, "rows": len(d), "duckdb_s": td, "http_s": th, "pg_s": tp,
                 "http_ratio": th / td, "pg_ratio": tp / td})

print(f"{'query':45} {'rows':>5} {'duckdb':>9} {'http':>9} {'pg':>9} {'http/duck':>9} {'pg/duck':>8}")
for r in rows:
    print(f"{r['query']:45} {r['rows']:5d} {r['duckdb_s']*1e3:7.1f}ms {r['http_s']*1e3:7.1f}ms "
          f"{r['pg_s']*1e3:7.1f}ms {r['http_ratio']:8.2f}x {r['pg_ratio']:7.2f}x")
geo_h = statistics.geometric_mean(r["http_ratio"] for r in rows)
geo_p = statistics.geometric_mean(r["pg_ratio"] for r in rows)
print(f"geomean ratio: http {geo_h:.2f}x, pg {geo_p:.2f}x DuckDB (goal <= 1.2x)")
print(json.dumps({"queries": rows, "geomean_http": geo_h, "geomean_pg": geo_p}))
