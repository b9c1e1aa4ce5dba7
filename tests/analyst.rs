//! Analyst access through its real paths: `POST /api/v1/sql` (every format, every role),
//! the Postgres protocol with real clients (psql, psycopg) agreeing with the metrics API
//! and with DuckDB on the Parquet, and the sandbox against hostile SQL on both paths.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{bin, generate, ingest, request, source_files};

const READ: &str = "read-token-0123456789abcdef";
const INGEST: &str = "ingest-token-0123456789abcdef";
const FROM: &str = "2026-11-02T00:00:00Z";
const TO: &str = "2026-11-05T00:00:00Z";

struct Server {
    child: Child,
    http: String,
    pg_port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A generated lake of three days (from 2026-11-02) and a 24x7 UTC config.
fn lake(dir: &Path) -> (PathBuf, PathBuf) {
    let data = dir.join("data");
    generate(&data, 3, 60, 7);
    let lake = dir.join("lake");
    let (code, receipt) = ingest(&lake, &source_files(&data));
    assert_eq!(code, 0, "{receipt}");
    let config = dir.join("config.toml");
    std::fs::write(&config, "timezone = \"UTC\"\n").unwrap();
    (lake, config)
}

fn start(lake: &Path, config: &Path, extra: &[&str]) -> Server {
    let mut child = bin()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--pg-listen",
            "127.0.0.1:0",
        ])
        .arg("--lake")
        .arg(lake)
        .arg("--config")
        .arg(config)
        .args(extra)
        .env("SUPPORTLAKE_TOKENS", format!("read:{READ},ingest:{INGEST}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("serve starts");
    let (mut http, mut pg) = (None, None);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while http.is_none() || pg.is_none() {
        let line = lines
            .next()
            .expect("serve announces both addresses")
            .unwrap();
        if let Some(a) = line.strip_prefix("listening on http://") {
            http = Some(a.to_owned());
        } else if let Some(a) = line.strip_prefix("listening on postgres://") {
            let port = a.split('/').next().unwrap().rsplit(':').next().unwrap();
            pg = Some(port.parse().unwrap());
        }
    }
    Server {
        child,
        http: http.unwrap(),
        pg_port: pg.unwrap(),
    }
}

fn sql(
    addr: &str,
    token: Option<&str>,
    query: &str,
    extra: &[(&str, &str)],
) -> (u16, String, Vec<u8>) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers: Vec<(&str, &str)> = extra.to_vec();
    if let Some(a) = &auth {
        headers.push(("Authorization", a));
    }
    request(addr, "POST", "/api/v1/sql", &headers, query.as_bytes())
}

fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body)))
}

