//! The checks an analyst's SQL passes before anything plans it.
//!
//! In order: the length cap (on the raw text), the parse (one statement, with the parser's
//! own recursion limit), the expression-depth cap (on the parsed tree), and the statement
//! kind — a query, an `EXPLAIN` of one, or one of the harmless session statements that
//! Postgres clients send when they connect.
//!
//! The Postgres path ([`check_script`]) takes what a simple `Query` message may hold:
//! several statements, or none (an empty or comment-only text), each checked on its own;
//! and three more kinds that only make sense on a connection: cursors (`DECLARE … CURSOR
//! FOR <query>`, `FETCH`, `MOVE`, `CLOSE`), `COPY (<query>) TO STDOUT` (rows streamed to
//! the client, no file opened), and savepoints, which a read-only session has nothing to
//! undo for.
//!
//! The tree is walked on a thread with a large stack: a long chain like `1+1+…+1` parses
//! without recursion but is as deep as it is long, and measuring it must not overflow the
//! stack of a server thread.

use std::ops::ControlFlow;

use datafusion::sql::parser::{DFParserBuilder, Statement as DFStatement};
use datafusion::sql::sqlparser::ast::{
    CopySource, CopyTarget, DeclareType, Expr, FetchDirection, Query, Set, SetExpr, Statement,
    Visit, Visitor, visit_expressions,
};
use datafusion::sql::sqlparser::dialect::{Dialect, GenericDialect, PostgreSqlDialect};
use datafusion::sql::sqlparser::parser::Parser;
use datafusion_postgres::datafusion_pg_catalog::sql::PostgresCompatibilityParser;

use super::{Limits, SandboxError};

/// Which SQL dialect the text is parsed in: the HTTP path uses DataFusion's own (as
/// `supportlake sql` does), the Postgres wire path the Postgres one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlDialect {
    Generic,
    Postgres,
}

/// What an accepted statement is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A query (or `EXPLAIN` of one): planned and run under the limits.
    Query,
    /// A session statement a Postgres client sends at connect time (`SET application_name`,
    /// `BEGIN`, `SHOW …`, savepoints): answered without touching the engine's settings.
    Session,
    /// A cursor statement: `DECLARE` over a query (run under the same limits as the query
    /// itself), `FETCH`, `MOVE`, `CLOSE`. Postgres path only.
    Cursor,
    /// `COPY (<query>) TO STDOUT` or `COPY <table> TO STDOUT`: the rows go to the client
    /// as COPY data; no file is opened. Postgres path only.
    CopyOut,
}

/// Session variables a client may `SET`: they change how this connection's results are
/// shown, never what the engine may do.
const CLIENT_SETTINGS: &[&str] = &[
    "application_name",
    "bytea_output",
    "client_encoding",
    "client_min_messages",
    "datestyle",
    "extra_float_digits",
    "intervalstyle",
    "lc_messages",
    "lc_monetary",
    "lc_numeric",
    "lc_time",
    "search_path",
    "standard_conforming_strings",
    "statement_timeout",
    "lock_timeout",
    "idle_in_transaction_session_timeout",
    "timezone",
];

/// Runs every check on `sql`; on success returns the parsed statement (DataFusion's, which
/// also knows its own extensions such as `CREATE EXTERNAL TABLE` and `COPY … TO`, so they
/// are refused by name) and its kind.
///
/// The parse and the walk run on their own thread with a large stack (see the module
/// documentation); the caller waits for it.
pub fn check(
    sql: &str,
    dialect: SqlDialect,
    limits: &Limits,
) -> Result<(DFStatement, Kind), SandboxError> {
    if sql.len() > limits.max_sql_bytes {
        return Err(SandboxError::TooLong {
            bytes: sql.len(),
            max: limits.max_sql_bytes,
        });
    }
    let sql = sql.to_owned();
    let max_depth = limits.max_depth;
    std::thread::Builder::new()
        .name("sql-check".into())
        .stack_size(256 << 20)
        .spawn(move || check_on_this_thread(&sql, dialect, max_depth))
        .map_err(|e| SandboxError::Internal(format!("cannot start the SQL check: {e}")))?
        .join()
        .map_err(|_| SandboxError::Internal("the SQL check failed".into()))?
}

