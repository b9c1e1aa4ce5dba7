//! The analysts' own tools over the Postgres protocol, each run twice: against
//! `supportlake pg` and against a real PostgreSQL holding the same `events` rows (the
//! control, which proves the checks themselves). Real drivers, installed by `.ci/deps`:
//! PgJDBC (`tests/analyst/clients/JdbcCheck.java`), psycopg 3, psycopg2, asyncpg,
//! SQLAlchemy + pandas, psqlODBC through pyodbc, pgcli
//! (`tests/analyst/clients/drivers.py`), psql; and the SQL Grafana, Metabase and DBeaver
//! send at connect and while browsing, as read from their sources and replayed through
//! psycopg (`tests/analyst/clients/replay.py`; the applications themselves are not run).
//!
//! Every check prints `{"check", "ok", "value"}`; a check must pass on both servers, and
//! where it returns a value, both must return the same one.
//!
//! The regression tests below are named after what failed before; each runs the checks
//! of that failure against supportlake alone, so it says which one broke.

mod common;

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{bin, generate, ingest, manifest_dir, source_files};

const TOKEN: &str = "read-token-for-the-client-checks-0123";

/// The servers every test of this file talks to, started once.
struct Fixture {
    dir: PathBuf,
    ours: u16,
    control: u16,
}

/// Children die with the test process (not with the thread that started them: the
/// fixture's thread lives as long as the process).
fn die_with_parent(cmd: &mut Command) {
    // SAFETY: prctl only reads its integer arguments.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// Removes `dir` when the test process exits (the fixture outlives every test).
fn remove_at_exit(dir: &Path) {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    extern "C" fn remove() {
        if let Some(d) = DIR.get() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
    if DIR.set(dir.to_path_buf()).is_ok() {
        // SAFETY: `remove` is a plain function that lives as long as the process.
        unsafe {
            libc::atexit(remove);
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let children = setup();
            let _ = tx.send(children.0);
            let _keep = children.1;
            loop {
                std::thread::park();
            }
        });
        rx.recv().expect("the servers start")
    })
}

