//! The Postgres wire protocol over the analyst session (`serve --pg-listen`, `supportlake pg`).
//!
//! pgwire speaks the protocol; datafusion-postgres brings `pg_catalog`, its compatibility
//! rewrites of the catalog queries clients send, and arrow-pg's value encoders. The rest
//! is ours, so that every statement goes through the sandbox and answers as PostgreSQL
//! would:
//! - sign-in: any user name, database `supportlake`, the password is a read (or admin)
//!   token, compared in constant time; with no tokens configured any password is accepted
//!   and the listener must be on loopback;
//! - a simple `Query` may hold several statements, or none (empty or only comments); each
//!   passes the sandbox's checks ([`check_script`](super::check::check_script)) and runs
//!   in order, and the first error ends the message, as in PostgreSQL;
//! - queries are planned, verified read-only, given the result types clients read
//!   ([`pg_types`](super::pg_types)) and run under the timeout, row cap and query slots;
//! - the extended protocol (`Parse`/`Bind`/`Describe`/`Execute`) plans once, binds
//!   parameters, and honours `Execute`'s row limit (the portal is suspended and resumed);
//! - `DECLARE … CURSOR`, `FETCH`, `CLOSE`, and `COPY (query) TO STDOUT` are served under
//!   the same limits ([`pg_run`](super::pg_run));
//! - settings, `SHOW`, transactions and savepoints are the connection's own bookkeeping
//!   ([`pg_session`](super::pg_session)); nothing reaches the engine's settings.

use std::fmt::Debug;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    CloseCursor, CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, FetchDirection,
    Reset, Statement, Value,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser as SqlParser;
use datafusion_postgres::arrow_pg::datatypes::df::deserialize_parameters_with_server_types;
use datafusion_postgres::arrow_pg::datatypes::into_pg_type;
use datafusion_postgres::pgwire;
use futures::{Sink, SinkExt, StreamExt};
use pgwire::api::auth::{
    DefaultServerParameterProvider, StartupHandler, finish_authentication, protocol_negotiation,
    save_startup_parameters_to_metadata,
};
use pgwire::api::copy::send_copy_out_response;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{
    ExtendedQueryHandler, SimpleQueryHandler, send_execution_response, send_query_response,
    send_ready_for_query,
};
use pgwire::api::results::{
    CopyCsvOptions, CopyEncoder, CopyResponse, CopyTextOptions, DataRowEncoder,
    DescribePortalResponse, DescribeStatementResponse, FieldInfo, QueryResponse, Response,
    SendableRowStream, Tag,
};
use pgwire::api::stmt::{QueryParser, StoredStatement};
use pgwire::api::store::PortalStore;
use pgwire::api::{
    ClientInfo, ClientPortalStore, DEFAULT_NAME, METADATA_DATABASE, METADATA_USER,
    PgWireConnectionState, PgWireServerHandlers, Type,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::data::RowDescription;
use pgwire::messages::extendedquery::{Describe, Execute, TARGET_TYPE_BYTE_PORTAL};
use pgwire::messages::response::{EmptyQueryResponse, ErrorResponse, TransactionStatus};
use pgwire::messages::simplequery::Query;
use pgwire::messages::startup::{Authentication, ParameterStatus};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::types::format::FormatOptions;
use tokio::time::Instant;
use tracing::{info, warn};

use super::check::Kind;
use super::pg_run::{Cursor, CursorError, Cursors, Running, Slot};
use super::pg_session::{self, Savepoints};
use super::pg_types;
use super::{Analyst, Flavor, SandboxError, read_only};
use crate::auth::{Role, Tokens};

/// The database name clients connect to.
pub const DATABASE: &str = "supportlake";

fn user_error(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_owned(),
        code.to_owned(),
        message.into(),
    )))
}

fn sandbox_error(e: SandboxError) -> PgWireError {
    let sqlstate = match &e {
        SandboxError::NotAllowed(_) => "42501",
        SandboxError::TooLong { .. } | SandboxError::TooDeep { .. } => "54001",
        SandboxError::Parse(_) | SandboxError::MultipleStatements(_) => "42601",
        SandboxError::Memory(_) => "53200",
        SandboxError::Timeout(_) => "57014",
        SandboxError::TooManyRows(_) | SandboxError::TooManyBytes(_) => "54000",
        SandboxError::Busy(_) => "53300",
        // The classes clients tell apart: a missing table, column or function.
        SandboxError::Plan(m) if m.contains("not found") && m.contains("table") => "42P01",
        SandboxError::Plan(m) if m.contains("No field named") => "42703",
        SandboxError::Plan(m) if m.contains("Invalid function") => "42883",
        SandboxError::Plan(_) => "XX000",
        // data_corrupted
        SandboxError::Damaged(_) => "XX001",
        SandboxError::Internal(_) => "XX000",
    };
    user_error(sqlstate, e.to_string())
}