/// The Postgres path's checks on the text of a `Query` (or `Parse`) message: the length cap,
/// then each statement as [`check`] does it. Returns the statements as they will be planned
/// — rewritten by datafusion-postgres's compatibility parser, which turns the catalog
/// queries of psql, pgcli, DBeaver and Grafana into SQL DataFusion can plan — with their
/// kinds; an empty or comment-only text gives none.
///
/// The rewritten statements are what the kind and depth checks judge. The plain parse
/// before it bounds the depth first, because the rewrite rules walk the tree recursively.
pub fn check_script(sql: &str, limits: &Limits) -> Result<Vec<(Statement, Kind)>, SandboxError> {
    if sql.len() > limits.max_sql_bytes {
        return Err(SandboxError::TooLong {
            bytes: sql.len(),
            max: limits.max_sql_bytes,
        });
    }
    let sql = sql.to_owned();
    let max_depth = limits.max_depth;
    std::thread::Builder::new()
        .name("sql-check".into())
        .stack_size(256 << 20)
        .spawn(move || check_script_on_this_thread(&sql, max_depth))
        .map_err(|e| SandboxError::Internal(format!("cannot start the SQL check: {e}")))?
        .join()
        .map_err(|_| SandboxError::Internal("the SQL check failed".into()))?
}

fn check_script_on_this_thread(
    sql: &str,
    max_depth: usize,
) -> Result<Vec<(Statement, Kind)>, SandboxError> {
    let dialect = PostgreSqlDialect {};
    let plain = Parser::new(&dialect)
        .with_recursion_limit(max_depth.max(8))
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_statements())
        .map_err(|e| SandboxError::Parse(e.to_string()))?;
    for statement in &plain {
        let depth = depth(statement);
        if depth > max_depth {
            return Err(SandboxError::TooDeep {
                depth,
                max: max_depth,
            });
        }
    }
    if plain.is_empty() {
        return Ok(Vec::new());
    }
    let mut statements = plain;
    let renamed = regproc_names(&mut statements);
    let kept = keep_lake_subqueries(&mut statements);
    let memberships = subquery_memberships(&mut statements);
    let mut users = false;
    for s in &mut statements {
        users |= super::pg_rewrite::name_session_users(s);
    }
    let text = if renamed || kept || memberships || users {
        statements
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(";\n")
    } else {
        sql.to_owned()
    };
    compatible(statements, &text)
        .into_iter()
        .map(|statement| {
            let statement = super::pg_rewrite::rewrite(statement);
            let depth = depth(&statement);
            if depth > max_depth {
                return Err(SandboxError::TooDeep {
                    depth,
                    max: max_depth,
                });
            }
            let kind = kind(&statement)?;
            Ok((statement, kind))
        })
        .collect()
}

/// The statements rewritten by datafusion-postgres's compatibility parser, which turns
/// the catalog queries of psql, pgcli, DBeaver and Grafana into SQL DataFusion can plan.
///
/// Its rules rewrite the parsed statements; before them, it replaces token sequences of
/// a fixed list of client queries with stand-ins. A stand-in for a whole statement is an
/// empty `SELECT NULL::… WHERE false`, for catalog queries about what the lake has none
/// of (row policies, statistics objects, publications, foreign keys, composite types):
/// those are kept. A stand-in for part of a statement changes what it asks — Grafana's
/// search-path subquery became `''`, so its table and column lists came back empty
/// without an error — so a statement a stand-in changed otherwise is taken with the
/// rules alone, and plans, or fails with an error, on its own terms. (The text parsed
/// before; where a stand-in leaves something that does not, such as that subquery sent
/// alone, the rules alone apply too.)
fn compatible(statements: Vec<Statement>, text: &str) -> Vec<Statement> {
    let parser = PostgresCompatibilityParser::new();
    let by_rules: Vec<Statement> = statements.into_iter().map(|s| parser.rewrite(s)).collect();
    let stood_in = match parser.parse(text) {
        Ok(s) if s.len() == by_rules.len() => s,
        _ => return by_rules,
    };
    stood_in
        .into_iter()
        .zip(by_rules)
        .map(|(stood_in, by_rules)| {
            if is_empty_stand_in(&stood_in) && stood_in.to_string() != by_rules.to_string() {
                stood_in
            } else {
                by_rules
            }
        })
        .collect()
}