/// The lake, supportlake, and the PostgreSQL control.
fn setup() -> (Fixture, Vec<Child>) {
    // In the system's temp folder, which the `postgres` user can reach; removed when the
    // test process exits.
    let dir = tempfile::Builder::new()
        .prefix("supportlake-pg-clients-")
        .tempdir()
        .expect("a temp folder")
        .keep();
    remove_at_exit(&dir);
    let data = dir.join("data");
    generate(&data, 3, 60, 7);
    let lake = dir.join("lake");
    let (code, receipt) = ingest(&lake, &source_files(&data));
    assert_eq!(code, 0, "{receipt}");
    let config = dir.join("config.toml");
    std::fs::write(&config, "timezone = \"UTC\"\n").unwrap();

    let mut ours = bin();
    ours.args(["pg", "--listen", "127.0.0.1:0", "--lake"])
        .arg(&lake)
        .arg("--config")
        .arg(&config)
        .env("SUPPORTLAKE_TOKENS", format!("read:{TOKEN}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    die_with_parent(&mut ours);
    let mut ours = ours.spawn().expect("supportlake pg starts");
    let ours_port = common::pg_port(&mut ours);

    let (control, control_port) = postgres(&dir, &lake);
    (
        Fixture {
            dir,
            ours: ours_port,
            control: control_port,
        },
        vec![ours, control],
    )
}

/// The Debian PostgreSQL server's programs.
fn postgres_bin() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (.ci/deps)")
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("postgres").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("a PostgreSQL server under /usr/lib/postgresql")
}

/// Runs a command as the `postgres` user when we are root (PostgreSQL refuses root).
fn as_postgres(program: &Path) -> Command {
    // SAFETY: geteuid reads the process's user id.
    if unsafe { libc::geteuid() } == 0 {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn ok(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A PostgreSQL server in `dir/control`, with database `supportlake`, the `events` rows
/// of `lake` in a table of the same shape, and a read-only role `analyst` whose password
/// is the same token.
fn postgres(dir: &Path, lake: &Path) -> (Child, u16) {
    let bin_dir = postgres_bin();
    let root = dir.join("control");
    let data = root.join("data");
    std::fs::create_dir_all(&root).unwrap();
    // SAFETY: geteuid reads the process's user id.
    if unsafe { libc::geteuid() } == 0 {
        ok(
            Command::new("chown").args(["-R", "postgres"]).arg(&root),
            "chown",
        );
        ok(Command::new("chmod").arg("o+rx").arg(dir), "chmod");
    }
    ok(
        as_postgres(&bin_dir.join("initdb"))
            .args([
                "-U",
                "admin",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(&data)
            .stdout(Stdio::null()),
        "initdb",
    );
    let port = free_port();
    let mut server = as_postgres(&bin_dir.join("postgres"));
    server
        .arg("-D")
        .arg(&data)
        .args([
            "-p",
            &port.to_string(),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
        ])
        .arg(format!("unix_socket_directories={}", root.display()))
        .args(["-c", "fsync=off"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    die_with_parent(&mut server);
    let server = server.spawn().expect("postgres starts");
    let admin = |sql: &str, db: &str| {
        ok(
            Command::new("psql")
                .arg(format!(
                    "host={} port={port} dbname={db} user=admin",
                    root.display()
                ))
                .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql]),
            sql,
        )
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while Command::new("psql")
        .arg(format!(
            "host={} port={port} dbname=postgres user=admin",
            root.display()
        ))
        .args(["-X", "-q", "-c", "SELECT 1"])
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        assert!(Instant::now() < deadline, "PostgreSQL did not start");
        std::thread::sleep(Duration::from_millis(200));
    }
    admin("CREATE DATABASE supportlake", "postgres");
    admin(
        "CREATE TABLE events (event_id text NOT NULL, ts timestamptz NOT NULL, \
         received_at timestamptz NOT NULL, source text NOT NULL, kind text NOT NULL, \
         conversation_id text, customer_key text, agent_id text, team text, channel text, \
         inbox text, priority text, author text, message_id text, status text, reason text, \
         csat_score smallint, attrs text, date date NOT NULL)",
        "supportlake",
    );
    let csv = root.join("events.csv");
    let rows = common::sql_csv(lake, "SELECT * FROM events");
    std::fs::write(&csv, rows).unwrap();
    // SAFETY: geteuid reads the process's user id.
    if unsafe { libc::geteuid() } == 0 {
        ok(Command::new("chown").arg("postgres").arg(&csv), "chown csv");
    }
    admin(
        &format!("\\copy events FROM '{}' CSV HEADER", csv.display()),
        "supportlake",
    );
    admin(
        &format!(
            "CREATE ROLE analyst LOGIN PASSWORD '{TOKEN}'; \
             GRANT SELECT ON events TO analyst; \
             ALTER ROLE analyst SET default_transaction_read_only = on"
        ),
        "supportlake",
    );
    (server, port)
}

/// One check's answer.
#[derive(Debug, Clone)]
struct Answer {
    ok: bool,
    value: serde_json::Value,
    detail: String,
}

/// Runs a client program and reads its checks.
fn run(cmd: &mut Command) -> BTreeMap<String, Answer> {
    let out = cmd.output().expect("the client runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut answers = BTreeMap::new();
    for line in stdout.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        answers.insert(
            v["check"].as_str().unwrap_or_default().to_owned(),
            Answer {
                ok: v["ok"].as_bool().unwrap_or(false),
                value: v["value"].clone(),
                detail: v["detail"].as_str().unwrap_or_default().to_owned(),
            },
        );
    }
    assert!(
        !answers.is_empty(),
        "no checks ran: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    answers
}

fn clients_dir() -> PathBuf {
    manifest_dir().join("tests/analyst/clients")
}

/// A Python client of `drivers.py` or `replay.py` against the server on `port`.
fn python(script: &str, client: &str, port: u16) -> BTreeMap<String, Answer> {
    run(Command::new("python3")
        .arg(clients_dir().join(script))
        .args([client, "127.0.0.1", &port.to_string(), TOKEN]))
}

/// PgJDBC against the server on `port`.
fn jdbc(port: u16) -> BTreeMap<String, Answer> {
    run(Command::new("java")
        .args(["-cp", "/usr/share/java/postgresql.jar"])
        .arg(clients_dir().join("JdbcCheck.java"))
        .args(["127.0.0.1", &port.to_string(), TOKEN]))
}

/// psql with `commands` (each a `-c`) against the server on `port`: (ok, output).
fn psql(port: u16, commands: &[&str]) -> (bool, String) {
    psql_with(port, &[], commands)
}

/// psql with options `flags` before `commands`.
fn psql_with(port: u16, flags: &[&str], commands: &[&str]) -> (bool, String) {
    let mut c = Command::new("psql");
    c.arg(format!(
        "host=127.0.0.1 port={port} dbname=supportlake user=analyst sslmode=disable"
    ))
    .args(["-X", "-v", "ON_ERROR_STOP=1"])
    .args(flags)
    .env("PGPASSWORD", TOKEN)
    .current_dir(&fixture().dir);
    for cmd in commands {
        c.args(["-c", cmd]);
    }
    let out = c.output().expect("psql runs");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Asserts the named checks passed on supportlake.
fn passed(answers: &BTreeMap<String, Answer>, checks: &[&str]) {
    for name in checks {
        let a = answers
            .get(*name)
            .unwrap_or_else(|| panic!("{name} did not run: {answers:?}"));
        assert!(a.ok, "{name}: {}", a.detail);
    }
}

/// Every check passes on both servers, with the same values.
fn agree(what: &str, ours: &BTreeMap<String, Answer>, control: &BTreeMap<String, Answer>) {
    let failures = differences(what, ours, control);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// What `agree` would fail with.
fn differences(
    what: &str,
    ours: &BTreeMap<String, Answer>,
    control: &BTreeMap<String, Answer>,
) -> Vec<String> {
    let mut failures = Vec::new();
    for (name, theirs) in control {
        if !theirs.ok {
            failures.push(format!("CONTROL {name}: {}", theirs.detail));
            continue;
        }
        match ours.get(name) {
            None => failures.push(format!("{name}: did not run on supportlake")),
            Some(a) if !a.ok => failures.push(format!("{name}: {}", a.detail)),
            Some(a) if !theirs.value.is_null() && a.value != theirs.value => {
                failures.push(format!(
                    "{name}: supportlake answered {}, PostgreSQL {}",
                    a.value, theirs.value
                ))
            }
            Some(_) => {}
        }
    }
    if failures.is_empty() {
        eprintln!("{what}: {} checks agree with PostgreSQL", control.len());
    }
    failures
        .into_iter()
        .map(|f| format!("{what}: {f}"))
        .collect()
}

// --- every client against both servers ------------------------------------------------

#[test]
fn pgjdbc_agrees_with_postgresql() {
    let f = fixture();
    agree("PgJDBC", &jdbc(f.ours), &jdbc(f.control));
}

#[test]
fn python_drivers_agree_with_postgresql() {
    let f = fixture();
    let mut failures = Vec::new();
    for client in [
        "psycopg",
        "psycopg2",
        "asyncpg",
        "sqlalchemy",
        "odbc",
        "pgcli",
    ] {
        failures.extend(differences(
            client,
            &python("drivers.py", client, f.ours),
            &python("drivers.py", client, f.control),
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn grafana_metabase_and_dbeaver_sql_agrees_with_postgresql() {
    let f = fixture();
    let mut failures = Vec::new();
    for client in ["grafana", "metabase", "dbeaver"] {
        failures.extend(differences(
            client,
            &python("replay.py", client, f.ours),
            &python("replay.py", client, f.control),
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn psql_meta_commands_agree_with_postgresql() {
    let f = fixture();
    let copy_file = |port: u16| format!("copy-{port}.csv");
    for port in [f.control, f.ours] {
        for (cmd, wants) in [
            ("\\dt", vec!["events"]),
            (
                "\\d events",
                vec!["csat_score", "smallint", "timestamp with time zone"],
            ),
            ("\\d+ events", vec!["csat_score", "smallint"]),
            ("\\df", vec!["List of functions"]),
            ("\\dn", vec!["public"]),
        ] {
            let (ok, out) = psql(port, &[cmd]);
            assert!(ok, "psql {cmd} on port {port}: {out}");
            for w in wants {
                assert!(
                    out.contains(w),
                    "psql {cmd} on port {port} lacks {w}: {out}"
                );
            }
        }
        let file = copy_file(port);
        let (ok, out) = psql(
            port,
            &[&format!(
                "\\copy (SELECT event_id, csat_score FROM events WHERE csat_score IS NOT NULL ORDER BY event_id) TO '{file}' CSV HEADER"
            )],
        );
        assert!(ok, "psql \\copy on port {port}: {out}");
    }
    let ours = std::fs::read_to_string(f.dir.join(copy_file(f.ours))).unwrap();
    let control = std::fs::read_to_string(f.dir.join(copy_file(f.control))).unwrap();
    assert!(ours.lines().count() > 10, "{ours}");
    assert_eq!(ours, control, "\\copy wrote different files");
}

/// Both servers answer `sql` with the same rows (psql, unaligned, without headers).
fn same_rows(sql: &str) -> String {
    let f = fixture();
    let (ok, control) = psql_with(f.control, &["-A", "-t"], &[sql]);
    assert!(ok, "CONTROL {sql}: {control}");
    let (ok, ours) = psql_with(f.ours, &["-A", "-t"], &[sql]);
    assert!(ok, "{sql}: {ours}");
    assert_eq!(ours, control, "{sql}");
    ours
}

// --- regressions, named after what failed ----------------------------------------------

/// `\d+ events` failed with "Invalid function 'array'" (psql's `array(SELECT 'toast.' ||
/// x FROM unnest(reloptions) x)`), then for want of `pg_class.reloptions`. Its column
/// table is PostgreSQL's, row for row. (Its footer differs: the lake's tables have no
/// access method, so there is no "Access method: heap".)
#[test]
fn psql_describe_plus_failed_on_array_subquery() {
    let f = fixture();
    let columns = |port: u16| {
        let (ok, out) = psql(port, &["\\d+ events"]);
        assert!(ok, "psql \\d+ events on port {port}: {out}");
        out.lines()
            .filter(|l| l.contains(" | "))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let ours = columns(f.ours);
    assert_eq!(ours.len(), 20, "a header and 19 columns: {ours:?}");
    assert_eq!(ours, columns(f.control));
    same_rows(
        "SELECT relname, reloptions IS NULL FROM pg_catalog.pg_class WHERE relname = 'events'",
    );
}

/// SQLAlchemy's column reflection failed with "Physical plan does not support logical
/// expression ScalarSubquery": catalog lookups by correlated subquery with a condition on
/// the outer row alone, with outer values in what they select, inside other expressions.
/// These have those shapes over tables that are not empty.
#[test]
fn catalog_lookup_subqueries_failed_to_plan() {
    let attributes = "FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
                      WHERE c.relname = 'events' AND a.attnum > 0 ORDER BY a.attnum";
    // A condition on the outer row alone.
    let out = same_rows(&format!(
        "SELECT a.attname, coalesce((SELECT t.typname FROM pg_catalog.pg_type t \
         WHERE a.attnum > 0 AND t.oid = a.atttypid), '-') {attributes}"
    ));
    assert!(out.contains("csat_score|int2"), "{out}");
    // The outer row's values in what the subquery selects; an empty catalog table.
    let out = same_rows(&format!(
        "SELECT coalesce((SELECT a.attname || ':' || t.typname FROM pg_catalog.pg_type t \
         WHERE t.oid = a.atttypid), '-'), coalesce((SELECT json_build_object('always', \
         a.attidentity = 'a', 'start', s.seqstart)::text FROM pg_catalog.pg_sequence s \
         WHERE a.attidentity <> '' AND s.seqrelid = a.attrelid), 'none') {attributes}"
    ));
    assert!(out.contains("csat_score:int2|none"), "{out}");
    // The first row of an order, not the greatest.
    let out = same_rows(
        "SELECT coalesce((SELECT t.typname FROM pg_catalog.pg_type t WHERE t.typname IN \
         ('int2', 'int4', 'text') ORDER BY t.typname LIMIT 1), '-'), coalesce((SELECT \
         t.typname AS n FROM pg_catalog.pg_type t WHERE t.typname IN ('int2', 'int4', \
         'text') ORDER BY n DESC LIMIT 1), '-')",
    );
    assert_eq!(out.trim(), "int2|text");
}

/// SQLAlchemy's inspector, and pandas' `read_sql_table` through it, failed on the column
/// reflection query, then on the primary key query (`generate_subscripts`).
#[test]
fn sqlalchemy_reflection_failed_on_catalog_subqueries() {
    let answers = python("drivers.py", "sqlalchemy", fixture().ours);
    let mut checks = Vec::new();
    for driver in ["psycopg2", "psycopg"] {
        checks.push(format!(
            "sqlalchemy+{driver}: inspector (tables, columns, keys, indexes)"
        ));
        checks.push(format!("pandas+{driver}: read_sql_table"));
    }
    passed(
        &answers,
        &checks.iter().map(String::as_str).collect::<Vec<_>>(),
    );
}

/// A scalar subquery making up a select-list item answered NULL on every row when it
/// read the lake with a qualified column (the compatibility parser took it for a catalog
/// query it cannot plan): the counts and maxima here are not NULL in PostgreSQL.
#[test]
fn lake_subquery_in_select_list_answered_null() {
    let out = same_rows(
        "SELECT x.kind, (SELECT count(*) FROM events e WHERE e.kind = x.kind) AS n, \
         (SELECT max(e.csat_score) FROM events e WHERE e.kind = x.kind) FROM (SELECT \
         DISTINCT kind FROM events) x ORDER BY 1",
    );
    assert!(out.contains("csat_submitted|"), "{out}");
    assert!(!out.contains("||"), "{out}");
    let out = same_rows(
        "SELECT (SELECT count(*) FROM events WHERE events.csat_score = 5) AS fives, (SELECT \
         count(*) FROM events WHERE events.csat_score IS NOT NULL) AS scored",
    );
    assert!(!out.starts_with('|'), "{out}");
}

/// `= ANY (SELECT …)` and `<> ALL (SELECT …)` failed with "array_has does not support
/// type Utf8View" (the compatibility parser took the subquery for an array).
#[test]
fn any_subquery_failed_as_array_has() {
    let out = same_rows(
        "SELECT (SELECT count(*) FROM events WHERE kind = ANY (SELECT kind FROM events WHERE \
         csat_score = 5)) AS a, (SELECT count(*) FROM events WHERE kind <> ALL (SELECT kind \
         FROM events WHERE csat_score = 5)) AS b",
    );
    assert!(!out.starts_with("0|"), "{out}");
}

/// SQLAlchemy's primary keys and indexes failed with "Invalid function
/// 'generate_subscripts'" (beside `unnest(indkey)` in a select list).
#[test]
fn generate_subscripts_was_unknown() {
    let out = same_rows(
        "SELECT unnest(x), generate_subscripts(x, 1), generate_subscripts(x, 1, true) \
         FROM (SELECT ARRAY[30, 40, 50] AS x) t",
    );
    assert_eq!(out.trim(), "30|1|3\n40|2|2\n50|3|1");
    same_rows("SELECT count(*) FROM (SELECT generate_subscripts(ARRAY[1, 2], 2)) t");
}

/// Grafana's table and column lists came back empty: its search-path subquery (`user`,
/// `string_to_array(…) s` in FROM, `s[i]`) was replaced by `''` before it planned, and
/// alone it did not plan. It sorts the search path's tables first with `IN (SELECT …)`
/// in its select list and ORDER BY, which DataFusion does not plan there.
#[test]
fn grafana_search_path_subquery_answered_nothing() {
    let search_path = "SELECT CASE WHEN trim(s[i]) = '\"$user\"' THEN user ELSE trim(s[i]) END \
                       FROM generate_series(array_lower(string_to_array(current_setting(\
                       'search_path'),','),1), array_upper(string_to_array(current_setting(\
                       'search_path'),','),1)) as i, string_to_array(current_setting(\
                       'search_path'),',') s";
    let out = same_rows(&format!("{search_path} ORDER BY 1"));
    assert_eq!(out.trim(), "analyst\npublic");
    let out = same_rows(&format!(
        "SELECT CASE WHEN quote_ident(table_schema) IN ({search_path}) THEN 0 ELSE 1 END AS o, \
         table_name FROM information_schema.tables WHERE table_name = 'events' ORDER BY CASE \
         WHEN quote_ident(table_schema) IN ({search_path}) THEN 0 ELSE 1 END"
    ));
    assert_eq!(out.trim(), "0|events");
    // IN's three values, outside a WHERE.
    let out = same_rows(
        "SELECT 1 IN (SELECT 1) AS a, NULL::int IN (SELECT 1) AS b, 2 IN (SELECT 1) AS c, 2 NOT \
         IN (SELECT 1 UNION ALL SELECT NULL) AS d, NULL::int IN (SELECT 1 WHERE false) AS e, \
         (SELECT min(kind) FROM events) IN (SELECT kind FROM events) AS f",
    );
    assert_eq!(out.trim(), "t||f||f|t");
    // Functions in FROM: one value is one row, named after the alias.
    let out = same_rows("SELECT x, g FROM upper('a') x, generate_series(1, 2) AS g ORDER BY g");
    assert_eq!(out.trim(), "A|1\nA|2");
}

/// Grafana's aggregate list failed with "Cannot cast string 'pg_catalog.avg' to value of
/// Int32 type": `pg_aggregate.aggfnoid` held the function's name, not its oid.
#[test]
fn aggfnoid_was_a_function_name() {
    let out = same_rows(
        "SELECT DISTINCT proname FROM pg_aggregate JOIN pg_proc ON pg_aggregate.aggfnoid = \
         pg_proc.oid JOIN pg_type ON pg_type.oid = pg_proc.prorettype WHERE pronargs = 1 AND \
         typname = 'float8' AND aggkind = 'n' AND proname IN ('avg', 'max', 'sum', 'count') \
         ORDER BY 1",
    );
    assert_eq!(out.trim(), "avg\nmax\nsum");
    // Each of the overloads its own row: max(int4) returns int4, max(text) text.
    let out = same_rows(
        "SELECT t.typname FROM pg_aggregate a JOIN pg_proc p ON a.aggfnoid = p.oid JOIN \
         pg_type t ON t.oid = p.prorettype WHERE p.proname = 'max' AND t.typname IN ('int4', \
         'text', 'float8', 'date') ORDER BY 1",
    );
    assert_eq!(out.trim(), "date\nfloat8\nint4\ntext");
}

/// Metabase's field list failed with "Cannot cast string 'public.events' to value of
/// Int32 type": a `regclass` cast of an expression (`format('%I.%I', …)::regclass`) cast
/// the text to a number instead of looking the relation up.
#[test]
fn regclass_of_an_expression_cast_text_to_a_number() {
    let out = same_rows(
        "SELECT format('%I.%I', 'public', 'events')::regclass = 'events'::regclass, \
         ('public' || '.' || 'events')::regclass::oid = (SELECT oid FROM pg_class WHERE \
         relname = 'events'), col_description(format('%I.%I', 'public', \
         'events')::regclass::oid, 1) IS NULL",
    );
    assert_eq!(out.trim(), "t|t|t");
    let f = fixture();
    for port in [f.control, f.ours] {
        let (ok, out) = psql(port, &["SELECT ('public.' || 'no_such_table')::regclass"]);
        assert!(
            !ok && out.contains("relation \"public.no_such_table\" does not exist"),
            "port {port}: {out}"
        );
    }
}

/// Metabase listed `events` as writable: every `has_*_privilege` answered true.
#[test]
fn privileges_were_all_granted() {
    let out = same_rows(
        "SELECT has_table_privilege('events', 'select'), has_table_privilege(current_user, \
         'public.events', 'SELECT'), has_table_privilege('events', 'update'), \
         has_table_privilege('events', 'insert'), has_table_privilege('events', 'delete'), \
         has_table_privilege('events', 'truncate'), has_any_column_privilege('events', \
         'select'), has_any_column_privilege(current_user, 'events', 'update'), \
         has_column_privilege('events', 'kind', 'select'), has_column_privilege('events', \
         'kind', 'insert'), has_schema_privilege('public', 'usage'), \
         has_schema_privilege(current_user, 'public', 'create'), \
         has_database_privilege('supportlake', 'connect'), \
         has_database_privilege('supportlake', 'create')",
    );
    assert_eq!(out.trim(), "t|t|f|f|f|f|t|f|t|f|t|f|t|f");
}

/// `current_user`, `session_user` and `user` answered `postgres` whoever signed in
/// (DBeaver shows it as the connection's user), and `user` did not plan.
#[test]
fn current_user_was_postgres() {
    let f = fixture();
    let sql = "SELECT current_user, session_user, user, current_role, upper(user) AS u";
    let (ok, control) = psql_with(f.control, &["-A"], &[sql]);
    assert!(ok, "CONTROL: {control}");
    let (ok, ours) = psql_with(f.ours, &["-A"], &[sql]);
    assert!(ok, "{ours}");
    assert_eq!(ours, control);
    assert!(
        ours.contains("analyst|analyst|analyst|analyst|ANALYST"),
        "{ours}"
    );
}