fn cursor_error(e: CursorError) -> PgWireError {
    match e {
        CursorError::Missing(_) => user_error("34000", e.to_string()),
        CursorError::Exists(_) => user_error("42P03", e.to_string()),
        CursorError::Query(e) => sandbox_error(e),
    }
}

/// A checked statement, planned when it is a query: what a prepared statement of the
/// extended protocol holds between `Parse` and `Execute`.
#[derive(Debug, Clone)]
pub struct Prepared {
    statement: Statement,
    kind: Kind,
    action: Action,
    /// The session it was planned in; a newer one (the lake changed) plans it again.
    session: Weak<SessionContext>,
}

#[derive(Debug, Clone)]
enum Action {
    Query(LogicalPlan),
    Set,
    Show(Vec<String>),
    Transaction,
    Discard,
    Deallocate(Option<String>),
    Unlisten,
    Reset(Option<String>),
    Declare {
        name: String,
        hold: bool,
        plan: LogicalPlan,
    },
    Fetch {
        name: String,
        count: Option<usize>,
    },
    Close(Option<String>),
    Copy {
        plan: LogicalPlan,
        options: CopyOptions,
    },
}

/// The options of `COPY … TO STDOUT` this server writes.
#[derive(Debug, Clone, Default)]
struct CopyOptions {
    csv: bool,
    binary: bool,
    header: bool,
    delimiter: Option<char>,
    null: Option<String>,
    quote: Option<char>,
    escape: Option<char>,
}

impl CopyOptions {
    fn read(options: &[CopyOption], legacy: &[CopyLegacyOption]) -> PgWireResult<CopyOptions> {
        let unsupported = |o: &dyn std::fmt::Display| {
            user_error("0A000", format!("COPY option {o} is not supported"))
        };
        let mut c = CopyOptions::default();
        for o in options {
            match o {
                CopyOption::Format(f) => match f.value.to_lowercase().as_str() {
                    "text" => {}
                    "csv" => c.csv = true,
                    "binary" => c.binary = true,
                    other => {
                        return Err(user_error(
                            "22023",
                            format!("COPY format \"{other}\" not recognized"),
                        ));
                    }
                },
                CopyOption::Delimiter(d) => c.delimiter = Some(*d),
                CopyOption::Null(n) => c.null = Some(n.clone()),
                CopyOption::Header(h) => c.header = *h,
                CopyOption::Quote(q) => c.quote = Some(*q),
                CopyOption::Escape(e) => c.escape = Some(*e),
                CopyOption::Encoding(e)
                    if e.eq_ignore_ascii_case("utf8") || e.eq_ignore_ascii_case("utf-8") => {}
                other => return Err(unsupported(other)),
            }
        }
        for o in legacy {
            match o {
                CopyLegacyOption::Binary => c.binary = true,
                CopyLegacyOption::Delimiter(d) => c.delimiter = Some(*d),
                CopyLegacyOption::Null(n) => c.null = Some(n.clone()),
                CopyLegacyOption::Header => c.header = true,
                CopyLegacyOption::Csv(csv) => {
                    c.csv = true;
                    for o in csv {
                        match o {
                            CopyLegacyCsvOption::Header => c.header = true,
                            CopyLegacyCsvOption::Quote(q) => c.quote = Some(*q),
                            CopyLegacyCsvOption::Escape(e) => c.escape = Some(*e),
                            other => return Err(unsupported(other)),
                        }
                    }
                }
                other => return Err(unsupported(other)),
            }
        }
        if c.header && !c.csv {
            return Err(user_error(
                "0A000",
                "COPY HEADER available only in CSV mode",
            ));
        }
        Ok(c)
    }
}

/// A number of a `FETCH`, as its literal reads.
fn fetch_count(v: &Value) -> PgWireResult<usize> {
    match v {
        Value::Number(n, _) => n
            .parse::<usize>()
            .map_err(|_| user_error("22023", format!("FETCH count {n} is not a row count"))),
        other => Err(user_error(
            "42601",
            format!("FETCH count {other} is not a number"),
        )),
    }
}

/// The connection's own state, kept in pgwire's session extensions.
#[derive(Default)]
struct Connection {
    cursors: Cursors,
    savepoints: Savepoints,
    /// The status a transaction statement of the extended protocol left, applied after
    /// pgwire's `Execute` handling (which restores the status it started with).
    transition: std::sync::Mutex<Option<TransactionStatus>>,
}

fn connection<C: ClientInfo + ?Sized>(client: &C) -> Arc<Connection> {
    client
        .session_extensions()
        .get_or_insert_with(Connection::default)
}

/// The user name the client signed in with (the startup message's `user`), which
/// `current_user` and `session_user` answer.
fn session_user<C: ClientInfo + ?Sized>(client: &C) -> String {
    client
        .metadata()
        .get(METADATA_USER)
        .cloned()
        .unwrap_or_default()
}