/// Whether a statement is one of the compatibility parser's whole-statement stand-ins:
/// a `SELECT` of no table whose condition is `false`.
fn is_empty_stand_in(statement: &Statement) -> bool {
    use datafusion::sql::sqlparser::ast::Value;
    let Statement::Query(q) = statement else {
        return false;
    };
    let SetExpr::Select(s) = q.body.as_ref() else {
        return false;
    };
    q.with.is_none()
        && s.from.is_empty()
        && matches!(&s.selection, Some(Expr::Value(v)) if v.value == Value::Boolean(false))
}

/// Scalar subqueries that make up a whole select-list item and read the lake, not the
/// catalog (`SELECT c.id, (SELECT count(*) FROM events e WHERE e.conversation_id = c.id)
/// FROM …`), put in parentheses. The compatibility parser replaces such an item with NULL
/// when it takes it for correlated (any column qualified by other than an alias of the
/// subquery, or a parameter), which suits the catalog queries it was written for but
/// would answer an analyst's query with NULLs where the rows have values. In parentheses
/// it reaches DataFusion, which decorrelates it or refuses it with an error. Whether any
/// was put in parentheses.
fn keep_lake_subqueries(statements: &mut [Statement]) -> bool {
    use datafusion::sql::sqlparser::ast::{SelectItem, VisitMut, VisitorMut, visit_relations};
    fn reads_catalog(q: &Query) -> bool {
        visit_relations(q, |name| {
            let n = name.to_string().to_lowercase();
            let last = n.rsplit('.').next().unwrap_or(&n);
            if n.starts_with("pg_catalog.")
                || n.starts_with("information_schema.")
                || last.starts_with("pg_")
            {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .is_break()
    }
    struct Keep(bool);
    impl VisitorMut for Keep {
        type Break = ();
        fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
            if let SetExpr::Select(select) = query.body.as_mut() {
                for item in &mut select.projection {
                    if let SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } =
                        item
                        && let Expr::Subquery(q) = e
                        && !reads_catalog(q)
                    {
                        *e = Expr::Nested(Box::new(e.clone()));
                        self.0 = true;
                    }
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut keep = Keep(false);
    for s in statements {
        let _ = s.visit(&mut keep);
    }
    keep.0
}

/// Applies `rewrite` to every expression of `statements`, innermost first; `rewrite` says
/// whether it changed the expression. Whether any changed.
fn rewrite_exprs(statements: &mut [Statement], rewrite: impl FnMut(&mut Expr) -> bool) -> bool {
    use datafusion::sql::sqlparser::ast::{VisitMut, VisitorMut};
    struct Each<F>(F, bool);
    impl<F: FnMut(&mut Expr) -> bool> VisitorMut for Each<F> {
        type Break = ();
        fn post_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
            self.1 |= (self.0)(e);
            ControlFlow::Continue(())
        }
    }
    let mut each = Each(rewrite, false);
    for s in statements {
        let _ = s.visit(&mut each);
    }
    each.1
}

/// `x = ANY (SELECT …)` as `x IN (SELECT …)`, and `x <> ALL (SELECT …)` as `x NOT IN
/// (SELECT …)`: the same test, NULLs included. The compatibility parser takes the right
/// side of `= ANY` and `<> ALL` for an array and calls `array_contains` on the subquery,
/// which cannot plan. Whether any was rewritten.
fn subquery_memberships(statements: &mut [Statement]) -> bool {
    use datafusion::sql::sqlparser::ast::BinaryOperator;
    rewrite_exprs(statements, |e| {
        let (left, right, negated) = match e {
            Expr::AnyOp {
                left,
                compare_op: BinaryOperator::Eq,
                right,
                ..
            } => (left, right, false),
            Expr::AllOp {
                left,
                compare_op: BinaryOperator::NotEq,
                right,
            } => (left, right, true),
            _ => return false,
        };
        let Expr::Subquery(q) = right.as_ref() else {
            return false;
        };
        *e = Expr::InSubquery {
            expr: left.clone(),
            subquery: q.clone(),
            negated,
        };
        true
    })
}

/// `'schema.function'::regproc` compared with a `regproc` column of the catalog, as
/// PgJDBC does (`typinput = 'pg_catalog.array_in'::regproc`): those columns hold function
/// names here, so the literal becomes the bare name. Whether any statement had one.
fn regproc_names(statements: &mut [Statement]) -> bool {
    use datafusion::sql::sqlparser::ast::Value;
    rewrite_exprs(statements, |e| {
        if let Expr::Cast {
            expr, data_type, ..
        } = e
            && matches!(
                data_type.to_string().to_lowercase().as_str(),
                "regproc" | "pg_catalog.regproc"
            )
            && let Expr::Value(v) = expr.as_ref()
            && let Value::SingleQuotedString(name) = &v.value
        {
            let bare = name.rsplit('.').next().unwrap_or(name).to_owned();
            *e = Expr::Value(Value::SingleQuotedString(bare).into());
            return true;
        }
        false
    })
}

fn check_on_this_thread(
    sql: &str,
    dialect: SqlDialect,
    max_depth: usize,
) -> Result<(DFStatement, Kind), SandboxError> {
    let generic = GenericDialect {};
    let postgres = PostgreSqlDialect {};
    let d: &dyn Dialect = match dialect {
        SqlDialect::Generic => &generic,
        SqlDialect::Postgres => &postgres,
    };
    let mut statements = DFParserBuilder::new(sql)
        .with_dialect(d)
        .with_recursion_limit(max_depth.max(8))
        .build()
        .and_then(|mut p| p.parse_statements())
        .map_err(|e| SandboxError::Parse(e.strip_backtrace()))?;
    let statement = match statements.len() {
        0 => {
            return Err(SandboxError::Parse(
                "the body holds no SQL statement".into(),
            ));
        }
        1 => statements
            .pop_front()
            .unwrap_or_else(|| unreachable!("one statement")),
        n => return Err(SandboxError::MultipleStatements(n)),
    };
    let depth = df_depth(&statement);
    if depth > max_depth {
        return Err(SandboxError::TooDeep {
            depth,
            max: max_depth,
        });
    }
    let kind = df_kind(&statement)?;
    Ok((statement, kind))
}

fn df_depth(statement: &DFStatement) -> usize {
    match statement {
        DFStatement::Statement(s) => depth(s),
        DFStatement::Explain(e) => df_depth(&e.statement),
        _ => 0,
    }
}

fn df_kind(statement: &DFStatement) -> Result<Kind, SandboxError> {
    match statement {
        DFStatement::Statement(s) => kind(s),
        DFStatement::Explain(e) => match df_kind(&e.statement)? {
            Kind::Query => Ok(Kind::Query),
            _ => Err(SandboxError::NotAllowed(
                "EXPLAIN of anything but a query".into(),
            )),
        },
        DFStatement::CreateExternalTable(_) => {
            Err(SandboxError::NotAllowed("CREATE EXTERNAL TABLE".into()))
        }
        DFStatement::CopyTo(_) => Err(SandboxError::NotAllowed("COPY".into())),
        DFStatement::Reset(_) => Err(SandboxError::NotAllowed("RESET".into())),
    }
}

/// How deeply expressions and queries nest in the statement.
pub fn depth(statement: &Statement) -> usize {
    struct Depth {
        now: usize,
        max: usize,
    }
    impl Visitor for Depth {
        type Break = ();
        fn pre_visit_expr(&mut self, _: &Expr) -> ControlFlow<()> {
            self.now += 1;
            self.max = self.max.max(self.now);
            ControlFlow::Continue(())
        }
        fn post_visit_expr(&mut self, _: &Expr) -> ControlFlow<()> {
            self.now -= 1;
            ControlFlow::Continue(())
        }
        fn pre_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
            self.now += 1;
            self.max = self.max.max(self.now);
            ControlFlow::Continue(())
        }
        fn post_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
            self.now -= 1;
            ControlFlow::Continue(())
        }
    }
    let mut v = Depth { now: 0, max: 0 };
    let _ = statement.visit(&mut v);
    v.max
}

/// Whether the statement may run, and as what.
pub fn kind(statement: &Statement) -> Result<Kind, SandboxError> {
    let refuse = |what: &str| Err(SandboxError::NotAllowed(what.to_owned()));
    match statement {
        Statement::Query(q) => {
            if let SetExpr::Select(s) = q.body.as_ref()
                && s.into.is_some()
            {
                return refuse("SELECT … INTO");
            }
            Ok(Kind::Query)
        }
        Statement::Explain { statement, .. } => match statement.as_ref() {
            Statement::Query(_) => Ok(Kind::Query),
            _ => refuse("EXPLAIN of anything but a query"),
        },
        Statement::Set(set) => match set {
            Set::SingleAssignment {
                variable, values, ..
            } => {
                let name = variable.to_string().to_lowercase();
                let literal = values.iter().all(|v| {
                    matches!(
                        v,
                        Expr::Value(_) | Expr::Identifier(_) | Expr::UnaryOp { .. }
                    )
                });
                if CLIENT_SETTINGS.contains(&name.as_str()) && literal {
                    Ok(Kind::Session)
                } else {
                    refuse(&format!(
                        "SET {name} (only client display settings such as application_name or DateStyle may be set)"
                    ))
                }
            }
            Set::SetTimeZone { .. }
            | Set::SetNames { .. }
            | Set::SetNamesDefault {}
            | Set::SetTransaction { .. } => Ok(Kind::Session),
            _ => refuse("this SET statement"),
        },
        Statement::ShowVariable { .. }
        | Statement::ShowStatus { .. }
        | Statement::StartTransaction { .. }
        | Statement::Commit { .. }
        | Statement::Rollback { .. }
        | Statement::Savepoint { .. }
        | Statement::ReleaseSavepoint { .. }
        | Statement::Discard { .. }
        | Statement::Deallocate { .. }
        // asyncpg's pool resets a connection with `UNLISTEN *` and `RESET ALL`: the
        // session never listens, and only client settings can have been set.
        | Statement::UNLISTEN { .. }
        | Statement::Reset(_) => Ok(Kind::Session),
        Statement::Fetch { into: Some(_), .. } => refuse("FETCH … INTO"),
        Statement::Fetch { direction, .. } => match direction {
            FetchDirection::Count { .. }
            | FetchDirection::Next
            | FetchDirection::All
            | FetchDirection::Forward { .. }
            | FetchDirection::ForwardAll => Ok(Kind::Cursor),
            _ => refuse("FETCH in any direction but forward (cursors are NO SCROLL)"),
        },
        Statement::Close { .. } => Ok(Kind::Cursor),
        // psql's FETCH_COUNT mode and psycopg's named cursors: a cursor over a query, which
        // must itself be one that may run.
        Statement::Declare { stmts } => {
            for d in stmts {
                match (&d.declare_type, &d.for_query) {
                    (Some(DeclareType::Cursor), Some(q)) => {
                        kind(&Statement::Query(q.clone()))?;
                    }
                    _ => return refuse("DECLARE of anything but a cursor over a query"),
                }
            }
            Ok(Kind::Cursor)
        }
        Statement::Copy {
            source, to, target, ..
        } => {
            if !to {
                return refuse("COPY … FROM");
            }
            if !matches!(target, CopyTarget::Stdout) {
                return refuse("COPY … TO a file or program (COPY … TO STDOUT is allowed)");
            }
            if let CopySource::Query(q) = source {
                kind(&Statement::Query(q.clone()))?;
            }
            Ok(Kind::CopyOut)
        }
        Statement::CopyIntoSnowflake { .. } => refuse("COPY"),
        Statement::CreateTable { .. }
        | Statement::CreateView { .. }
        | Statement::CreateIndex { .. }
        | Statement::CreateSchema { .. }
        | Statement::CreateDatabase { .. }
        | Statement::CreateFunction { .. } => refuse("CREATE"),
        Statement::Insert { .. }
        | Statement::Update { .. }
        | Statement::Delete { .. }
        | Statement::Merge { .. }
        | Statement::Truncate { .. } => refuse("writing to a table"),
        Statement::Drop { .. } | Statement::AlterTable { .. } => refuse("DDL"),
        other => {
            let text = other.to_string();
            let word: String = text
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ");
            refuse(&word)
        }
    }
}

/// Every expression of the statement, in order (for tests and diagnostics).
pub fn expression_count(statement: &Statement) -> usize {
    let mut n = 0usize;
    let _ = visit_expressions(statement, |_| {
        n += 1;
        ControlFlow::<()>::Continue(())
    });
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits::default()
    }

    #[test]
    fn accepts_queries_and_client_session_statements() {
        let ok = [
            ("SELECT 1", Kind::Query),
            ("WITH x AS (SELECT 1 AS a) SELECT a FROM x", Kind::Query),
            ("EXPLAIN SELECT 1", Kind::Query),
            ("SET application_name = 'psql'", Kind::Session),
            ("SET extra_float_digits = 3", Kind::Session),
            ("SET TIME ZONE 'UTC'", Kind::Session),
            ("BEGIN", Kind::Session),
            ("SHOW server_version", Kind::Session),
        ];
        for (sql, want) in ok {
            let (_, kind) = check(sql, SqlDialect::Postgres, &limits())
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            assert_eq!(kind, want, "{sql}");
        }
    }

    #[test]
    fn refuses_writes_settings_and_several_statements() {
        let bad = [
            "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/etc/passwd'",
            "COPY (SELECT 1) TO '/tmp/x.csv'",
            "INSERT INTO events VALUES (1)",
            "DROP TABLE events",
            "SET datafusion.runtime.memory_limit = '100G'",
            "SET datafusion.execution.target_partitions = 64",
            "SELECT 1; SELECT 2",
            "CREATE VIEW v AS SELECT 1",
            "SELECT * INTO t2 FROM events",
        ];
        for sql in bad {
            assert!(
                check(sql, SqlDialect::Generic, &limits()).is_err(),
                "{sql} was accepted"
            );
        }
    }

    #[test]
    fn caps_length_and_depth_before_planning() {
        let long = format!("SELECT '{}'", "x".repeat(limits().max_sql_bytes));
        assert!(matches!(
            check(&long, SqlDialect::Generic, &limits()),
            Err(SandboxError::TooLong { .. })
        ));
        // A chain parses without recursion but is as deep as it is long.
        let chain = format!("SELECT {}1", "1+".repeat(20_000));
        assert!(matches!(
            check(&chain, SqlDialect::Generic, &limits()),
            Err(SandboxError::TooDeep { .. })
        ));
        let nested = format!("SELECT {}1{}", "(".repeat(5_000), ")".repeat(5_000));
        assert!(check(&nested, SqlDialect::Generic, &limits()).is_err());
        // An ordinary query is well inside the caps.
        let (s, _) = check(
            "SELECT team, count(*) FROM conversations WHERE team IN ('a','b') GROUP BY team",
            SqlDialect::Generic,
            &limits(),
        )
        .expect("ordinary query");
        let DFStatement::Statement(s) = s else {
            panic!("a plain statement")
        };
        assert!(depth(&s) < 10 && expression_count(&s) > 3);
    }

    #[test]
    fn lake_subqueries_in_the_select_list_reach_datafusion() {
        let script = |sql: &str| {
            check_script(sql, &limits())
                .unwrap()
                .into_iter()
                .map(|(s, _)| s.to_string())
                .collect::<Vec<_>>()
                .join(";")
        };
        let out = script(
            "SELECT x.kind, (SELECT count(*) FROM events e WHERE e.kind = x.kind) AS n FROM kinds x",
        );
        assert!(out.contains("((SELECT count(*) FROM events"), "{out}");
        let out = script("SELECT (SELECT count(*) FROM events WHERE events.kind = 'a') AS n");
        assert!(out.contains("((SELECT count(*) FROM events"), "{out}");
    }

    #[test]
    fn membership_in_a_subquery_is_in() {
        let (s, _) = check_script(
            "SELECT 1 WHERE 'a' = ANY (SELECT kind FROM events) AND 'b' <> ALL (SELECT kind FROM events)",
            &limits(),
        )
        .unwrap()
        .remove(0);
        assert_eq!(
            s.to_string(),
            "SELECT 1 WHERE 'a' IN (SELECT kind FROM events) AND 'b' NOT IN (SELECT kind FROM events)"
        );
    }

    /// Grafana's search-path subquery was replaced by `''` by one of datafusion-postgres's
    /// stand-ins, so `IN (…)` matched nothing and the table list came back empty.
    #[test]
    fn partial_stand_ins_do_not_change_a_query() {
        let sql = "SELECT table_name FROM information_schema.tables WHERE table_schema IN (\
                   SELECT CASE WHEN trim(s[i]) = '\"$user\"' THEN user ELSE trim(s[i]) END \
                   FROM generate_series(array_lower(string_to_array(current_setting('search_path'),','),1), \
                   array_upper(string_to_array(current_setting('search_path'),','),1)) as i, \
                   string_to_array(current_setting('search_path'),',') s)";
        let (s, _) = check_script(sql, &limits()).unwrap().remove(0);
        let out = s.to_string();
        assert!(out.contains("IN (SELECT CASE WHEN TRIM(s[i])"), "{out}");
        assert!(!out.contains("IN ('')"), "{out}");
        // A whole-statement stand-in (psql's row policies of `\d`, which the lake has
        // none of) is still an empty answer.
        let policies = "SELECT pol.polname, pol.polpermissive,
          CASE WHEN pol.polroles = '{0}' THEN NULL ELSE pg_catalog.array_to_string(array(select rolname from pg_catalog.pg_roles where oid = any (pol.polroles) order by 1),',') END,
          pg_catalog.pg_get_expr(pol.polqual, pol.polrelid),
          pg_catalog.pg_get_expr(pol.polwithcheck, pol.polrelid),
          CASE pol.polcmd
            WHEN 'r' THEN 'SELECT'
            WHEN 'a' THEN 'INSERT'
            WHEN 'w' THEN 'UPDATE'
            WHEN 'd' THEN 'DELETE'
            END AS cmd
        FROM pg_catalog.pg_policy pol
        WHERE pol.polrelid = '16469' ORDER BY 1;";
        let (s, _) = check_script(policies, &limits()).unwrap().remove(0);
        assert!(is_empty_stand_in(&s), "{s}");
        // The subquery alone, which the stand-in left as `''`, no statement at all.
        let alone = sql.split_once("IN (").unwrap().1.trim_end_matches(')');
        let (s, _) = check_script(alone, &limits()).unwrap().remove(0);
        assert!(
            s.to_string().starts_with("SELECT CASE WHEN TRIM(s[i])"),
            "{s}"
        );
    }
}
