//! The Postgres wire protocol over the analyst session (`serve --pg-listen`, `supportlake pg`).
//!
//! Built on datafusion-postgres (query handling, result encoding, `pg_catalog` for the
//! catalog queries psql, DBeaver, Metabase and Grafana send) with our own pieces around it:
//! - sign-in: any user name, database `supportlake`, the password is a read (or admin)
//!   token, compared in constant time; with no tokens configured any password is accepted
//!   and the listener must be on loopback;
//! - every statement passes the sandbox's text checks before datafusion-postgres parses it;
//! - `SET` of a client display setting is acknowledged without touching the engine;
//! - results stream under the same timeout and row cap as the HTTP path, and each
//!   connection runs on the analyst runtime.

use std::fmt::Debug;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{Set, Statement};
use datafusion_postgres::hooks::cursor::CursorStatementHook;
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::hooks::transactions::TransactionStatementHook;
use datafusion_postgres::hooks::{HookClient, QueryHook};
use datafusion_postgres::pgwire;
use datafusion_postgres::{DfSessionService, Parser};
use futures::{Sink, SinkExt, StreamExt};
use pgwire::api::auth::{
    DefaultServerParameterProvider, StartupHandler, finish_authentication, protocol_negotiation,
    save_startup_parameters_to_metadata,
};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{
    ClientInfo, ClientPortalStore, METADATA_DATABASE, METADATA_USER, PgWireConnectionState,
    PgWireServerHandlers, Type,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::response::ErrorResponse;
use pgwire::messages::startup::Authentication;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use tokio::sync::OwnedSemaphorePermit;
use tracing::{info, warn};

use super::check::{Kind, SqlDialect};
use super::{Analyst, Flavor, SandboxError};
use crate::auth::{Role, Tokens};

/// The database name clients connect to.
pub const DATABASE: &str = "supportlake";

type DfStatement = (String, Option<(Statement, LogicalPlan)>);

/// Client settings datafusion-postgres does not keep itself; acknowledged and ignored.
const IGNORED_SETTINGS: &[&str] = &[
    "client_encoding",
    "client_min_messages",
    "lc_messages",
    "lc_monetary",
    "lc_numeric",
    "lc_time",
    "standard_conforming_strings",
    "lock_timeout",
    "idle_in_transaction_session_timeout",
    "timezone",
];

fn sandbox_error(e: SandboxError) -> PgWireError {
    let sqlstate = match &e {
        SandboxError::NotAllowed(_) => "42501",
        SandboxError::TooLong { .. } | SandboxError::TooDeep { .. } => "54001",
        SandboxError::Parse(_) | SandboxError::MultipleStatements(_) => "42601",
        SandboxError::Memory(_) => "53200",
        SandboxError::Timeout(_) => "57014",
        SandboxError::TooManyRows(_) | SandboxError::TooManyBytes(_) => "54000",
        SandboxError::Busy(_) => "53300",
        SandboxError::Plan(_) => "XX000",
        // data_corrupted
        SandboxError::Damaged(_) => "XX001",
        SandboxError::Internal(_) => "XX000",
    };
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_owned(),
        sqlstate.to_owned(),
        e.to_string(),
    )))
}

/// Acknowledges `SET` of the client settings in [`IGNORED_SETTINGS`].
struct ClientSettingsHook;

fn ignored_set(statement: &Statement) -> bool {
    match statement {
        Statement::Set(Set::SingleAssignment { variable, .. }) => {
            IGNORED_SETTINGS.contains(&variable.to_string().to_lowercase().as_str())
        }
        _ => false,
    }
}

#[async_trait]
impl QueryHook for ClientSettingsHook {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        _ctx: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        ignored_set(statement).then(|| Ok(Response::Execution(Tag::new("SET"))))
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _ctx: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        if !ignored_set(statement) {
            return None;
        }
        let schema = datafusion::common::DFSchema::empty();
        Some(Ok(LogicalPlan::EmptyRelation(
            datafusion::logical_expr::EmptyRelation {
                produce_one_row: false,
                schema: Arc::new(schema),
            },
        )))
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _plan: &LogicalPlan,
        _params: &ParamValues,
        _ctx: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        ignored_set(statement).then(|| Ok(Response::Execution(Tag::new("SET"))))
    }
}

/// The datafusion-postgres service over the current analyst session.
async fn service(analyst: &Analyst) -> PgWireResult<Arc<DfSessionService>> {
    let ctx = analyst
        .context(Flavor::Postgres)
        .await
        .map_err(sandbox_error)?;
    Ok(Arc::new(DfSessionService::new_with_hooks(
        ctx,
        vec![
            Arc::new(ClientSettingsHook),
            Arc::new(CursorStatementHook),
            Arc::new(SetShowHook),
            Arc::new(TransactionStatementHook),
        ],
    )))
}