#[test]
fn sql_over_http_every_format_and_role() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, config) = lake(dir.path());
    let s = start(&lake, &config, &[]);
    let q = "SELECT kind, count(*) AS n FROM events GROUP BY kind ORDER BY kind";

    // Roles: none, wrong role, right role.
    assert_eq!(sql(&s.http, None, q, &[]).0, 401);
    assert_eq!(sql(&s.http, Some(INGEST), q, &[]).0, 403);
    assert_eq!(sql(&s.http, Some("nope"), q, &[]).0, 401);
    let (code, head, body) = sql(&s.http, Some(READ), q, &[]);
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json")
    );
    let j = json(&body);
    assert_eq!(j["columns"][0]["name"], "kind");
    assert_eq!(j["columns"][1]["type"], "Int64");
    let rows = j["rows"].as_array().unwrap();
    let total: i64 = rows.iter().map(|r| r["n"].as_i64().unwrap()).sum();
    assert_eq!(j["row_count"].as_u64().unwrap() as usize, rows.len());
    // The same count as the CLI over the same lake.
    let cli = common::sql_csv(&lake, "SELECT count(*) FROM events");
    assert_eq!(cli.lines().nth(1).unwrap().parse::<i64>().unwrap(), total);

    // JSON body form.
    let body = serde_json::json!({ "sql": q }).to_string();
    let (code, _, b) = sql(
        &s.http,
        Some(READ),
        &body,
        &[("Content-Type", "application/json")],
    );
    assert_eq!(code, 200);
    assert_eq!(json(&b)["rows"], j["rows"]);

    // CSV by format= and by Accept.
    for extra in [vec![], vec![("Accept", "text/csv")]] {
        let path = if extra.is_empty() {
            "/api/v1/sql?format=csv"
        } else {
            "/api/v1/sql"
        };
        let auth = format!("Bearer {READ}");
        let mut h = extra.clone();
        h.push(("Authorization", &auth));
        let (code, head, b) = request(&s.http, "POST", path, &h, q.as_bytes());
        assert_eq!(code, 200);
        assert!(head.to_ascii_lowercase().contains("text/csv"));
        let text = String::from_utf8(b).unwrap();
        assert_eq!(text.lines().next(), Some("kind,n"));
        assert_eq!(text.lines().count(), rows.len() + 1);
    }

    // Arrow IPC stream, read back with the arrow reader.
    let (code, _, b) = sql(
        &s.http,
        Some(READ),
        q,
        &[("Accept", "application/vnd.apache.arrow.stream")],
    );
    assert_eq!(code, 200);
    let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(b), None).unwrap();
    let n: usize = reader.map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(n, rows.len());

    // Parquet, read back with the parquet reader.
    let (code, _, b) = sql(
        &s.http,
        Some(READ),
        q,
        &[("Accept", "application/vnd.apache.parquet")],
    );
    assert_eq!(code, 200);
    assert_eq!(&b[..4], b"PAR1");
    let file = dir.path().join("result.parquet");
    std::fs::write(&file, &b).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(&file).unwrap(),
    )
    .unwrap()
    .build()
    .unwrap();
    let n: usize = reader.map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(n, rows.len());

    // Unknown format, unknown Accept.
    assert_eq!(
        request(
            &s.http,
            "POST",
            "/api/v1/sql?format=xml",
            &[("Authorization", &format!("Bearer {READ}"))],
            q.as_bytes()
        )
        .0,
        400
    );
    assert_eq!(
        sql(&s.http, Some(READ), q, &[("Accept", "image/png")]).0,
        406
    );
    // The views of the metrics layer are there; the error of a bad query names the problem.
    let (code, _, b) = sql(
        &s.http,
        Some(READ),
        "SELECT count(*) AS n FROM sla_targets",
        &[],
    );
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&b));
    let (code, _, b) = sql(&s.http, Some(READ), "SELECT nope FROM events", &[]);
    assert_eq!(code, 400);
    let e = json(&b);
    assert_eq!(e["error"], "sql_error");
    assert!(e["message"].as_str().unwrap().contains("nope"), "{e}");
}

#[test]
fn psql_psycopg_and_duckdb_agree_with_the_metrics_api() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, config) = lake(dir.path());
    let s = start(&lake, &config, &[]);
    let script = common::manifest_dir().join("tests/analyst/pg_check.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(s.pg_port.to_string())
        .arg(READ)
        .arg(&s.http)
        .arg(&lake)
        .arg(&config)
        .args([FROM, TO])
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "pg_check.py failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert!(summary["wait_count"].as_u64().unwrap() >= 10, "{summary}");
}

fn psql(port: u16, query: &str) -> (bool, String) {
    let out = Command::new("psql")
        .arg(format!(
            "host=127.0.0.1 port={port} dbname=supportlake user=x sslmode=disable"
        ))
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", query])
        .env("PGPASSWORD", READ)
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("psql runs");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn agent_line(id: &str) -> String {
    format!(
        r#"{{"id":"{id}","ts":"2026-11-03T12:00:00Z","type":"conversation.opened","conversation_id":"hostile-{id}","customer":"+55 11 98765-4321","channel":"whatsapp"}}"#
    )
}

/// (what, SQL, accepted answers as (status, error code)).
type Case = (&'static str, String, Vec<(u16, &'static str)>);