fn format_options<C: ClientInfo + ?Sized>(client: &C) -> Arc<FormatOptions> {
    Arc::new(FormatOptions::from_client_metadata(client.metadata()))
}

/// The parameter types a plan infers, in `$1, $2, …` order (unknown where it cannot tell).
fn parameter_types(plan: &LogicalPlan) -> PgWireResult<Vec<Type>> {
    let types = plan
        .get_parameter_types()
        .map_err(|e| sandbox_error(SandboxError::Plan(e.strip_backtrace())))?;
    let mut ordered: Vec<(u32, Option<arrow::datatypes::DataType>)> = types
        .into_iter()
        .map(|(id, t)| (id.trim_start_matches('$').parse().unwrap_or(u32::MAX), t))
        .collect();
    ordered.sort_by_key(|(n, _)| *n);
    ordered
        .into_iter()
        .map(|(_, t)| match t {
            Some(t) => into_pg_type(&t),
            None => Ok(Type::UNKNOWN),
        })
        .collect()
}

/// The query handlers: the sandbox around DataFusion, for both protocols.
pub struct Sandboxed {
    analyst: Arc<Analyst>,
}

/// The extended protocol's `Parse`: the sandbox's checks, then the plan.
pub struct SandboxedParser {
    analyst: Arc<Analyst>,
}

impl Sandboxed {
    async fn session(&self) -> PgWireResult<Arc<SessionContext>> {
        self.analyst
            .context(Flavor::Postgres)
            .await
            .map_err(sandbox_error)
    }

    /// A query statement planned for `user`'s connection, verified read-only, and shaped
    /// for the wire.
    async fn plan(
        &self,
        ctx: &SessionContext,
        mut statement: Statement,
        user: &str,
    ) -> PgWireResult<LogicalPlan> {
        let timeout = self.analyst.limits().timeout;
        let df = |e| sandbox_error(SandboxError::from_datafusion(e, timeout));
        super::pg_rewrite::session_user(&mut statement, user);
        let plan = ctx
            .state()
            .statement_to_plan(DFStatement::Statement(Box::new(statement)))
            .await
            .map_err(df)?;
        read_only().verify_plan(&plan).map_err(|e| {
            sandbox_error(SandboxError::NotAllowed(format!(
                "this plan ({})",
                e.strip_backtrace()
            )))
        })?;
        pg_types::shape(plan).map_err(df)
    }

    /// What a checked statement will do, planned in `ctx` for `user`'s connection when it
    /// runs a query.
    async fn prepare(
        &self,
        ctx: &Arc<SessionContext>,
        statement: Statement,
        kind: Kind,
        user: &str,
    ) -> PgWireResult<Prepared> {
        let action = match (&statement, kind) {
            (_, Kind::Query) => Action::Query(self.plan(ctx, statement.clone(), user).await?),
            (Statement::Set(_), Kind::Session) => Action::Set,
            (Statement::ShowVariable { variable }, Kind::Session) => {
                Action::Show(variable.iter().map(|i| i.value.clone()).collect())
            }
            (Statement::Discard { .. }, Kind::Session) => Action::Discard,
            (Statement::UNLISTEN { .. }, Kind::Session) => Action::Unlisten,
            (Statement::Reset(r), Kind::Session) => Action::Reset(match &r.reset {
                Reset::ALL => None,
                Reset::ConfigurationParameter(name) => Some(name.to_string().to_lowercase()),
            }),
            (Statement::Deallocate { name, .. }, Kind::Session) => Action::Deallocate(
                (!name.value.eq_ignore_ascii_case("all")).then(|| name.value.clone()),
            ),
            (
                Statement::StartTransaction { .. }
                | Statement::Commit { .. }
                | Statement::Rollback { .. }
                | Statement::Savepoint { .. }
                | Statement::ReleaseSavepoint { .. },
                Kind::Session,
            ) => Action::Transaction,
            (Statement::Declare { stmts }, Kind::Cursor) => {
                let [d] = stmts.as_slice() else {
                    return Err(user_error("0A000", "declare one cursor at a time"));
                };
                let (Some(name), Some(query)) = (d.names.first(), &d.for_query) else {
                    return Err(user_error(
                        "42601",
                        "DECLARE needs a cursor name and a query",
                    ));
                };
                Action::Declare {
                    name: name.value.clone(),
                    hold: d.hold == Some(true),
                    plan: self
                        .plan(ctx, Statement::Query(query.clone()), user)
                        .await?,
                }
            }
            (
                Statement::Fetch {
                    name, direction, ..
                },
                Kind::Cursor,
            ) => {
                let count = match direction {
                    FetchDirection::Next | FetchDirection::Forward { limit: None } => Some(1),
                    FetchDirection::Count { limit }
                    | FetchDirection::Forward { limit: Some(limit) } => {
                        Some(fetch_count(&limit.value)?)
                    }
                    _ => None,
                };
                Action::Fetch {
                    name: name.value.clone(),
                    count,
                }
            }
            (Statement::Close { cursor }, Kind::Cursor) => Action::Close(match cursor {
                CloseCursor::All => None,
                CloseCursor::Specific { name } => Some(name.value.clone()),
            }),
            (
                Statement::Copy {
                    source,
                    options,
                    legacy_options,
                    ..
                },
                Kind::CopyOut,
            ) => {
                let options = CopyOptions::read(options, legacy_options)?;
                let query = match source {
                    CopySource::Query(q) => Statement::Query(q.clone()),
                    CopySource::Table {
                        table_name,
                        columns,
                    } => {
                        let columns = if columns.is_empty() {
                            "*".to_owned()
                        } else {
                            columns
                                .iter()
                                .map(|c| c.to_string())
                                .collect::<Vec<_>>()
                                .join(", ")
                        };
                        let sql = format!("SELECT {columns} FROM {table_name}");
                        let mut parsed = SqlParser::parse_sql(&PostgreSqlDialect {}, &sql)
                            .map_err(|e| sandbox_error(SandboxError::Parse(e.to_string())))?;
                        match parsed.pop() {
                            Some(q) if parsed.is_empty() => q,
                            _ => return Err(sandbox_error(SandboxError::Parse(sql))),
                        }
                    }
                };
                Action::Copy {
                    plan: self.plan(ctx, query, user).await?,
                    options,
                }
            }
            (other, _) => {
                return Err(sandbox_error(SandboxError::NotAllowed(
                    other
                        .to_string()
                        .split_whitespace()
                        .take(2)
                        .collect::<Vec<_>>()
                        .join(" "),
                )));
            }
        };
        Ok(Prepared {
            statement,
            kind,
            action,
            session: Arc::downgrade(ctx),
        })
    }

