//! What one Postgres connection keeps: its display settings, its transaction block and
//! savepoints, and its cursors.
//!
//! None of it reaches the engine. A `SET` of a client setting is kept in the connection's
//! metadata (where pgwire's encoders read `DateStyle`, `IntervalStyle`, `bytea_output` and
//! `extra_float_digits`) and reported back with `ParameterStatus` when Postgres would;
//! `statement_timeout` can only shorten the sandbox's timeout. Transactions and
//! savepoints are bookkeeping: the session is read-only, so there is nothing to commit or
//! undo, but clients expect the states and errors Postgres gives (a savepoint outside a
//! transaction block, a statement after an error, `ROLLBACK TO` that recovers from one).

use std::time::Duration;

use datafusion::sql::sqlparser::ast::{Expr, Set, Statement, Value};
use datafusion_postgres::pgwire;
use pgwire::api::ClientInfo;
use pgwire::error::{ErrorInfo, PgWireError};
use pgwire::messages::response::TransactionStatus;

use super::pg_run::Cursors;

/// The version clients see: `server_version` at sign-in, `SHOW server_version`, and the
/// start of `version()`. Clients choose their catalog queries by it; the catalog answers
/// as this version's does.
pub const SERVER_VERSION: &str = "16.6";
/// `server_version_num` of [`SERVER_VERSION`].
pub const SERVER_VERSION_NUM: &str = "160006";

/// The text `version()` returns: PostgreSQL-shaped, as SQLAlchemy and others parse it, and
/// naming what really answers.
pub fn version_text() -> String {
    format!(
        "PostgreSQL {SERVER_VERSION} (supportlake {} on Apache DataFusion {}) on {}-linux, 64-bit",
        env!("CARGO_PKG_VERSION"),
        datafusion::DATAFUSION_VERSION,
        std::env::consts::ARCH,
    )
}

/// Settings a client may set, by their lower-case name, with the name Postgres reports
/// them under and whether it reports changes (`ParameterStatus`).
const SETTINGS: &[(&str, &str, bool)] = &[
    ("application_name", "application_name", true),
    ("bytea_output", "bytea_output", false),
    ("client_encoding", "client_encoding", true),
    ("client_min_messages", "client_min_messages", false),
    ("datestyle", "DateStyle", true),
    ("extra_float_digits", "extra_float_digits", false),
    (
        "idle_in_transaction_session_timeout",
        "idle_in_transaction_session_timeout",
        false,
    ),
    ("intervalstyle", "IntervalStyle", true),
    ("lc_messages", "lc_messages", false),
    ("lc_monetary", "lc_monetary", false),
    ("lc_numeric", "lc_numeric", false),
    ("lc_time", "lc_time", false),
    ("lock_timeout", "lock_timeout", false),
    ("search_path", "search_path", false),
    (
        "standard_conforming_strings",
        "standard_conforming_strings",
        true,
    ),
    ("statement_timeout", "statement_timeout", false),
    ("timezone", "TimeZone", true),
];

/// The value of a setting nobody set, as `SHOW` gives it.
pub fn default_setting(name: &str) -> Option<String> {
    let v = match name {
        "application_name" => "",
        "bytea_output" => "hex",
        "client_encoding" | "server_encoding" => "UTF8",
        "client_min_messages" => "notice",
        "datestyle" => "ISO, MDY",
        "extra_float_digits" => "1",
        "idle_in_transaction_session_timeout" | "lock_timeout" | "statement_timeout" => "0",
        "intervalstyle" => "postgres",
        "lc_messages" | "lc_monetary" | "lc_numeric" | "lc_time" | "lc_collate" | "lc_ctype" => {
            "C.UTF-8"
        }
        "search_path" => "\"$user\", public",
        "standard_conforming_strings" | "integer_datetimes" => "on",
        "timezone" => "UTC",
        "server_version" => SERVER_VERSION,
        "server_version_num" => SERVER_VERSION_NUM,
        "transaction_isolation" | "default_transaction_isolation" => "read committed",
        "transaction_read_only" | "default_transaction_read_only" => "on",
        "max_identifier_length" => "63",
        "is_superuser" => "off",
        "max_index_keys" => "32",
        "block_size" => "8192",
        "jit" => "off",
        _ => return None,
    };
    Some(v.to_owned())
}

/// The name `SHOW` titles its column with.
fn display_name(name: &str) -> String {
    SETTINGS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, d, _)| (*d).to_owned())
        .unwrap_or_else(|| name.to_owned())
}

fn error(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_owned(),
        code.to_owned(),
        message,
    )))
}

