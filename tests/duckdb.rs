//! The lake is an open format: DuckDB (PyPI `duckdb`, installed by .ci/run) reads the
//! Parquet files directly and sees the same rows, with the same types, as `supportlake sql`.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use common::*;

/// One row as comparable text: timestamps as microseconds since the epoch.
type Row = BTreeMap<String, String>;

fn ours(lake: &Path) -> Vec<Row> {
    let out = run_ok(
        bin().arg("sql").arg("--lake").arg(lake).args([
            "--format",
            "json",
            "SELECT * FROM events ORDER BY event_id",
        ]),
        0,
    );
    let rows: Vec<serde_json::Map<String, serde_json::Value>> = serde_json::from_str(&out).unwrap();
    rows.into_iter()
        .map(|r| {
            r.into_iter()
                .map(|(k, v)| {
                    let text = match (k.as_str(), v) {
                        (_, serde_json::Value::Null) => "NULL".to_owned(),
                        ("ts" | "received_at", serde_json::Value::String(s)) => s
                            .parse::<DateTime<Utc>>()
                            .unwrap()
                            .timestamp_micros()
                            .to_string(),
                        (_, serde_json::Value::String(s)) => s,
                        (_, other) => other.to_string(),
                    };
                    (k, text)
                })
                .collect()
        })
        .collect()
}

fn theirs(lake: &Path) -> Vec<Row> {
    let script = r#"
con = duckdb.connect()
rel = con.sql(f"SELECT * FROM {src} ORDER BY event_id")
epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
for row in rel.fetchall():
    out = {}
    for name, v in zip(rel.columns, row):
        if v is None: v = "NULL"
        elif isinstance(v, datetime.datetime): v = str((v - epoch) // datetime.timedelta(microseconds=1))
        elif isinstance(v, datetime.date): v = v.isoformat()
        else: v = str(v)
        out[name] = v
    print(json.dumps(out, ensure_ascii=False))
"#;
    duckdb(lake, script, &[])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn duckdb_reads_the_same_rows_and_types() {
    let dir = tempfile::tempdir().unwrap();
    let gen_dir = dir.path().join("gen");
    generate(&gen_dir, 2, 40, 5);
    let lake = dir.path().join("lake");
    let mut files = source_files(&gen_dir);
    files.push(fixture("agent-log/every-type.jsonl"));
    let (code, r) = ingest(&lake, &files);
    assert_eq!(code, 0, "{r}");

    let a = ours(&lake);
    let b = theirs(&lake);
    assert!(a.len() > 500, "{} rows", a.len());
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x, y);
    }

    // Types: ours from the information schema, DuckDB's from DESCRIBE.
    let our_types = sql_csv(
        &lake,
        "SELECT column_name, data_type FROM information_schema.columns \
         WHERE table_name = 'events' ORDER BY ordinal_position",
    );
    let theirs = duckdb(
        &lake,
        "for name, typ, *_ in duckdb.sql(f'DESCRIBE SELECT * FROM {src}').fetchall(): print(f'{name},{typ}')",
        &[],
    );
    let map = |t: &str| match t {
        "Utf8" | "Utf8View" => "VARCHAR",
        "Timestamp(µs, \"UTC\")" | "Timestamp(Microsecond, Some(\"UTC\"))" => {
            "TIMESTAMP WITH TIME ZONE"
        }
        "Int8" => "TINYINT",
        "Date32" => "DATE",
        other => panic!("unexpected type {other}"),
    };
    let ours: Vec<String> = our_types
        .lines()
        .skip(1)
        .map(|l| {
            let (name, typ) = l.split_once(',').unwrap();
            format!(
                "{name},{}",
                map(typ.trim_matches('"').replace("\"\"", "\"").as_str())
            )
        })
        .collect();
    let theirs: Vec<&str> = theirs.lines().collect();
    assert_eq!(ours, theirs);

    // Timestamps are stored as TIMESTAMP(MICROS, isAdjustedToUTC=true).
    let logical = duckdb(
        &lake,
        "f = sorted(glob.glob(sys.argv[1] + '/events/*/*.parquet'))[0]\n\
         print(duckdb.sql(f\"SELECT logical_type FROM parquet_schema('{f}') WHERE name = 'ts'\").fetchall()[0][0])",
        &[],
    );
    assert!(logical.contains("isAdjustedToUTC=1"), "{logical}");
    assert!(logical.contains("MICROS"), "{logical}");
}

#[test]
fn duckdb_sees_each_event_once_after_repeated_ingests() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let files = vec![
        fixture("agent-log/every-type.jsonl"),
        fixture("whatsapp/every-message-type.jsonl"),
        fixture("chatwoot/every-event.jsonl"),
    ];
    for _ in 0..3 {
        assert_eq!(ingest(&lake, &files).0, 0);
    }
    let out = duckdb(
        &lake,
        "print(duckdb.sql(f'SELECT count(*), count(DISTINCT event_id) FROM {src}').fetchall()[0])",
        &[],
    );
    assert_eq!(out.trim(), "(42, 42)");
}