    /// `prepared` as planned in the current session (planned again, for `user`'s
    /// connection, if the lake changed since).
    async fn current(
        &self,
        prepared: &Prepared,
        user: &str,
    ) -> PgWireResult<(Arc<SessionContext>, Prepared)> {
        let ctx = self.session().await?;
        if prepared
            .session
            .upgrade()
            .is_some_and(|s| Arc::ptr_eq(&s, &ctx))
        {
            return Ok((ctx, prepared.clone()));
        }
        let again = self
            .prepare(&ctx, prepared.statement.clone(), prepared.kind, user)
            .await?;
        Ok((ctx, again))
    }

    /// An error of a running query, or the damaged lake files behind it.
    async fn query_error(&self, e: SandboxError) -> PgWireError {
        match self.analyst.damage_behind(&e).await {
            Some(d) => sandbox_error(d),
            None => sandbox_error(e),
        }
    }

    /// Starts a query: a slot, its deadline (the client's `statement_timeout` may shorten
    /// the sandbox's), the physical plan.
    async fn start<C: ClientInfo + ?Sized>(
        &self,
        client: &C,
        ctx: &SessionContext,
        plan: LogicalPlan,
    ) -> PgWireResult<Running> {
        let limit = self.analyst.limits().timeout;
        let timeout = pg_session::statement_timeout(client).map_or(limit, |t| t.min(limit));
        let permit = self.analyst.permit().await.map_err(sandbox_error)?;
        let deadline = Instant::now() + timeout;
        let slot = Slot::new(permit, deadline);
        let started = tokio::time::timeout_at(deadline, async {
            let frame = ctx.execute_logical_plan(plan).await?;
            frame.execute_stream().await
        })
        .await;
        match started {
            Err(_) => Err(sandbox_error(SandboxError::Timeout(timeout))),
            Ok(Err(e)) => Err(self
                .query_error(SandboxError::from_datafusion(e, timeout))
                .await),
            Ok(Ok(stream)) => Ok(Running::new(stream, deadline, timeout, slot)),
        }
    }

    /// The data rows of a running query, under the row cap.
    fn rows(&self, run: Running, fields: Arc<Vec<FieldInfo>>) -> SendableRowStream {
        let this = Sandboxed {
            analyst: Arc::clone(&self.analyst),
        };
        let this = Arc::new(this);
        let max_rows = self.analyst.limits().max_rows;
        let rows = run
            .into_stream(max_rows)
            .then(move |batch| {
                let fields = Arc::clone(&fields);
                let this = Arc::clone(&this);
                async move {
                    match batch {
                        Ok(b) => pg_types::data_rows(&fields, &b),
                        Err(e) => vec![Err(this.query_error(e).await)],
                    }
                }
            })
            .flat_map(futures::stream::iter);
        Box::pin(rows)
    }