#[test]
fn hostile_queries_fail_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, config) = lake(dir.path());
    let s = start(
        &lake,
        &config,
        &[
            "--sql-timeout",
            "3",
            "--sql-memory",
            "64",
            "--sql-max-rows",
            "10000",
            "--sql-concurrency",
            "2",
            "--flush-interval",
            "0.2",
        ],
    );
    let sentinel = dir.path().join("written-by-sql");
    let s_path = sentinel.display().to_string();
    let deep_chain = format!("SELECT {}1", "1+".repeat(10_000));
    let deep_parens = format!("SELECT {}1{}", "(".repeat(2_000), ")".repeat(2_000));
    let deep_subqueries = format!(
        "SELECT * FROM {}(SELECT 1 AS a){}",
        "(SELECT * FROM ".repeat(100),
        " AS t)".repeat(100)
    );
    let huge = format!("SELECT '{}'", "x".repeat(100_000));
    let wide_in = format!(
        "SELECT count(*) FROM events WHERE event_id IN ({})",
        (0..20_000)
            .map(|i| format!("'{i}'"))
            .collect::<Vec<_>>()
            .join(",")
    );
    // (what, SQL, accepted answers as (status, error code)).
    let cases: Vec<Case> = vec![
        ("COPY a query to a file", format!("COPY (SELECT 1) TO '{s_path}.csv'"), vec![(403, "sql_not_allowed")]),
        ("COPY a table to a file", format!("COPY events TO '{s_path}.parquet'"), vec![(403, "sql_not_allowed")]),
        ("external table over /etc/passwd", "CREATE EXTERNAL TABLE p STORED AS CSV LOCATION '/etc/passwd'".into(), vec![(403, "sql_not_allowed")]),
        ("external table to write", format!("CREATE EXTERNAL TABLE w (a INT) STORED AS CSV LOCATION '{s_path}/'"), vec![(403, "sql_not_allowed")]),
        ("a file path as a table", "SELECT * FROM '/etc/passwd'".into(), vec![(400, "sql_error")]),
        ("read_parquet", "SELECT * FROM read_parquet('/etc/passwd')".into(), vec![(400, "sql_error")]),
        ("read_csv", "SELECT * FROM read_csv('/etc/passwd')".into(), vec![(400, "sql_error")]),
        ("parquet_metadata", "SELECT * FROM parquet_metadata('/etc/passwd')".into(), vec![(400, "sql_error")]),
        ("INSERT", "INSERT INTO settings VALUES ('x', 'y', 1, 1, 1)".into(), vec![(403, "sql_not_allowed")]),
        ("INSERT … SELECT into a file table", format!("INSERT INTO '{s_path}' SELECT 1"), vec![(403, "sql_not_allowed")]),
        ("DELETE", "DELETE FROM events".into(), vec![(403, "sql_not_allowed")]),
        ("UPDATE", "UPDATE events SET kind = 'x'".into(), vec![(403, "sql_not_allowed")]),
        ("DROP", "DROP TABLE events".into(), vec![(403, "sql_not_allowed")]),
        ("CREATE TABLE AS", "CREATE TABLE t AS SELECT 1".into(), vec![(403, "sql_not_allowed")]),
        ("CREATE VIEW", "CREATE VIEW v AS SELECT 1".into(), vec![(403, "sql_not_allowed")]),
        ("SELECT INTO", "SELECT * INTO t2 FROM settings".into(), vec![(403, "sql_not_allowed")]),
        ("SET a planner setting", "SET datafusion.execution.target_partitions = 64".into(), vec![(403, "sql_not_allowed")]),
        ("SET the memory limit", "SET datafusion.runtime.memory_limit = '100G'".into(), vec![(403, "sql_not_allowed")]),
        ("SHOW over HTTP", "SHOW datafusion.runtime.memory_limit".into(), vec![(403, "sql_not_allowed")]),
        ("two statements", "SELECT 1; SELECT 2".into(), vec![(400, "sql_multiple_statements")]),
        ("a query then DDL", "SELECT 1; DROP TABLE events".into(), vec![(400, "sql_multiple_statements")]),
        ("empty body", String::new(), vec![(400, "sql_parse")]),
        ("100 KB of SQL", huge, vec![(413, "sql_too_long")]),
        ("a 10 000-term chain", deep_chain, vec![(400, "sql_too_deep")]),
        ("2 000 nested parentheses", deep_parens, vec![(400, "sql_too_deep"), (400, "sql_parse")]),
        ("100 nested subqueries", deep_subqueries, vec![(400, "sql_too_deep"), (400, "sql_parse")]),
        ("an IN list of 20 000 items", wide_in, vec![(413, "sql_too_long")]),
        ("a 2 GB string", "SELECT repeat('x', 2000000000)".into(), vec![(400, "sql_error")]),
        ("a 400 MB emoji string", "SELECT length(repeat('😀', 100000000))".into(), vec![(400, "sql_error")]),
        ("a 1 G-character pad", "SELECT lpad('', 1000000000)".into(), vec![(400, "sql_error")]),
        ("a list of 10 G integers", "SELECT range(1, 10000000000)".into(), vec![(400, "sql_error")]),
        ("a list of 1 G copies", "SELECT array_repeat(1, 1000000000)".into(), vec![(400, "sql_error")]),
        ("a per-minute series over 10 000 years", "SELECT generate_series(TIMESTAMP '2000-01-01', TIMESTAMP '9999-01-01', INTERVAL '1 minute')".into(), vec![(400, "sql_error")]),
        ("replace that multiplies", "SELECT length(replace(repeat('a', 60000), 'a', repeat('b', 60000)))".into(), vec![(400, "sql_error")]),
        ("cross join of range()", "SELECT count(*) FROM range(1000000) a, range(1000000) b".into(), vec![(504, "query_timeout")]),
        ("a long count", "SELECT count(*) FROM range(100000000000)".into(), vec![(504, "query_timeout")]),
        ("20 000 rows back (the cap is 10 000)", "SELECT * FROM range(20000)".into(), vec![(422, "result_too_large")]),
        ("10 G series rows back", "SELECT * FROM generate_series(1, 10000000000)".into(), vec![(422, "result_too_large"), (504, "query_timeout")]),
        ("a 100 M-group aggregate", "SELECT value % 100000000 AS k, count(*) FROM range(100000000) GROUP BY k".into(), vec![(422, "query_memory"), (504, "query_timeout"), (422, "result_too_large")]),
        ("string_agg of 100 M values", "SELECT length(string_agg(CAST(value AS VARCHAR), ',')) FROM range(100000000)".into(), vec![(422, "query_memory"), (504, "query_timeout"), (400, "sql_error")]),
        ("unbounded recursion", "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r".into(), vec![(422, "query_memory"), (504, "query_timeout"), (400, "sql_error")]),
        ("EXPLAIN ANALYZE of a long query", "EXPLAIN ANALYZE SELECT count(*) FROM range(100000000000)".into(), vec![(504, "query_timeout")]),
        // Grouped by view (few values in the first rows), then ever more distinct values.
        ("a string group table that outgrows memory", "SELECT s, count(*) FROM (SELECT arrow_cast(CASE WHEN value < 100000 THEN 'a' ELSE repeat('x', 20) || value END, 'Utf8View') AS s FROM range(50000000)) GROUP BY s".into(), vec![(422, "query_memory"), (504, "query_timeout")]),
        ("a sort of 100 M rows", "SELECT value FROM range(100000000) ORDER BY value % 7, value".into(), vec![(422, "query_memory"), (504, "query_timeout"), (422, "result_too_large")]),
    ];
    assert!(cases.len() >= 30);
    for (what, q, accepted) in &cases {
        let started = Instant::now();
        let (code, _, body) = sql(&s.http, Some(READ), q, &[]);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let got = (code, v["error"].as_str().unwrap_or(""));
        assert!(
            accepted.iter().any(|(c, e)| *c == got.0 && *e == got.1),
            "{what}: got {got:?} ({}), expected one of {accepted:?}",
            v["message"]
        );
        assert!(
            !v["message"].as_str().unwrap_or("").is_empty(),
            "{what}: an error says why"
        );
        // Bounded: nothing runs much past the 3 s timeout.
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{what} took {:?}",
            started.elapsed()
        );
        assert_eq!(
            request(&s.http, "GET", "/healthz", &[], b"").0,
            200,
            "alive after {what}"
        );
    }

    // The same refusals on the Postgres path.
    for q in [
        format!("COPY (SELECT 1) TO '{s_path}.pg.csv'"),
        "CREATE EXTERNAL TABLE p STORED AS CSV LOCATION '/etc/passwd'".to_owned(),
        "SET datafusion.runtime.memory_limit = '100G'".to_owned(),
        "SELECT repeat('x', 2000000000)".to_owned(),
        // Several statements are one Query message's right (psql, psycopg), but each is
        // checked before any runs: a refused one refuses the message.
        "SELECT 1; DROP TABLE events".to_owned(),
        format!("SELECT 1; COPY (SELECT 1) TO '{s_path}.pg2.csv'"),
    ] {
        let (ok, out) = psql(s.pg_port, &q);
        assert!(!ok, "psql accepted {q}: {out}");
    }
    assert!(
        !std::path::Path::new(&format!("{s_path}.pg2.csv")).exists(),
        "a refused COPY in a multi-statement string wrote its file"
    );
    let (ok, out) = psql(s.pg_port, "SELECT 1 AS a; SELECT 2 AS b");
    assert!(ok && out.contains('1') && out.contains('2'), "{out}");
    let started = Instant::now();
    let (ok, out) = psql(s.pg_port, "SELECT count(*) FROM range(100000000000)");
    assert!(!ok && out.contains("cancelled"), "{out}");
    assert!(started.elapsed() < Duration::from_secs(20));
    let (ok, out) = psql(s.pg_port, "SELECT 40 + 2");
    assert!(ok && out.trim() == "42", "{out}");

    // Many heavy queries at once, while webhooks keep being acknowledged.
    let heavy: Vec<_> = (0..8)
        .map(|_| {
            let addr = s.http.clone();
            std::thread::spawn(move || {
                sql(
                    &addr,
                    Some(READ),
                    "SELECT count(*) FROM range(1000000) a, range(1000000) b",
                    &[],
                )
                .0
            })
        })
        .collect();
    let auth = format!("Bearer {INGEST}");
    let mut slowest = Duration::ZERO;
    for i in 0..40 {
        let t = Instant::now();
        let (code, _, body) = request(
            &s.http,
            "POST",
            "/ingest/events",
            &[("Authorization", &auth)],
            agent_line(&format!("h{i}")).as_bytes(),
        );
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
        slowest = slowest.max(t.elapsed());
        std::thread::sleep(Duration::from_millis(50));
    }
    for h in heavy {
        let code = h.join().unwrap();
        assert!(code == 504 || code == 503, "a heavy query answered {code}");
    }
    eprintln!("slowest ingest acknowledgement under analyst load: {slowest:?}");
    assert!(
        slowest < Duration::from_secs(5),
        "ingest slowed to {slowest:?}"
    );

    // Nothing was written outside the lake; the server and ingest are fine.
    for suffix in ["", ".csv", ".parquet", ".pg.csv", ".pg2.csv"] {
        assert!(
            !Path::new(&format!("{s_path}{suffix}")).exists(),
            "{s_path}{suffix} was written"
        );
    }
    assert_eq!(request(&s.http, "GET", "/readyz", &[], b"").0, 200);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (code, _, b) = sql(
            &s.http,
            Some(READ),
            "SELECT count(*) AS n FROM events WHERE conversation_id LIKE 'hostile-%'",
            &[],
        );
        assert_eq!(code, 200);
        if json(&b)["rows"][0]["n"] == 40 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "acknowledged events never reached the lake: {}",
            String::from_utf8_lossy(&b)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// `supportlake pg` on its own: TLS with `sslmode=require`, and files another process adds