/// Wraps a result stream: cancelled at the deadline, cut at the row cap, and holding the
/// query slot until the last row is sent.
fn bounded(
    mut resp: QueryResponse,
    deadline: tokio::time::Instant,
    analyst: &Arc<Analyst>,
    permit: Option<OwnedSemaphorePermit>,
) -> QueryResponse {
    let max_rows = analyst.limits().max_rows;
    let timeout = analyst.limits().timeout;
    let analyst = Arc::clone(analyst);
    let inner = std::mem::replace(&mut resp.data_rows, Box::pin(futures::stream::empty()));
    let stream = futures::stream::unfold(
        (inner, 0usize, permit, false),
        move |(mut rows, n, permit, done)| {
            let analyst = Arc::clone(&analyst);
            async move {
                if done {
                    return None;
                }
                match tokio::time::timeout_at(deadline, rows.next()).await {
                    Err(_) => Some((
                        Err(sandbox_error(SandboxError::Timeout(timeout))),
                        (rows, n, permit, true),
                    )),
                    Ok(None) => None,
                    Ok(Some(Ok(_))) if n >= max_rows => Some((
                        Err(sandbox_error(SandboxError::TooManyRows(max_rows))),
                        (rows, n, permit, true),
                    )),
                    Ok(Some(Ok(row))) => Some((Ok(row), (rows, n + 1, permit, false))),
                    Ok(Some(Err(e))) => {
                        let e = named_damage(&analyst, e).await;
                        Some((Err(e), (rows, n, permit, true)))
                    }
                }
            }
        },
    );
    resp.data_rows = Box::pin(stream);
    resp
}

/// A query error, or the damaged lake files behind it when there are any.
async fn named_damage(analyst: &Analyst, e: PgWireError) -> PgWireError {
    let failure = SandboxError::Internal(e.to_string());
    match analyst.damage_behind(&failure).await {
        Some(d) => sandbox_error(d),
        None => e,
    }
}

/// The query handlers: the sandbox around datafusion-postgres.
pub struct Sandboxed {
    analyst: Arc<Analyst>,
    parser: Arc<SandboxedParser>,
}

/// The extended-protocol parser: the sandbox's checks, then datafusion-postgres's parser.
pub struct SandboxedParser {
    analyst: Arc<Analyst>,
    /// For the plan-only questions (parameter and result types), which do not depend on the
    /// session.
    describe: Arc<Parser>,
}

#[async_trait]
impl SimpleQueryHandler for Sandboxed {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let (_, kind) = self
            .analyst
            .check(query, SqlDialect::Postgres)
            .await
            .map_err(sandbox_error)?;
        let permit = match kind {
            Kind::Query => Some(self.analyst.permit().await.map_err(sandbox_error)?),
            Kind::Session => None,
        };
        let deadline = tokio::time::Instant::now() + self.analyst.limits().timeout;
        let svc = service(&self.analyst).await?;
        let responses =
            tokio::time::timeout_at(deadline, SimpleQueryHandler::do_query(&*svc, client, query))
                .await
                .map_err(|_| sandbox_error(SandboxError::Timeout(self.analyst.limits().timeout)))?;
        let responses = match responses {
            Ok(r) => r,
            Err(e) => return Err(named_damage(&self.analyst, e).await),
        };
        let mut permit = permit;
        Ok(responses
            .into_iter()
            .map(|r| match r {
                Response::Query(q) => {
                    Response::Query(bounded(q, deadline, &self.analyst, permit.take()))
                }
                other => other,
            })
            .collect())
    }
}

#[async_trait]
impl ExtendedQueryHandler for Sandboxed {
    type Statement = DfStatement;
    type QueryParser = SandboxedParser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        Arc::clone(&self.parser)
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let is_query = matches!(
            &portal.statement.statement.1,
            Some((Statement::Query(_) | Statement::Explain { .. }, _))
        );
        let permit = if is_query {
            Some(self.analyst.permit().await.map_err(sandbox_error)?)
        } else {
            None
        };
        let deadline = tokio::time::Instant::now() + self.analyst.limits().timeout;
        let svc = service(&self.analyst).await?;
        let response = tokio::time::timeout_at(
            deadline,
            ExtendedQueryHandler::do_query(&*svc, client, portal, max_rows),
        )
        .await
        .map_err(|_| sandbox_error(SandboxError::Timeout(self.analyst.limits().timeout)))?;
        let response = match response {
            Ok(r) => r,
            Err(e) => return Err(named_damage(&self.analyst, e).await),
        };
        Ok(match response {
            Response::Query(q) => Response::Query(bounded(q, deadline, &self.analyst, permit)),
            other => other,
        })
    }
}

#[async_trait]
impl QueryParser for SandboxedParser {
    type Statement = DfStatement;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<Self::Statement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        self.analyst
            .check(sql, SqlDialect::Postgres)
            .await
            .map_err(sandbox_error)?;
        let svc = service(&self.analyst).await?;
        svc.query_parser().parse_sql(client, sql, types).await
    }

    fn get_parameter_types(&self, stmt: &Self::Statement) -> PgWireResult<Vec<Type>> {
        self.describe.get_parameter_types(stmt)
    }

    fn get_result_schema(
        &self,
        stmt: &Self::Statement,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        self.describe.get_result_schema(stmt, column_format)
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

/// Accepts Postgres connections on `listener` until the process ends; each connection runs
/// on the analyst runtime.
pub async fn serve(
    listener: tokio::net::TcpListener,
    analyst: Arc<Analyst>,
    tokens: Tokens,
    tls: Option<pgwire::tokio::TlsAcceptor>,
) -> std::io::Result<()> {
    let ctx = analyst
        .context(Flavor::Postgres)
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let describe = DfSessionService::new(ctx).query_parser();
    let handlers = Arc::new(Handlers {
        sandboxed: Arc::new(Sandboxed {
            analyst: Arc::clone(&analyst),
            parser: Arc::new(SandboxedParser {
                analyst: Arc::clone(&analyst),
                describe,
            }),
        }),
        startup: Arc::new(TokenStartup {
            tokens,
            parameters: DefaultServerParameterProvider::default(),
        }),
    });
    let addr: Option<SocketAddr> = listener.local_addr().ok();
    info!(?addr, tls = tls.is_some(), "Postgres protocol listening");
    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "Postgres listener: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
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