    /// The rows of `COPY … TO STDOUT`.
    fn copy_out(
        &self,
        run: Running,
        fields: Arc<Vec<FieldInfo>>,
        options: &CopyOptions,
    ) -> CopyResponse {
        let columns = fields.len();
        let mut header = None;
        let mut encoder = if options.binary {
            CopyEncoder::new_binary(Arc::clone(&fields))
        } else if options.csv {
            let mut csv = CopyCsvOptions::default();
            if let Some(d) = options.delimiter {
                csv.delimiter = d.to_string().into();
            }
            if let Some(q) = options.quote {
                csv.quote = q.to_string().into();
            }
            if let Some(e) = options.escape {
                csv.escape = e.to_string().into();
            }
            if let Some(n) = &options.null {
                csv.null_string = n.as_str().into();
            }
            if options.header {
                let d = options.delimiter.unwrap_or(',');
                let q = options.quote.unwrap_or('"');
                let names: Vec<String> = fields
                    .iter()
                    .map(|f| {
                        let n = f.name();
                        if n.contains([d, q, '\n', '\r']) {
                            format!("{q}{}{q}", n.replace(q, &format!("{q}{q}")))
                        } else {
                            n.to_owned()
                        }
                    })
                    .collect();
                header = Some(format!("{}\n", names.join(&d.to_string())));
            }
            CopyEncoder::new_csv(Arc::clone(&fields), csv)
        } else {
            let mut text = CopyTextOptions::default();
            if let Some(d) = options.delimiter {
                text.delimiter = d.to_string().into();
            }
            if let Some(n) = &options.null {
                text.null_string = n.as_str().into();
            }
            CopyEncoder::new_text(Arc::clone(&fields), text)
        };
        let this = Arc::new(Sandboxed {
            analyst: Arc::clone(&self.analyst),
        });
        let max_rows = self.analyst.limits().max_rows;
        let head = futures::stream::iter(
            header.map(|h| Ok(pgwire::messages::copy::CopyData::new(bytes::Bytes::from(h)))),
        );
        let lines = run
            .into_stream(max_rows)
            .then(move |batch| {
                let this = Arc::clone(&this);
                let fields = Arc::clone(&fields);
                let result = batch.map(|b| pg_types::copy_lines(&mut encoder, &fields, &b));
                async move {
                    match result {
                        Ok(Ok(lines)) => lines.into_iter().map(Ok).collect(),
                        Ok(Err(e)) => vec![Err(e)],
                        Err(e) => vec![Err(this.query_error(e).await)],
                    }
                }
            })
            .flat_map(futures::stream::iter);
        CopyResponse::new(
            if options.binary { 1 } else { 0 },
            columns,
            head.chain(lines),
        )
    }

    /// Runs a prepared statement for the client; results in `format`.
    async fn execute<C>(
        &self,
        client: &mut C,
        ctx: &SessionContext,
        prepared: Prepared,
        format: &Format,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let status = client.transaction_status();
        if status == TransactionStatus::Error
            && !pg_session::allowed_when_failed(&prepared.statement)
        {
            return Err(pg_session::aborted());
        }
        let conn = connection(client);
        let options = format_options(client);
        let max_rows = self.analyst.limits().max_rows;
        match prepared.action {
            Action::Query(plan) => {
                let fields = Arc::new(pg_types::fields(plan.schema().as_arrow(), format, options)?);
                let run = self.start(client, ctx, plan).await?;
                let rows = self.rows(run, Arc::clone(&fields));
                Ok(Response::Query(QueryResponse::new(fields, rows)))
            }
            Action::Set => {
                if let Some((name, value)) = pg_session::set(client, &prepared.statement)? {
                    client
                        .feed(PgWireBackendMessage::ParameterStatus(ParameterStatus::new(
                            name, value,
                        )))
                        .await?;
                }
                Ok(Response::Execution(Tag::new("SET")))
            }
            Action::Show(words) => {
                let (title, value) = pg_session::show(client, &words)?;
                let fields = Arc::new(vec![FieldInfo::new(
                    title,
                    None,
                    None,
                    Type::TEXT,
                    format.format_for(0),
                )]);
                let mut encoder = DataRowEncoder::new(Arc::clone(&fields));
                encoder.encode_field(&value)?;
                let row = encoder.take_row();
                Ok(Response::Query(QueryResponse::new(
                    fields,
                    futures::stream::iter([Ok(row)]),
                )))
            }
            Action::Transaction => {
                let Some(t) = pg_session::transaction(
                    &prepared.statement,
                    status,
                    &conn.savepoints,
                    &conn.cursors,
                )
                .await
                else {
                    return Err(user_error("XX000", "not a transaction statement"));
                };
                let t = t?;
                client.set_transaction_status(t.status);
                *conn.transition.lock().unwrap_or_else(|e| e.into_inner()) = Some(t.status);
                Ok(Response::Execution(Tag::new(t.tag)))
            }
            Action::Discard => {
                conn.cursors.close(None).await.map_err(cursor_error)?;
                Ok(Response::Execution(Tag::new("DISCARD ALL")))
            }
            Action::Unlisten => Ok(Response::Execution(Tag::new("UNLISTEN"))),
            Action::Reset(name) => {
                pg_session::reset(client, name.as_deref());
                Ok(Response::Execution(Tag::new("RESET")))
            }
            Action::Deallocate(name) => Ok(Response::Execution(Tag::new(match name {
                Some(n) => {
                    client.portal_store().rm_statement(&n);
                    "DEALLOCATE"
                }
                None => "DEALLOCATE ALL",
            }))),
            Action::Declare { name, hold, plan } => {
                if !hold && status == TransactionStatus::Idle {
                    return Err(user_error(
                        "25P01",
                        "DECLARE CURSOR can only be used in transaction blocks",
                    ));
                }
                let run = self.start(client, ctx, plan).await?;
                conn.cursors
                    .declare(&name, Cursor::new(run, hold, max_rows))
                    .await
                    .map_err(cursor_error)?;
                Ok(Response::Execution(Tag::new("DECLARE CURSOR")))
            }
            Action::Fetch { name, count } => {
                let (schema, batches) = match conn.cursors.fetch(&name, count).await {
                    Ok(r) => r,
                    Err(CursorError::Query(e)) => return Err(self.query_error(e).await),
                    Err(e) => return Err(cursor_error(e)),
                };
                let fields = Arc::new(pg_types::fields(&schema, format, options)?);
                let rows: Vec<_> = batches
                    .iter()
                    .flat_map(|b| pg_types::data_rows(&fields, b))
                    .collect();
                let mut response = QueryResponse::new(fields, futures::stream::iter(rows));
                response.set_command_tag("FETCH");
                Ok(Response::Query(response))
            }
            Action::Close(name) => {
                conn.cursors
                    .close(name.as_deref())
                    .await
                    .map_err(cursor_error)?;
                Ok(Response::Execution(Tag::new("CLOSE CURSOR")))
            }
            Action::Copy {
                plan,
                options: copy,
            } => {
                let format = if copy.binary {
                    Format::UnifiedBinary
                } else {
                    Format::UnifiedText
                };
                let fields = Arc::new(pg_types::fields(
                    plan.schema().as_arrow(),
                    &format,
                    options,
                )?);
                let run = self.start(client, ctx, plan).await?;
                Ok(Response::CopyOut(self.copy_out(run, fields, &copy)))
            }
        }
    }

