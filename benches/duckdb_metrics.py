#!/usr/bin/env python3
"""Run one supportlake metric in DuckDB, from the same SQL files, over the same Parquet.

Used by `benches/metrics.rs` as the reference engine. The views of `queries/views/` and the
metric query of `queries/metrics/NAME.sql` are run as written, with a handful of mechanical
translations from DataFusion's dialect to DuckDB's (type casts and the ordered `first_value`/
`last_value` aggregates) and DuckDB macros standing in for supportlake's SQL functions.

The stand-ins are exact only for calendar time: `business_seconds` and `business_add` are
the 24x7 forms, so the benchmark config must give its SLA policies no calendar and leave
`metrics.calendar` at 24x7. `sla_policy` is generated from the config's policies.

With a tenth argument `rollups`, the tables that the lake's rollup manifest lists
(`_rollup/state.json`) are read from those Parquet files — the files supportlake's own
queries read — instead of being computed from the events by the view SQL.

usage: duckdb_metrics.py LAKE QUERIES CONFIG NAME FROM TO INTERVAL TZ GROUP_BY [rollups]
prints one JSON line: {"rows": N, "seconds": query time, "totals": {...}, "result": [...]}
"""

import glob
import json
import os
import re
import sys
import time
import tomllib

import duckdb


def sql_str(s):
    return "NULL" if s is None else "'" + str(s).replace("'", "''") + "'"


def humantime_seconds(s):
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "days": 86400, "min": 60}
    total = 0.0
    for num, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]+)", s):
        total += float(num) * units[unit]
    return total


def translate(sql, params):
    sql = re.sub(r"arrow_cast\(([^,()]+), 'Int64'\)", r"epoch_us(\1)", sql)
    sql = re.sub(r"arrow_cast\(([^,()]+), 'Duration\(Microsecond\)'\)", r"to_microseconds(\1)", sql)
    sql = sql.replace("""arrow_cast(NULL, 'Timestamp(Microsecond, Some("UTC"))')""",
                      "CAST(NULL AS TIMESTAMPTZ)")
    # Ordered aggregates: DataFusion's first_value/last_value(x ORDER BY ...) are DuckDB's
    # first/last(x ORDER BY ...). Window uses (`... OVER`) keep their names.
    sql = re.sub(r"\b(first|last)_value\(([^()]*\bORDER BY\b[^()]*)\)", r"\1(\2)", sql)
    sql = re.sub(r"\b(first|last)_value\(([^()]*)\) IGNORE NULLS OVER", r"\1_value(\2 IGNORE NULLS) OVER", sql)
    # `at` is a keyword in DuckDB; our queries use it as a column name.
    sql = re.sub(r"\bat\b", '"at"', sql)
    # The length of a list.
    sql = sql.replace("cardinality(", "len(")
    # Bind parameters as literals (DuckDB cannot infer some of their types in CASE).
    for name in sorted(params, key=len, reverse=True):
        sql = sql.replace("$" + name, params[name])
    return sql


