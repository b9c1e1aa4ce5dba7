//! Analyst access: read-only SQL over HTTP (`POST /api/v1/sql`) and the Postgres wire
//! protocol ([`pg`]), both in one sandbox.
//!
//! The sandbox, in the order a statement meets it:
//! 1. [`check`]: a length cap on the text; one statement; an expression-depth cap; only a
//!    query (or a harmless client session statement on the Postgres path).
//! 2. The analyst session ([`Analyst::context`]): the lake's tables and views and the metric
//!    functions, nothing else — no file-reading table functions, no URL tables, spilling to
//!    disk disabled, a memory pool shared by every analyst query, and the functions that
//!    build large values from small inputs wrapped ([`guard`]).
//! 3. The plan is verified read-only (no DDL, DML or `SET`) before it runs.
//! 4. Execution on the analyst runtime: its own worker threads at a lower CPU priority, so
//!    webhook ingest and dashboards keep their cores; at most `max_concurrent` queries at a
//!    time; a wall-clock timeout that cancels (dropping the stream stops every task of the
//!    query); a cap on result rows and bytes.

pub mod check;
pub mod deadline;
pub mod encode;
pub mod guard;
pub mod pg;
pub mod pg_catalog;
pub mod pg_rewrite;
pub mod pg_run;
pub mod pg_session;
pub mod pg_types;

use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::error::DataFusionError;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::cache::cache_manager::CacheManagerConfig;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::{GreedyMemoryPool, MemoryPool, TrackConsumersPool};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use datafusion::sql::parser::Statement as DFStatement;
use futures::StreamExt;
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};

use crate::config::Config;
use crate::query::{Engine, udf};
use check::{Kind, SqlDialect};

/// The bounds every analyst query runs within.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Longest SQL text accepted, in bytes.
    pub max_sql_bytes: usize,
    /// Deepest nesting of expressions and subqueries.
    pub max_depth: usize,
    /// Memory all running analyst queries may hold together (hash tables, sorts, buffers).
    pub memory_bytes: usize,
    /// Wall-clock time one query may take, from its start to its last row.
    pub timeout: Duration,
    /// Most rows one result may have.
    pub max_rows: usize,
    /// Most bytes (in memory) one result may have.
    pub max_result_bytes: usize,
    /// Queries run at once; later ones wait for a slot.
    pub max_concurrent: usize,
    /// How long a query waits for a slot before it is refused as busy.
    pub queue_wait: Duration,
    /// Worker threads of the analyst runtime.
    pub threads: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_sql_bytes: 64 << 10,
            max_depth: 64,
            memory_bytes: 512 << 20,
            timeout: Duration::from_secs(30),
            max_rows: 1_000_000,
            max_result_bytes: 256 << 20,
            max_concurrent: 4,
            queue_wait: Duration::from_secs(10),
            threads: 2,
        }
    }
}

/// Why an analyst query was refused or stopped.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("the SQL is {bytes} bytes; at most {max} are accepted")]
    TooLong { bytes: usize, max: usize },
    #[error(
        "the SQL nests {depth} levels of expressions or subqueries; at most {max} are accepted"
    )]
    TooDeep { depth: usize, max: usize },
    #[error("SQL does not parse: {0}")]
    Parse(String),
    #[error("send one statement at a time ({0} were sent)")]
    MultipleStatements(usize),
    #[error("{0} is not allowed: analyst SQL is read-only queries over the lake")]
    NotAllowed(String),
    #[error("{0}")]
    Plan(String),
    #[error("the query needs more memory than the analyst pool allows ({0})")]
    Memory(String),
    #[error("the query ran longer than {0:?} and was cancelled")]
    Timeout(Duration),
    #[error("the result has more than {0} rows; add a LIMIT or aggregate")]
    TooManyRows(usize),
    #[error("the result is larger than {0} bytes; select fewer columns or rows")]
    TooManyBytes(usize),
    #[error("{0} analyst queries are already running; try again shortly")]
    Busy(usize),
    /// The query met damaged lake files; the message names them.
    #[error("{0}")]
    Damaged(String),
    #[error("{0}")]
    Internal(String),
}