    /// The result columns a prepared statement will have (none for a command).
    async fn describe<C: ClientInfo + ?Sized>(
        &self,
        client: &C,
        prepared: &Prepared,
        format: &Format,
    ) -> PgWireResult<Vec<FieldInfo>> {
        let options = format_options(client);
        match &prepared.action {
            Action::Query(plan) => pg_types::fields(plan.schema().as_arrow(), format, options),
            Action::Show(words) => {
                let (title, _) = pg_session::show(client, words)?;
                Ok(vec![FieldInfo::new(
                    title,
                    None,
                    None,
                    Type::TEXT,
                    format.format_for(0),
                )])
            }
            Action::Fetch { name, .. } => match connection(client).cursors.schema(name).await {
                Some(schema) => pg_types::fields(&schema, format, options),
                None => Err(cursor_error(CursorError::Missing(name.clone()))),
            },
            _ => Ok(Vec::new()),
        }
    }
}

/// Sends one statement's answer of a simple query.
async fn send_simple<C>(client: &mut C, response: Response) -> PgWireResult<()>
where
    C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    match response {
        Response::Query(q) => send_query_response(client, q, true).await,
        Response::Execution(tag)
        | Response::TransactionStart(tag)
        | Response::TransactionEnd(tag) => send_execution_response(client, tag).await,
        Response::EmptyQuery => {
            client
                .feed(PgWireBackendMessage::EmptyQueryResponse(
                    EmptyQueryResponse::new(),
                ))
                .await?;
            Ok(())
        }
        Response::CopyOut(copy) => send_copy_out_response(client, copy).await,
        Response::Error(e) => Err(PgWireError::UserError(e)),
        Response::CopyIn(_) | Response::CopyBoth(_) => {
            Err(user_error("0A000", "COPY FROM is not supported"))
        }
    }
}

#[async_trait]
impl SimpleQueryHandler for Sandboxed {
    /// A `Query` message: its statements one after the other, each answered as soon as it
    /// ran; the first error ends the message (pgwire then sends it and `ReadyForQuery`).
    async fn on_query<C>(&self, client: &mut C, query: Query) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if !matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
            return Err(PgWireError::NotReadyForQuery);
        }
        client.set_state(PgWireConnectionState::QueryInProgress);
        let statements = self
            .analyst
            .check_script(&query.query)
            .await
            .map_err(sandbox_error)?;
        if statements.is_empty() {
            client
                .feed(PgWireBackendMessage::EmptyQueryResponse(
                    EmptyQueryResponse::new(),
                ))
                .await?;
        } else {
            let ctx = self.session().await?;
            let user = session_user(client);
            for (statement, kind) in statements {
                let prepared = self.prepare(&ctx, statement, kind, &user).await?;
                let response = self
                    .execute(client, &ctx, prepared, &Format::UnifiedText)
                    .await?;
                send_simple(client, response).await?;
            }
        }
        client.set_state(PgWireConnectionState::ReadyForQuery);
        let status = client.transaction_status();
        send_ready_for_query(client, status).await
    }

    async fn do_query<C>(&self, _client: &mut C, _query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // `on_query` above answers every Query message itself.
        Err(user_error(
            "XX000",
            "simple queries are answered by on_query",
        ))
    }
}