def main():
    lake, queries, config_path, name, t_from, t_to, interval, tz, group_by = sys.argv[1:10]
    from_rollups = len(sys.argv) > 10 and sys.argv[10] == "rollups"
    with open(config_path, "rb") as f:
        config = tomllib.load(f)
    metrics_cfg = config.get("metrics", {})
    session_gap = humantime_seconds(metrics_cfg.get("session_gap", "24h"))
    link_grace = humantime_seconds(metrics_cfg.get("link_grace", "2m"))
    sl_target = humantime_seconds(metrics_cfg.get("service_level_target", "60s"))
    policies = config.get("sla", {}).get("policies", [])
    for p in policies:
        if "calendar" in p:
            sys.exit("duckdb_metrics.py: SLA policies with a calendar are not supported")

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"""CREATE VIEW events AS SELECT * FROM read_parquet(
        '{lake}/events/*/*.parquet', hive_partitioning = true)""")
    con.execute(f"""CREATE TABLE settings AS SELECT {sql_str(config.get('timezone', 'UTC'))} AS tz,
        '24x7' AS calendar, {sl_target}::DOUBLE AS service_level_target_s,
        {int(session_gap * 1e6)}::BIGINT AS session_gap_us,
        {int(link_grace * 1e6)}::BIGINT AS link_grace_us""")
    con.execute("""CREATE TABLE sla_policies (ordinal BIGINT, name VARCHAR,
        first_response_s DOUBLE, next_response_s DOUBLE, resolution_s DOUBLE, calendar VARCHAR)""")
    for i, p in enumerate(policies):
        secs = [humantime_seconds(p[k]) if k in p else None
                for k in ("first_response", "next_response", "resolution")]
        con.execute("INSERT INTO sla_policies VALUES (?, ?, ?, ?, ?, NULL)", [i, p["name"], *secs])

    # supportlake's SQL functions as DuckDB macros.
    con.execute("CREATE MACRO seconds_between(a, b) AS (epoch_us(b) - epoch_us(a)) / 1e6")
    con.execute("""CREATE MACRO business_seconds(a, b, cal) AS
        greatest(0, (epoch_us(b) - epoch_us(a)) / 1e6)""")
    con.execute("""CREATE MACRO business_add(a, s, cal) AS
        a + to_microseconds(CAST(round(s * 1e6) AS BIGINT))""")
    con.execute("""CREATE MACRO bucket_start(t, iv, z) AS
        timezone(z, date_trunc(iv, timezone(z, t)))""")
    con.execute("""CREATE MACRO bucket_end(t, iv, z) AS
        timezone(z, date_trunc(iv, timezone(z, t)) + CAST('1 ' || iv AS INTERVAL))""")
    con.execute("""CREATE MACRO bucket_starts(f, t, iv, z) AS
        list_transform(
          generate_series(date_trunc(iv, timezone(z, f)),
                          timezone(z, t - INTERVAL 1 microsecond),
                          CAST('1 ' || iv AS INTERVAL)),
          lambda x: timezone(z, x))""")
    # The buckets whose sample instant (the bucket's end, or `t`/`n` when sooner) lies in
    # [a, b): by its definition, over every bucket.
    con.execute("""CREATE MACRO sample_buckets(a, b, f, t, iv, z, n) AS
        list_filter(bucket_starts(f, t, iv, z), lambda s:
          s <= n AND least(bucket_end(s, iv, z), t, n) >= a
          AND (b IS NULL OR least(bucket_end(s, iv, z), t, n) < b))""")
    arms = []
    for p in policies:
        conds = []
        for dim in ("channel", "team", "priority", "inbox"):
            want = p.get("match", {}).get(dim)
            if want is None:
                continue
            want = [want] if isinstance(want, str) else want
            conds.append(f"{dim} IN ({', '.join(sql_str(w) for w in want)})")
        arms.append(f"WHEN {' AND '.join(conds) or 'true'} THEN {sql_str(p['name'])}")
    body = f"CASE {' '.join(arms)} END" if arms else "CAST(NULL AS VARCHAR)"
    con.execute(f"CREATE MACRO sla_policy(channel, team, priority, inbox) AS {body}")

    params = {
        "from": f"TIMESTAMPTZ '{t_from}'", "to": f"TIMESTAMPTZ '{t_to}'",
        "now": f"TIMESTAMPTZ '{t_to}'", "interval": sql_str(interval), "tz": sql_str(tz),
        "group_by": sql_str(group_by), "business": "false", "team": "NULL", "agent": "NULL",
        "channel": "NULL", "inbox": "NULL", "priority": "NULL", "sla_metric": "NULL",
    }
    rolled = {}
    if from_rollups:
        with open(os.path.join(lake, "_rollup", "state.json")) as f:
            rolled = json.load(f)["tables"]
    for path in sorted(glob.glob(os.path.join(queries, "views", "*.sql"))):
        view = re.sub(r"^\d+_", "", os.path.basename(path)[:-4])
        if view in rolled:
            files = [os.path.join(lake, r) for r in rolled[view]]
            con.execute(f"CREATE VIEW {view} AS SELECT * FROM read_parquet({files!r})")
            continue
        with open(path) as f:
            con.execute(f"CREATE VIEW {view} AS {translate(f.read(), params)}")
    with open(os.path.join(queries, "metrics", name + ".sql")) as f:
        query = translate(f.read(), params)

    start = time.perf_counter()
    cur = con.execute(query)
    rows = cur.fetchall()
    seconds = time.perf_counter() - start
    cols = [d[0] for d in cur.description]
    result = [dict(zip(cols, r)) for r in rows]
    totals = {}
    for c in ("count", "value", "answered", "total"):
        if c in cols:
            totals[c] = sum(float(r[c]) for r in result if r[c] is not None)
    print(json.dumps({"rows": len(rows), "seconds": seconds, "totals": totals,
                      "columns": cols}, default=str))


if __name__ == "__main__":
    main()