/// to the lake seen by the next query, without a restart.
#[test]
fn standalone_pg_with_tls_sees_new_data() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, config) = lake(dir.path());
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let ok = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .expect("openssl runs");
    assert!(ok.success());
    let mut child = bin()
        .args(["pg", "--listen", "127.0.0.1:0", "--lake"])
        .arg(&lake)
        .arg("--config")
        .arg(&config)
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .env("SUPPORTLAKE_TOKENS", format!("read:{READ}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("pg starts");
    let port = common::pg_port(&mut child);
    let server = Server {
        child,
        http: String::new(),
        pg_port: port,
    };
    let count = |sslmode: &str| {
        let out = Command::new("psql")
            .arg(format!(
                "host=127.0.0.1 port={port} dbname=supportlake user=x sslmode={sslmode}"
            ))
            .args(["-X", "-A", "-t", "-c", "SELECT count(*) FROM events"])
            .env("PGPASSWORD", READ)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .trim()
            .parse::<i64>()
            .unwrap()
    };
    let before = count("require");
    assert!(before > 0);
    // Another process adds events; the next query sees them.
    let extra = dir.path().join("extra.jsonl");
    std::fs::write(
        &extra,
        format!("{}\n{}\n", agent_line("tls-1"), agent_line("tls-2")),
    )
    .unwrap();
    let (code, receipt) = ingest(&lake, &[extra]);
    assert_eq!(code, 0, "{receipt}");
    assert_eq!(count("require"), before + 2);
    drop(server);
}

/// The string view fast paths (`src/query/views`) run on analyst queries — `EXPLAIN`
/// shows them and `EXPLAIN ANALYZE` counts the rows grouped by view — and give what DuckDB
/// gives over the same Parquet files: filters by `=`, `<>`, `IN`, `NOT IN` on long and
/// short values, and `GROUP BY` a low-cardinality column with `NULL`s and `FILTER`.
#[test]
fn string_view_paths_agree_with_duckdb() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, config) = lake(dir.path());
    let s = start(&lake, &config, &[]);
    let queries = [
        "SELECT kind, count(*) AS n, count(agent_id) AS with_agent, max(channel) AS ch \
         FROM events GROUP BY kind ORDER BY kind",
        "SELECT status, count(*) AS n FROM events WHERE kind = 'message_status' \
         GROUP BY status ORDER BY status NULLS FIRST",
        "SELECT count(*) AS n FROM events WHERE kind <> 'message_status'",
        "SELECT channel, count(*) AS n FROM events WHERE kind IN ('message_in', 'csat_submitted') \
         GROUP BY channel ORDER BY channel",
        "SELECT count(*) AS n FROM events WHERE kind NOT IN ('message_in', 'message_out')",
        "SELECT team, count(*) FILTER (WHERE kind = 'message_in') AS inbound, count(*) AS n \
         FROM events GROUP BY team ORDER BY team NULLS FIRST",
    ];
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::Null => "NULL".to_string(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut ours = Vec::new();
    for q in queries {
        let (code, _, body) = sql(&s.http, Some(READ), q, &[]);
        assert_eq!(code, 200, "{q}: {}", String::from_utf8_lossy(&body));
        let body = json(&body);
        let columns: Vec<String> = body["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_string())
            .collect();
        let rows: Vec<Vec<String>> = body["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| columns.iter().map(|c| text(&r[c])).collect())
            .collect();
        assert!(!rows.is_empty(), "{q}");
        ours.push(rows);
    }
    let script = "con = duckdb.connect()\n\
        con.execute(f'CREATE VIEW events AS SELECT * FROM {src}')\n\
        out = []\n\
        for q in json.loads(sys.argv[2]):\n\
        \x20   out.append([['NULL' if v is None else str(v) for v in row] for row in con.execute(q).fetchall()])\n\
        print(json.dumps(out))\n";
    let out = common::duckdb(&lake, script, &[&serde_json::to_string(&queries).unwrap()]);
    let theirs: Vec<Vec<Vec<String>>> = serde_json::from_str(&out).unwrap();
    for ((q, o), t) in queries.iter().zip(&ours).zip(&theirs) {
        assert_eq!(o, t, "{q}");
    }

    // The paths are the ones taken.
    let explain = |q: &str| {
        let (code, _, body) = sql(&s.http, Some(READ), q, &[("Accept", "text/csv")]);
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
        String::from_utf8(body).unwrap()
    };
    let plan = explain(&format!("EXPLAIN {}", queries[1]));
    assert!(
        plan.contains("kind@") && plan.contains("IN VIEWS (message_status)"),
        "{plan}"
    );
    let analyzed = explain(&format!("EXPLAIN ANALYZE {}", queries[0]));
    // Shown rounded: "5.20 K".
    let shown = analyzed
        .split("rows_grouped_by_view=")
        .nth(1)
        .and_then(|t| t.split([',', ']']).next())
        .unwrap_or_else(|| panic!("no rows grouped by view:\n{analyzed}"));
    let (number, unit) = shown.split_once(' ').unwrap_or((shown, ""));
    let scale = match unit {
        "" => 1.0,
        "K" => 1e3,
        "M" => 1e6,
        other => panic!("unit {other} in {shown}"),
    };
    let grouped = number.parse::<f64>().unwrap() * scale;
    let events: u64 = ours[0].iter().map(|r| r[1].parse::<u64>().unwrap()).sum();
    assert!(
        (grouped - events as f64).abs() <= 0.01 * events as f64,
        "{shown} rows grouped by view, {events} events:\n{analyzed}"
    );
}