#[async_trait]
impl ExtendedQueryHandler for Sandboxed {
    type Statement = Prepared;
    type QueryParser = SandboxedParser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        Arc::new(SandboxedParser {
            analyst: Arc::clone(&self.analyst),
        })
    }

    async fn on_execute<C>(&self, client: &mut C, message: Execute) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let conn = connection(client);
        self._on_execute(client, message).await?;
        if let Some(status) = conn
            .transition
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            client.set_transaction_status(status);
        }
        Ok(())
    }

    /// `Describe` of a portal also finds the cursors `DECLARE` made (psycopg describes its
    /// named cursors so).
    async fn on_describe<C>(&self, client: &mut C, message: Describe) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
        if message.target_type == TARGET_TYPE_BYTE_PORTAL
            && client.portal_store().get_portal(name).is_none()
            && let Some(schema) = connection(client).cursors.schema(name).await
        {
            let fields = pg_types::fields(&schema, &Format::UnifiedText, format_options(client))?;
            client
                .send(PgWireBackendMessage::RowDescription(RowDescription::new(
                    fields.iter().map(Into::into).collect(),
                )))
                .await?;
            return Ok(());
        }
        self._on_describe(client, message).await
    }

    async fn do_describe_statement<C>(
        &self,
        client: &mut C,
        target: &StoredStatement<Self::Statement>,
    ) -> PgWireResult<DescribeStatementResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let prepared = &target.statement;
        let server = match &prepared.action {
            Action::Query(plan) => parameter_types(plan)?,
            _ => Vec::new(),
        };
        let parameters = (0..target.parameter_types.len().max(server.len()))
            .map(|i| {
                target
                    .parameter_types
                    .get(i)
                    .cloned()
                    .flatten()
                    .or_else(|| server.get(i).cloned())
                    .unwrap_or(Type::UNKNOWN)
            })
            .collect();
        let fields = self
            .describe(client, prepared, &Format::UnifiedText)
            .await?;
        Ok(DescribeStatementResponse::new(parameters, fields))
    }

    async fn do_describe_portal<C>(
        &self,
        client: &mut C,
        target: &Portal<Self::Statement>,
    ) -> PgWireResult<DescribePortalResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let fields = self
            .describe(
                client,
                &target.statement.statement,
                &target.result_column_format,
            )
            .await?;
        Ok(DescribePortalResponse::new(fields))
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let (ctx, mut prepared) = self
            .current(&portal.statement.statement, &session_user(client))
            .await?;
        if let Action::Query(plan) = &prepared.action
            && !portal.parameters.is_empty()
        {
            let inferred: Vec<Option<arrow::datatypes::DataType>> = {
                let types = plan
                    .get_parameter_types()
                    .map_err(|e| sandbox_error(SandboxError::Plan(e.strip_backtrace())))?;
                let mut ordered: Vec<(u32, Option<arrow::datatypes::DataType>)> = types
                    .into_iter()
                    .map(|(id, t)| (id.trim_start_matches('$').parse().unwrap_or(u32::MAX), t))
                    .collect();
                ordered.sort_by_key(|(n, _)| *n);
                ordered.into_iter().map(|(_, t)| t).collect()
            };
            let wire = parameter_types(plan)?;
            let inferred_refs: Vec<Option<&arrow::datatypes::DataType>> =
                inferred.iter().map(Option::as_ref).collect();
            let wire_refs: Vec<Option<&Type>> = wire.iter().map(Some).collect();
            let values: ParamValues =
                deserialize_parameters_with_server_types(portal, &inferred_refs, &wire_refs)?;
            let bound = plan
                .clone()
                .replace_params_with_values(&values)
                .map_err(|e| sandbox_error(SandboxError::Plan(e.strip_backtrace())))?;
            prepared.action = Action::Query(bound);
        }
        self.execute(client, &ctx, prepared, &portal.result_column_format)
            .await
    }
}