impl SandboxError {
    /// A stable machine-readable code for the error body.
    pub fn code(&self) -> &'static str {
        match self {
            SandboxError::TooLong { .. } => "sql_too_long",
            SandboxError::TooDeep { .. } => "sql_too_deep",
            SandboxError::Parse(_) => "sql_parse",
            SandboxError::MultipleStatements(_) => "sql_multiple_statements",
            SandboxError::NotAllowed(_) => "sql_not_allowed",
            SandboxError::Plan(_) => "sql_error",
            SandboxError::Memory(_) => "query_memory",
            SandboxError::Damaged(_) => "damaged_file",
            SandboxError::Timeout(_) => "query_timeout",
            SandboxError::TooManyRows(_) | SandboxError::TooManyBytes(_) => "result_too_large",
            SandboxError::Busy(_) => "busy",
            SandboxError::Internal(_) => "internal",
        }
    }

    pub(crate) fn from_datafusion(e: DataFusionError, timeout: Duration) -> Self {
        let e = e.find_root();
        match e {
            DataFusionError::ResourcesExhausted(m) => SandboxError::Memory(m.clone()),
            DataFusionError::Execution(m) if m.starts_with(deadline::DEADLINE_MESSAGE) => {
                SandboxError::Timeout(timeout)
            }
            other => SandboxError::Plan(other.to_string()),
        }
    }
}

/// Where the analyst session gets the current query engine from (the server reopens it as
/// the lake grows).
#[async_trait]
pub trait EngineSource: Send + Sync {
    async fn engine(&self) -> Result<Arc<Engine>, String>;
}

/// The engine of a lake that other processes may write to (`supportlake pg`): reopened
/// when the files under `events/` change.
pub struct WatchedLake {
    paths: crate::lake::LakePaths,
    config: Arc<Config>,
    slot: Mutex<Option<(Fingerprint, Arc<Engine>)>>,
}

/// (files, bytes, newest modification) of a lake's events table.
type Fingerprint = (usize, u64, std::time::SystemTime);

impl WatchedLake {
    pub fn new(paths: crate::lake::LakePaths, config: Arc<Config>) -> Self {
        WatchedLake {
            paths,
            config,
            slot: Mutex::new(None),
        }
    }

    fn fingerprint(&self) -> Fingerprint {
        let mut fp = (0usize, 0u64, std::time::SystemTime::UNIX_EPOCH);
        let Ok(parts) = std::fs::read_dir(self.paths.events()) else {
            return fp;
        };
        for part in parts.flatten() {
            let Ok(files) = std::fs::read_dir(part.path()) else {
                continue;
            };
            for f in files.flatten() {
                if let Ok(m) = f.metadata() {
                    fp.0 += 1;
                    fp.1 += m.len();
                    if let Ok(t) = m.modified() {
                        fp.2 = fp.2.max(t);
                    }
                }
            }
        }
        fp
    }
}

#[async_trait]
impl EngineSource for WatchedLake {
    async fn engine(&self) -> Result<Arc<Engine>, String> {
        let fp = self.fingerprint();
        let mut slot = self.slot.lock().await;
        if let Some((seen, e)) = slot.as_ref()
            && *seen == fp
        {
            return Ok(Arc::clone(e));
        }
        let engine = Arc::new(
            Engine::open(&self.paths, Arc::clone(&self.config))
                .await
                .map_err(|e| e.to_string())?,
        );
        *slot = Some((fp, Arc::clone(&engine)));
        Ok(engine)
    }
}

/// Which protocol a session serves: the Postgres one also has `pg_catalog`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Http,
    Postgres,
}

/// A query's result.
#[derive(Debug)]
pub struct QueryOutput {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    pub rows: usize,
}

/// The runtime analyst queries execute on; shut down without blocking when dropped.
struct AnalystRuntime(Option<tokio::runtime::Runtime>);

impl Drop for AnalystRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

type SessionSlot = Mutex<Option<(Arc<Engine>, Arc<SessionContext>)>>;

/// The analyst side of the service: sessions, limits and the runtime queries run on.
pub struct Analyst {
    limits: Limits,
    config: Arc<Config>,
    source: std::sync::OnceLock<Arc<dyn EngineSource>>,
    pool: Arc<dyn MemoryPool>,
    gate: Arc<Semaphore>,
    runtime: AnalystRuntime,
    http: SessionSlot,
    postgres: SessionSlot,
}