/// `SHOW name`: (column title, value), or an error for a name Postgres would not know.
pub fn show<C: ClientInfo + ?Sized>(
    client: &C,
    words: &[String],
) -> Result<(String, String), PgWireError> {
    let name = match words
        .iter()
        .map(|w| w.to_lowercase())
        .collect::<Vec<_>>()
        .join(" ")
        .as_str()
    {
        "time zone" => "timezone".to_owned(),
        "transaction isolation level" => "transaction_isolation".to_owned(),
        other => other.to_owned(),
    };
    let value = client
        .metadata()
        .get(&name)
        .cloned()
        .or_else(|| default_setting(&name))
        .ok_or_else(|| {
            error(
                "42704",
                format!("unrecognized configuration parameter \"{name}\""),
            )
        })?;
    Ok((display_name(&name), value))
}

/// The text of a `SET` value as Postgres keeps it: strings without their quotes, several
/// values joined by `, `.
fn value_text(values: &[Expr]) -> String {
    values
        .iter()
        .map(|v| match v {
            Expr::Value(v) => match &v.value {
                Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s.clone(),
                other => other.to_string(),
            },
            Expr::Identifier(i) => i.value.clone(),
            other => other.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `SET`: keeps the value and returns the `ParameterStatus` to send, if any. The sandbox's
/// check let only client settings through.
pub fn set<C: ClientInfo + ?Sized>(
    client: &mut C,
    statement: &Statement,
) -> Result<Option<(String, String)>, PgWireError> {
    let (name, value) = match statement {
        Statement::Set(Set::SingleAssignment {
            variable, values, ..
        }) => (variable.to_string().to_lowercase(), value_text(values)),
        Statement::Set(Set::SetTimeZone { value, .. }) => (
            "timezone".to_owned(),
            value_text(std::slice::from_ref(value)),
        ),
        Statement::Set(Set::SetNames { charset_name, .. }) => {
            ("client_encoding".to_owned(), charset_name.to_string())
        }
        // SET TRANSACTION … / SET NAMES DEFAULT: nothing to keep.
        _ => return Ok(None),
    };
    let Some((_, reported, report)) = SETTINGS.iter().find(|(n, _, _)| *n == name) else {
        return Err(error(
            "42704",
            format!("unrecognized configuration parameter \"{name}\""),
        ));
    };
    let value = if value.eq_ignore_ascii_case("default") {
        default_setting(&name).unwrap_or_default()
    } else {
        value
    };
    if name == "statement_timeout" && parse_timeout(&value).is_none() {
        return Err(error(
            "22023",
            format!("invalid value for parameter \"statement_timeout\": \"{value}\""),
        ));
    }
    client.metadata_mut().insert(name.clone(), value.clone());
    Ok(report.then(|| ((*reported).to_owned(), value)))
}

/// `RESET name` / `RESET ALL`: back to the values a new connection has.
pub fn reset<C: ClientInfo + ?Sized>(client: &mut C, name: Option<&str>) {
    let names: Vec<&str> = match name {
        Some(n) => vec![n],
        None => SETTINGS.iter().map(|(n, _, _)| *n).collect(),
    };
    for n in names {
        client.metadata_mut().remove(n);
    }
}

/// Every setting `pg_settings` lists, with its value on a new connection.
pub fn settings() -> Vec<(String, String)> {
    let mut names: Vec<&str> = SETTINGS.iter().map(|(n, _, _)| *n).collect();
    names.extend([
        "server_encoding",
        "integer_datetimes",
        "server_version",
        "server_version_num",
        "transaction_isolation",
        "default_transaction_isolation",
        "transaction_read_only",
        "default_transaction_read_only",
        "max_identifier_length",
        "is_superuser",
        "max_index_keys",
        "block_size",
        "lc_collate",
        "lc_ctype",
    ]);
    names.sort();
    names
        .into_iter()
        .filter_map(|n| Some((display_name(n), default_setting(n)?)))
        .collect()
}

/// `statement_timeout` as Postgres reads it: a number of milliseconds, or a number with a
/// unit; `0` is no timeout (`Some(None)`).
fn parse_timeout(text: &str) -> Option<Option<Duration>> {
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let n: u64 = t[..digits].parse().ok()?;
    let ms = match t[digits..].trim() {
        "" | "ms" => n,
        "s" => n.checked_mul(1000)?,
        "min" => n.checked_mul(60_000)?,
        "h" => n.checked_mul(3_600_000)?,
        _ => return None,
    };
    Some((ms > 0).then(|| Duration::from_millis(ms)))
}

/// The client's `statement_timeout`, when it set one.
pub fn statement_timeout<C: ClientInfo + ?Sized>(client: &C) -> Option<Duration> {
    client
        .metadata()
        .get("statement_timeout")
        .and_then(|v| parse_timeout(v))
        .flatten()
}

/// The savepoints of the open transaction block, innermost last.
#[derive(Default)]
pub struct Savepoints(std::sync::Mutex<Vec<String>>);

impl Savepoints {
    fn with<R>(&self, f: impl FnOnce(&mut Vec<String>) -> R) -> R {
        let mut guard = self.0.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }
}

/// What a transaction-control statement does to the connection.
pub struct Transition {
    /// The command tag to answer with.
    pub tag: &'static str,
    /// The transaction status afterwards.
    pub status: TransactionStatus,
}

const ABORTED: &str =
    "current transaction is aborted, commands ignored until end of transaction block";

/// Whether `statement` may run while the transaction block is failed.
pub fn allowed_when_failed(statement: &Statement) -> bool {
    matches!(
        statement,
        Statement::Rollback { .. } | Statement::Commit { .. }
    )
}

/// The error for anything else while the transaction block is failed.
pub fn aborted() -> PgWireError {
    error("25P02", ABORTED.to_owned())
}

/// `BEGIN`, `COMMIT`, `ROLLBACK`, `SAVEPOINT`, `RELEASE`, `ROLLBACK TO`: their tag and the
/// status after them; `None` for any other statement. Ending a block closes the cursors
/// declared without `WITH HOLD`, as Postgres does.
pub async fn transaction(
    statement: &Statement,
    status: TransactionStatus,
    savepoints: &Savepoints,
    cursors: &Cursors,
) -> Option<Result<Transition, PgWireError>> {
    let outside = |what: &str| {
        Err(error(
            "25P01",
            format!("{what} can only be used in transaction blocks"),
        ))
    };
    let missing = |name: &str| {
        Err(error(
            "3B001",
            format!("savepoint \"{name}\" does not exist"),
        ))
    };
    let idle = TransactionStatus::Idle;
    let open = TransactionStatus::Transaction;
    let result = match statement {
        Statement::StartTransaction { .. } => match status {
            TransactionStatus::Error => Err(aborted()),
            _ => Ok(Transition {
                tag: "BEGIN",
                status: open,
            }),
        },
        Statement::Commit { .. } => {
            savepoints.with(Vec::clear);
            cursors.end_of_transaction().await;
            Ok(Transition {
                tag: if status == TransactionStatus::Error {
                    "ROLLBACK"
                } else {
                    "COMMIT"
                },
                status: idle,
            })
        }
        Statement::Rollback {
            savepoint: None, ..
        } => {
            savepoints.with(Vec::clear);
            cursors.end_of_transaction().await;
            Ok(Transition {
                tag: "ROLLBACK",
                status: idle,
            })
        }
        Statement::Rollback {
            savepoint: Some(name),
            ..
        } => {
            if status == idle {
                outside("ROLLBACK TO SAVEPOINT")
            } else {
                let name = name.value.clone();
                let found = savepoints.with(|s| match s.iter().rposition(|n| *n == name) {
                    Some(at) => {
                        // The savepoint stays; those after it go.
                        s.truncate(at + 1);
                        true
                    }
                    None => false,
                });
                if found {
                    Ok(Transition {
                        tag: "ROLLBACK",
                        status: open,
                    })
                } else {
                    missing(&name)
                }
            }
        }
        Statement::Savepoint { name } => {
            if status == idle {
                outside("SAVEPOINT")
            } else {
                savepoints.with(|s| s.push(name.value.clone()));
                Ok(Transition {
                    tag: "SAVEPOINT",
                    status,
                })
            }
        }
        Statement::ReleaseSavepoint { name } => {
            if status == idle {
                outside("RELEASE SAVEPOINT")
            } else {
                let name = name.value.clone();
                let found = savepoints.with(|s| match s.iter().rposition(|n| *n == name) {
                    Some(at) => {
                        s.truncate(at);
                        true
                    }
                    None => false,
                });
                if found {
                    Ok(Transition {
                        tag: "RELEASE",
                        status,
                    })
                } else {
                    missing(&name)
                }
            }
        }
        _ => return None,
    };
    Some(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statement_timeout_units() {
        assert_eq!(parse_timeout("0"), Some(None));
        assert_eq!(
            parse_timeout("1500"),
            Some(Some(Duration::from_millis(1500)))
        );
        assert_eq!(parse_timeout("2s"), Some(Some(Duration::from_secs(2))));
        assert_eq!(parse_timeout("1min"), Some(Some(Duration::from_secs(60))));
        assert_eq!(parse_timeout("soon"), None);
        assert_eq!(parse_timeout("99999999999999999999h"), None);
    }

    #[test]
    fn version_is_postgres_shaped() {
        // SQLAlchemy's pattern: "PostgreSQL <major>.<minor>".
        let v = version_text();
        assert!(
            v.starts_with(&format!("PostgreSQL {SERVER_VERSION} ")),
            "{v}"
        );
        assert!(v.contains("DataFusion"), "{v}");
    }
}