#[async_trait]
impl QueryParser for SandboxedParser {
    type Statement = Prepared;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<Self::Statement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let mut statements = self
            .analyst
            .check_script(sql)
            .await
            .map_err(sandbox_error)?;
        let Some((statement, kind)) = statements.pop() else {
            return Ok(None);
        };
        if !statements.is_empty() {
            return Err(user_error(
                "42601",
                "cannot insert multiple commands into a prepared statement",
            ));
        }
        let sandboxed = Sandboxed {
            analyst: Arc::clone(&self.analyst),
        };
        let ctx = sandboxed.session().await?;
        sandboxed
            .prepare(&ctx, statement, kind, &session_user(client))
            .await
            .map(Some)
    }

    fn get_parameter_types(&self, stmt: &Self::Statement) -> PgWireResult<Vec<Type>> {
        match &stmt.action {
            Action::Query(plan) => parameter_types(plan),
            _ => Ok(Vec::new()),
        }
    }

    fn get_result_schema(
        &self,
        stmt: &Self::Statement,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        match &stmt.action {
            Action::Query(plan) => pg_types::fields(
                plan.schema().as_arrow(),
                column_format.unwrap_or(&Format::UnifiedText),
                Arc::new(FormatOptions::default()),
            ),
            _ => Ok(Vec::new()),
        }
    }
}

/// Sign-in: database `supportlake`, password = a read or admin token.
pub struct TokenStartup {
    tokens: Tokens,
    parameters: DefaultServerParameterProvider,
}

#[async_trait]
impl StartupHandler for TokenStartup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                let database = client
                    .metadata()
                    .get(METADATA_DATABASE)
                    .or_else(|| client.metadata().get(METADATA_USER))
                    .cloned()
                    .unwrap_or_default();
                if database != DATABASE {
                    let info = ErrorInfo::new(
                        "FATAL".to_owned(),
                        "3D000".to_owned(),
                        format!(
                            "database \"{database}\" does not exist; connect to database \"{DATABASE}\""
                        ),
                    );
                    client
                        .send(PgWireBackendMessage::ErrorResponse(ErrorResponse::from(
                            info,
                        )))
                        .await?;
                    return Err(PgWireError::InvalidStartupMessage);
                }
                if self.tokens.is_empty() {
                    finish_authentication(client, &self.parameters).await?;
                } else {
                    client.set_state(PgWireConnectionState::AuthenticationInProgress);
                    client
                        .send(PgWireBackendMessage::Authentication(
                            Authentication::CleartextPassword,
                        ))
                        .await?;
                }
            }
            PgWireFrontendMessage::PasswordMessageFamily(pwd) => {
                let pwd = pwd.into_password()?;
                match self.tokens.role_of(pwd.password.as_bytes()) {
                    Some(role) if role.allows(Role::Read) => {
                        finish_authentication(client, &self.parameters).await?;
                    }
                    _ => {
                        let user = client
                            .metadata()
                            .get(METADATA_USER)
                            .cloned()
                            .unwrap_or_default();
                        return Err(PgWireError::InvalidPassword(user));
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// Everything one connection needs.
pub struct Handlers {
    sandboxed: Arc<Sandboxed>,
    startup: Arc<TokenStartup>,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        Arc::clone(&self.sandboxed)
    }
    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        Arc::clone(&self.sandboxed)
    }
    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        Arc::clone(&self.startup)
    }
}

/// TLS for the Postgres listener: a PEM certificate chain and a PEM PKCS#8 key.
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<pgwire::tokio::TlsAcceptor, String> {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("TLS certificate and key: {e}"))?;
    Ok(pgwire::tokio::TlsAcceptor::from(Arc::new(config)))
}

/// The parameters reported at sign-in: the PostgreSQL version the catalog answers as, and
/// a read-only session that is not a superuser.
fn server_parameters() -> DefaultServerParameterProvider {
    let mut p = DefaultServerParameterProvider::default();
    p.server_version = pg_session::SERVER_VERSION.to_owned();
    p.is_superuser = false;
    p.default_transaction_read_only = true;
    p
}

/// Accepts Postgres connections on `listener` until the process ends; each connection runs
/// on the analyst runtime.
pub async fn serve(
    listener: tokio::net::TcpListener,
    analyst: Arc<Analyst>,
    tokens: Tokens,
    tls: Option<pgwire::tokio::TlsAcceptor>,
) -> std::io::Result<()> {
    // Fail at start, not at the first client, when the session cannot be built.
    analyst
        .context(Flavor::Postgres)
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let handlers = Arc::new(Handlers {
        sandboxed: Arc::new(Sandboxed {
            analyst: Arc::clone(&analyst),
        }),
        startup: Arc::new(TokenStartup {
            tokens,
            parameters: server_parameters(),
        }),
    });
    let addr: Option<SocketAddr> = listener.local_addr().ok();
    info!(?addr, tls = tls.is_some(), "Postgres protocol listening");
    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "Postgres listener: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let handlers = Arc::clone(&handlers);
        let tls = tls.clone();
        analyst.handle().spawn(async move {
            if let Err(e) = pgwire::tokio::process_socket(socket, tls, handlers).await {
                warn!(%peer, error = %e, "Postgres connection ended with an error");
            }
        });
    }
}