impl Analyst {
    /// A new analyst service; give it its engine with [`Analyst::set_source`].
    pub fn new(limits: Limits, config: Arc<Config>) -> std::io::Result<Arc<Self>> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(limits.threads.max(1))
            .thread_name("analyst")
            // Room for deep (but within the caps) plans and their printing.
            .thread_stack_size(16 << 20)
            .on_thread_start(lower_priority)
            .enable_all()
            .build()?;
        let pool: Arc<dyn MemoryPool> = Arc::new(TrackConsumersPool::new(
            GreedyMemoryPool::new(limits.memory_bytes),
            std::num::NonZeroUsize::new(3).unwrap_or(std::num::NonZeroUsize::MIN),
        ));
        Ok(Arc::new(Analyst {
            gate: Arc::new(Semaphore::new(limits.max_concurrent.max(1))),
            limits,
            config,
            source: std::sync::OnceLock::new(),
            pool,
            runtime: AnalystRuntime(Some(runtime)),
            http: Mutex::new(None),
            postgres: Mutex::new(None),
        }))
    }

    /// Where sessions get the engine from (set once; later calls are ignored).
    pub fn set_source(&self, source: Arc<dyn EngineSource>) {
        let _ = self.source.set(source);
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The runtime analyst work is spawned on.
    pub fn handle(&self) -> tokio::runtime::Handle {
        match &self.runtime.0 {
            Some(rt) => rt.handle().clone(),
            None => tokio::runtime::Handle::current(),
        }
    }

    /// Waits for a query slot (at most `queue_wait`).
    pub async fn permit(&self) -> Result<OwnedSemaphorePermit, SandboxError> {
        match tokio::time::timeout(
            self.limits.queue_wait,
            Arc::clone(&self.gate).acquire_owned(),
        )
        .await
        {
            Ok(Ok(p)) => Ok(p),
            Ok(Err(_)) => Err(SandboxError::Internal(
                "the analyst service is stopping".into(),
            )),
            Err(_) => Err(SandboxError::Busy(self.limits.max_concurrent)),
        }
    }

    /// Runs the sandbox's text checks (length, one statement, depth, kind) off the async
    /// threads.
    pub async fn check(
        &self,
        sql: &str,
        dialect: SqlDialect,
    ) -> Result<(DFStatement, Kind), SandboxError> {
        let sql = sql.to_owned();
        let limits = self.limits.clone();
        tokio::task::spawn_blocking(move || check::check(&sql, dialect, &limits))
            .await
            .map_err(|e| SandboxError::Internal(e.to_string()))?
    }

    /// The Postgres path's text checks ([`check::check_script`]), off the async threads.
    pub async fn check_script(
        &self,
        sql: &str,
    ) -> Result<Vec<(datafusion::sql::sqlparser::ast::Statement, Kind)>, SandboxError> {
        let sql = sql.to_owned();
        let limits = self.limits.clone();
        tokio::task::spawn_blocking(move || check::check_script(&sql, &limits))
            .await
            .map_err(|e| SandboxError::Internal(e.to_string()))?
    }

    /// When a query failed: the damaged lake files that explain it, as an error naming
    /// them (`None` when every file the session reads is intact, or the failure is of a
    /// kind no file could cause).
    pub async fn damage_behind(&self, failure: &SandboxError) -> Option<SandboxError> {
        let text = match failure {
            SandboxError::Plan(t) | SandboxError::Internal(t) => t,
            _ => return None,
        };
        // Errors of reading and decoding data; a user's SQL mistake never reads a file.
        const READING: [&str; 8] = [
            "Parquet",
            "parquet",
            "Arrow error",
            "External error",
            "IO error",
            "EOF",
            "ecompress",
            "hrift",
        ];
        if !READING.iter().any(|w| text.contains(w)) {
            return None;
        }
        let engine = self.source.get()?.engine().await.ok()?;
        let (files, moved) = engine.find_damage().await?;
        Some(SandboxError::Damaged(crate::query::damaged_message(
            &files, moved,
        )))
    }

    /// The analyst session over the current engine, built anew when the engine changes.
    pub async fn context(&self, flavor: Flavor) -> Result<Arc<SessionContext>, SandboxError> {
        let source = self
            .source
            .get()
            .ok_or_else(|| SandboxError::Internal("the analyst service has no lake yet".into()))?;
        let engine = source.engine().await.map_err(SandboxError::Internal)?;
        let slot = match flavor {
            Flavor::Http => &self.http,
            Flavor::Postgres => &self.postgres,
        };
        let mut slot = slot.lock().await;
        if let Some((e, ctx)) = slot.as_ref()
            && Arc::ptr_eq(e, &engine)
        {
            return Ok(Arc::clone(ctx));
        }
        let ctx = Arc::new(self.build_context(&engine, flavor).await?);
        *slot = Some((engine, Arc::clone(&ctx)));
        Ok(ctx)
    }

    async fn build_context(
        &self,
        engine: &Engine,
        flavor: Flavor,
    ) -> Result<SessionContext, SandboxError> {
        let timeout = self.limits.timeout;
        let df = |e| SandboxError::from_datafusion(e, timeout);
        // The Parquet footers the engine has read stay cached for analyst queries too
        // (keyed by path, size and modification time); each query used to parse every
        // footer again in a runtime of its own.
        let caches = &engine.context().runtime_env().cache_manager;
        let runtime = RuntimeEnvBuilder::new()
            .with_cache_manager(
                CacheManagerConfig::default()
                    .with_file_metadata_cache(Some(caches.get_file_metadata_cache()))
                    .with_metadata_cache_limit(caches.get_metadata_cache_limit()),
            )
            .with_memory_pool(Arc::clone(&self.pool))
            .with_disk_manager_builder(
                DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
            )
            .build_arc()
            .map_err(df)?;
        super::store::install(runtime.as_ref());
        // The Postgres session has its own, Postgres-shaped `information_schema`
        // (`pg_catalog::install`).
        let mut config = SessionConfig::new()
            .with_information_schema(flavor == Flavor::Http)
            .with_default_catalog_and_schema("supportlake", "public");
        if flavor == Flavor::Postgres {
            // `2.5` is a numeric in Postgres, not a float.
            config.options_mut().sql_parser.parse_float_as_decimal = true;
        }
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime)
            .with_default_features()
            .with_physical_optimizer_rule(Arc::new(super::views::StringViewPaths))
            .with_physical_optimizer_rule(Arc::new(deadline::Deadlines {
                timeout: self.limits.timeout,
            }))
            .build();
        let ctx = SessionContext::new_with_state(state);
        let source = engine
            .context()
            .catalog("supportlake")
            .and_then(|c| c.schema("public"))
            .ok_or_else(|| {
                SandboxError::Internal("the engine has no supportlake.public schema".into())
            })?;
        for name in source.table_names() {
            if let Some(table) = source.table(&name).await.map_err(df)? {
                ctx.register_table(name.as_str(), table).map_err(df)?;
            }
        }
        for f in udf::all(Arc::clone(&self.config)) {
            ctx.register_udf(f);
        }
        udf::install_utc_date_trunc(&ctx);
        if flavor == Flavor::Postgres {
            datafusion_postgres::datafusion_pg_catalog::pg_catalog::setup_pg_catalog(
                &ctx,
                "supportlake",
                datafusion_postgres::datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider,
            )
            .map_err(|e| SandboxError::Internal(e.to_string()))?;
            pg_catalog::install(&ctx);
        }
        guard::install(&ctx);
        Ok(ctx)
    }

    /// Runs one analyst statement from the HTTP path and collects its result within the
    /// limits.
    pub async fn query(&self, sql: &str) -> Result<QueryOutput, SandboxError> {
        let permit = self.permit().await?;
        let (statement, kind) = self.check(sql, SqlDialect::Generic).await?;
        if kind != Kind::Query {
            return Err(SandboxError::NotAllowed(
                "a session, cursor or COPY statement (it has no meaning over HTTP)".into(),
            ));
        }
        let ctx = self.context(Flavor::Http).await?;
        let limits = self.limits.clone();
        // The slot is held by the task itself, so a query that is still winding down after
        // its waiter gave up keeps counting against the concurrency cap.
        let task = self.handle().spawn(async move {
            let _permit = permit;
            execute(&ctx, statement, &limits).await
        });
        let _abort = AbortOnDrop(task.abort_handle());
        let failure = match tokio::time::timeout(self.limits.timeout, task).await {
            Err(_) => SandboxError::Timeout(self.limits.timeout),
            Ok(Err(e)) => SandboxError::Internal(e.to_string()),
            Ok(Ok(Ok(out))) => return Ok(out),
            Ok(Ok(Err(e))) => e,
        };
        Err(self.damage_behind(&failure).await.unwrap_or(failure))
    }
}

/// Aborts a spawned task when the waiter goes away (timeout, client gone).
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The checks on a plan: nothing but reading.
pub fn read_only() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

async fn execute(
    ctx: &SessionContext,
    statement: DFStatement,
    limits: &Limits,
) -> Result<QueryOutput, SandboxError> {
    let df = |e| SandboxError::from_datafusion(e, limits.timeout);
    let state = ctx.state();
    let plan = state.statement_to_plan(statement).await.map_err(df)?;
    read_only()
        .verify_plan(&plan)
        .map_err(|e| SandboxError::NotAllowed(format!("this plan ({})", e.strip_backtrace())))?;
    let frame = ctx.execute_logical_plan(plan).await.map_err(df)?;
    let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
    let mut stream = frame.execute_stream().await.map_err(df)?;
    let mut batches = Vec::new();
    let (mut rows, mut bytes) = (0usize, 0usize);
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(df)?;
        rows += batch.num_rows();
        bytes += batch.get_array_memory_size();
        if rows > limits.max_rows {
            return Err(SandboxError::TooManyRows(limits.max_rows));
        }
        if bytes > limits.max_result_bytes {
            return Err(SandboxError::TooManyBytes(limits.max_result_bytes));
        }
        if batch.num_rows() > 0 {
            batches.push(batch);
        }
    }
    Ok(QueryOutput {
        schema,
        batches,
        rows,
    })
}

/// Lowers the CPU priority of the calling thread (Linux: per-thread nice value), so analyst
/// work yields to ingest and dashboards when the cores are busy.
pub(crate) fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: gettid and setpriority only read their integer arguments; a failure leaves
    // the thread at its normal priority.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 10);
    }
}
