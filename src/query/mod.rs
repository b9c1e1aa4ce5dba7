//! The query layer: the only module that touches DataFusion.
//!
//! An [`Engine`] is a DataFusion session over one lake:
//! - `events`: a Hive-partitioned listing table over `<lake>/events` (the `date` directory
//!   level is the partition column, typed `DATE`, so `WHERE date >= …` skips directories);
//! - `settings` (one row) and `sla_policies`: the business rules of the configuration;
//! - the views of `queries/views/` (`conversation_links`, `conversation_events`,
//!   `conversations`, `conversation_intervals`, `sla_targets`, `agent_status_intervals`);
//!   the expensive ones are computed once per session ([`cached`]);
//! - the functions of [`udf`] (business time, reporting buckets, SLA policy choice);
//! - when the lake has current rollups ([`rollup`]), the tables `conversation_links`,
//!   `conversations`, `conversation_intervals` and `sla_targets` read their Parquet files
//!   instead of computing the views from every event.
//!
//! Files are read through [`store::LakeStore`], which hides files that compaction replaced.

pub mod analyst;
pub mod cached;
pub mod catalog;
pub mod files;
pub mod rollup;
pub mod store;
pub mod udf;
pub mod views;

use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::ParamValues;
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::error::DataFusionError;
use datafusion::execution::cache::cache_manager::CacheManagerConfig;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::config::Config;
use crate::event;
use crate::lake::LakePaths;
use crate::lake::paths::EVENTS;

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("{0}")]
    DataFusion(#[from] DataFusionError),
    #[error("Arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("the lake path {0} cannot be used as a table location: {1}")]
    Location(String, String),
    #[error("the built-in view {name} does not plan: {source}")]
    View {
        name: &'static str,
        #[source]
        source: DataFusionError,
    },
    /// The query failed because lake files are damaged; they are named here.
    #[error("{}", damaged_message(.files, *.moved))]
    Damaged {
        /// Each damaged file (relative to the lake root) and what is wrong with it.
        files: Vec<(String, String)>,
        /// Whether the files are being moved aside (by the server), so a retry reads the
        /// rest of the lake.
        moved: bool,
        /// What the query engine said (the reason is in the message already).
        error: DataFusionError,
    },
}

pub(crate) fn damaged_message(files: &[(String, String)], moved: bool) -> String {
    let list: Vec<String> = files
        .iter()
        .map(|(f, why)| format!("{f} ({why})"))
        .collect();
    let then = if moved {
        "it is being moved aside to _damaged/; retry the query to read the rest of the lake"
    } else {
        "`supportlake check --lake <dir> --move-damaged` moves it aside (a running server does so itself)"
    };
    format!(
        "the query could not read {} damaged lake file{}: {}; {then}",
        files.len(),
        if files.len() == 1 { "" } else { "s" },
        list.join(", ")
    )
}

/// Whether a failed query could be explained by a damaged file: errors from reading and
/// decoding data, not from planning, limits or cancellation.
fn may_be_damage(e: &DataFusionError) -> bool {
    match e {
        DataFusionError::ParquetError(p) => crate::lake::damage::is_damage(p.as_ref()),
        DataFusionError::ArrowError(a, _) => crate::lake::damage::is_damage(a.as_ref()),
        DataFusionError::External(x) => crate::lake::damage::is_damage(x.as_ref()),
        DataFusionError::Execution(_) | DataFusionError::Internal(_) => true,
        DataFusionError::ExecutionJoin(_) => true,
        DataFusionError::Context(_, inner) | DataFusionError::Diagnostic(_, inner) => {
            may_be_damage(inner)
        }
        DataFusionError::Shared(inner) => may_be_damage(inner),
        DataFusionError::Collection(v) => v.iter().any(may_be_damage),
        _ => false,
    }
}

/// Names the damaged files behind failed queries: the verdicts of files read whole without
/// fault are remembered ([`crate::lake::damage::Checker`]), and a hook may act on what is
/// found (the server moves damaged `events` files aside). Cheap to clone.
#[derive(Clone, Default)]
pub struct DamageWatch {
    checker: Arc<crate::lake::damage::Checker>,
    on_events_damage: Option<Arc<DamageHook>>,
    /// One search at a time: queries failing together wait for the first search and then
    /// find its verdicts remembered, instead of reading the lake once each.
    searching: Arc<tokio::sync::Mutex<()>>,
}

/// Told the damaged `events` files found (path, what is wrong).
pub type DamageHook = dyn Fn(Vec<(std::path::PathBuf, String)>) + Send + Sync;

impl std::fmt::Debug for DamageWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DamageWatch").finish_non_exhaustive()
    }
}

impl DamageWatch {
    /// A watch that calls `hook` with the damaged `events` files it finds.
    pub fn with_hook(
        hook: impl Fn(Vec<(std::path::PathBuf, String)>) + Send + Sync + 'static,
    ) -> Self {
        DamageWatch {
            checker: Arc::default(),
            on_events_damage: Some(Arc::new(hook)),
            searching: Arc::default(),
        }
    }

    /// Turns the error of a failed query into one naming the damaged files among those the
    /// query could have read, when there are any; otherwise gives it back.
    pub async fn explain(
        &self,
        paths: &LakePaths,
        rollups: Option<&files::RollupFiles>,
        e: DataFusionError,
    ) -> QueryError {
        if !may_be_damage(&e) {
            return QueryError::DataFusion(e);
        }
        match self.find(paths, rollups).await {
            Some((files, moved)) => QueryError::Damaged {
                files,
                moved,
                error: e,
            },
            None => QueryError::DataFusion(e),
        }
    }

    /// The damaged files among those a session over `paths` (with `rollups`) reads,
    /// relative to the lake root, with what is wrong with each; and whether the hook was
    /// given all of them (so they are being moved aside). `None` when every file reads.
    pub async fn find(
        &self,
        paths: &LakePaths,
        rollups: Option<&files::RollupFiles>,
    ) -> Option<(Vec<(String, String)>, bool)> {
        let mut events = Vec::new();
        if let Ok(parts) = crate::lake::compact::event_partitions(paths) {
            for (_, dir) in parts {
                events.extend(crate::lake::writer::data_files(&dir).unwrap_or_default());
            }
        }
        let derived: Vec<std::path::PathBuf> =
            rollups.map(|r| r.paths().collect()).unwrap_or_default();
        let checker = Arc::clone(&self.checker);
        let all: Vec<std::path::PathBuf> = events.iter().chain(&derived).cloned().collect();
        let searching = self.searching.lock().await;
        let found = tokio::task::spawn_blocking(move || checker.find(&all))
            .await
            .unwrap_or_default();
        drop(searching);
        if found.is_empty() {
            return None;
        }
        let in_events: Vec<(std::path::PathBuf, String)> = found
            .iter()
            .filter(|(p, _)| events.contains(p))
            .cloned()
            .collect();
        let moved = in_events.len() == found.len() && self.on_events_damage.is_some();
        if let (Some(hook), false) = (&self.on_events_damage, in_events.is_empty()) {
            hook(in_events);
        }
        let abs_root = std::path::absolute(paths.root()).unwrap_or_default();
        let rel = |p: &std::path::Path| {
            p.strip_prefix(paths.root())
                .or_else(|_| p.strip_prefix(&abs_root))
                .unwrap_or(p)
                .display()
                .to_string()
        };
        let files: Vec<(String, String)> =
            found.iter().map(|(p, why)| (rel(p), why.clone())).collect();
        if self.on_events_damage.is_some() {
            tracing::error!(files = ?files.iter().map(|f| &f.0).collect::<Vec<_>>(), "a query failed on damaged lake files");
        }
        Some((files, moved))
    }
}

pub type Result<T, E = QueryError> = std::result::Result<T, E>;

/// The name of the partition column of every table.
pub const DATE_COLUMN: &str = "date";

/// The stored columns of `events` as queried: strings read as string views (`Utf8View`),
/// which the Parquet reader builds from a file's dictionary pages without copying the
/// bytes, and which group, join and compare faster than plain strings. The files keep
/// plain strings.
pub fn events_read_schema() -> SchemaRef {
    let fields: Vec<Field> = event::schema()
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Utf8 => f.as_ref().clone().with_data_type(DataType::Utf8View),
            _ => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// The schema of the `events` table as queried: the stored columns plus `date`.
pub fn events_table_schema() -> SchemaRef {
    let mut fields: Vec<Field> = events_read_schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new(DATE_COLUMN, DataType::Date32, false));
    Arc::new(Schema::new(fields))
}

/// A DataFusion session over one lake.
pub struct Engine {
    ctx: SessionContext,
    config: Arc<Config>,
    /// The files of the rollup tables, when the derived tables come from them.
    rollups: Option<Arc<files::RollupFiles>>,
    /// The lake this session reads (none for a session over a subset of events).
    lake: Option<LakePaths>,
    damage: DamageWatch,
}

/// When an [`Engine`] reads the rollup tables instead of computing them from events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rollups {
    /// Only when they reflect every events file and the current configuration; otherwise
    /// compute from events (exact, slower). The command line's choice.
    IfCurrent,
    /// Whenever they were computed with the current configuration, even if the newest
    /// events files are not in them yet. The server's choice: it refreshes them right
    /// after each flush, so they trail ingest by seconds.
    IfConfigMatches,
    /// Never: always compute from events.
    Never,
}

/// A new session with the lake's object store, on the shared caches when given or on a
/// runtime of its own.
fn new_context(shared: Option<SharedCaches>) -> SessionContext {
    let session = SessionConfig::new()
        .with_information_schema(true)
        .with_default_catalog_and_schema("supportlake", "public");
    match shared {
        Some(SharedCaches { rt, .. }) => SessionContext::new_with_config_rt(session, rt),
        None => {
            let ctx = SessionContext::new_with_config(session);
            store::install(ctx.runtime_env().as_ref());
            ctx
        }
    }
}

/// The caches shared by the successive sessions of a long-running process (the server
/// reopens its session whenever the lake changes): the Parquet footers and file statistics
/// it reads stay cached from one session to the next (keyed by path, size and modification
/// time, so a rewritten file is read again), while directory listings are never cached —
/// every session lists the lake as it is. Cheap to clone.
/// The sessions also share a [`DamageWatch`].
#[derive(Clone)]
pub struct SharedCaches {
    rt: Arc<RuntimeEnv>,
    damage: DamageWatch,
}

impl SharedCaches {
    pub fn new() -> Result<Self> {
        let caches = CacheManagerConfig::default()
            .with_list_files_cache_limit(0)
            .with_metadata_cache_limit(256 << 20)
            .with_file_statistics_cache_limit(64 << 20);
        let rt = RuntimeEnvBuilder::new()
            .with_cache_manager(caches)
            .build_arc()?;
        store::install(rt.as_ref());
        Ok(SharedCaches {
            rt,
            damage: DamageWatch::default(),
        })
    }

    /// What names (and acts on) damaged files for the sessions on these caches.
    pub fn damage(&self) -> &DamageWatch {
        &self.damage
    }

    /// The same caches, naming damaged files through `damage`.
    pub fn with_damage_watch(mut self, damage: DamageWatch) -> Self {
        self.damage = damage;
        self
    }
}

/// `schema` with its string views as plain strings (nullability and metadata kept): the
/// form for rows kept beyond a query, since a string view pins the whole decoded page it
/// points into.
pub(crate) fn without_string_views(schema: &Schema) -> SchemaRef {
    Arc::new(Schema::new_with_metadata(
        schema
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                DataType::Utf8View => f.as_ref().clone().with_data_type(DataType::Utf8),
                _ => f.as_ref().clone(),
            })
            .collect::<Vec<_>>(),
        schema.metadata().clone(),
    ))
}

impl Engine {
    /// Opens a session with the lake's tables, the configuration's rules, the functions and
    /// the views registered, reading the rollups when they are current.
    pub async fn open(paths: &LakePaths, config: Arc<Config>) -> Result<Self> {
        Self::open_with(paths, config, Rollups::IfCurrent).await
    }

    /// [`Engine::open`] with a choice of when to read the rollup tables.
    pub async fn open_with(
        paths: &LakePaths,
        config: Arc<Config>,
        rollups: Rollups,
    ) -> Result<Self> {
        Self::open_in(paths, config, rollups, None).await
    }

    /// [`Engine::open_with`] on the given [`SharedCaches`].
    pub async fn open_in(
        paths: &LakePaths,
        config: Arc<Config>,
        rollups: Rollups,
        shared: Option<SharedCaches>,
    ) -> Result<Self> {
        let damage = shared
            .as_ref()
            .map(|s| s.damage.clone())
            .unwrap_or_default();
        let ctx = new_context(shared);
        register_events(&ctx, paths).await?;
        let state = match rollups {
            Rollups::Never => None,
            _ => rollup::usable_state(paths, &config, rollups == Rollups::IfCurrent),
        };
        if let Some(s) = &state {
            tracing::info!(generation = s.generation, refreshed_at = %s.refreshed_at, "derived tables read from the rollups");
        }
        let mut engine = Self::finish(ctx, config, state.as_ref().map(|s| (paths, s))).await?;
        engine.lake = Some(paths.clone());
        engine.damage = damage;
        Ok(engine)
    }

    /// A session whose `events` table is the given provider (the rollup refresh computes
    /// the derived tables over a subset of the events this way).
    pub(crate) async fn over_events(
        events: Arc<dyn datafusion::catalog::TableProvider>,
        config: Arc<Config>,
    ) -> Result<Self> {
        let ctx = new_context(None);
        ctx.register_table(EVENTS, events)?;
        Self::finish(ctx, config, None).await
    }

    async fn finish(
        ctx: SessionContext,
        config: Arc<Config>,
        rollup: Option<(&LakePaths, &crate::lake::rollup_state::RollupState)>,
    ) -> Result<Self> {
        for f in udf::all(Arc::clone(&config)) {
            ctx.register_udf(f);
        }
        udf::install_utc_date_trunc(&ctx);
        ctx.register_batch("settings", settings_batch(&config)?)?;
        ctx.register_batch("sla_policies", policies_batch(&config)?)?;
        let mut rollup_files = files::RollupFiles::default();
        for (name, sql) in catalog::VIEWS {
            let df = ctx
                .sql(sql)
                .await
                .map_err(|source| QueryError::View { name, source })?;
            if let Some((paths, state)) = rollup
                && rollup::is_materialized(name)
            {
                let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
                let table = rollup::table_provider(&ctx, paths, state, name, schema).await?;
                rollup_files.add(table.files());
                ctx.register_table(name, table)?;
            } else if catalog::CACHED_VIEWS.contains(&name) {
                let partitions = ctx.copied_config().target_partitions();
                ctx.register_table(name, Arc::new(cached::CachedView::new(df, partitions)))?;
            } else {
                ctx.register_table(name, df.into_view())?;
            }
        }
        Ok(Engine {
            ctx,
            config,
            rollups: rollup.is_some().then(|| Arc::new(rollup_files)),
            lake: None,
            damage: DamageWatch::default(),
        })
    }

    /// Whether the derived tables come from the rollups.
    pub fn reads_rollups(&self) -> bool {
        self.rollups.is_some()
    }

    /// The files of the rollup tables this engine reads (`None` when it computes the
    /// derived tables from the events).
    pub fn rollup_files(&self) -> Option<&Arc<files::RollupFiles>> {
        self.rollups.as_ref()
    }

    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Runs one SQL statement and collects the result.
    pub async fn sql(&self, sql: &str) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let df = self.ctx.sql(sql).await?;
        self.named(collect(df).await).await
    }

    /// The error of a failed query, naming damaged files when they explain it.
    pub async fn explain_error(&self, e: DataFusionError) -> QueryError {
        match &self.lake {
            Some(paths) => self.damage.explain(paths, self.rollups.as_deref(), e).await,
            None => QueryError::DataFusion(e),
        }
    }

    /// The damaged files this session could read, with what is wrong with each and
    /// whether they are being moved aside (see [`DamageWatch::find`]).
    pub async fn find_damage(&self) -> Option<(Vec<(String, String)>, bool)> {
        let paths = self.lake.as_ref()?;
        self.damage.find(paths, self.rollups.as_deref()).await
    }

    async fn named<T>(&self, r: Result<T>) -> Result<T> {
        match r {
            Err(QueryError::DataFusion(e)) => Err(self.explain_error(e).await),
            other => other,
        }
    }

    /// Runs one SQL statement with named parameters (`$name`) bound to values.
    pub async fn sql_with_params(
        &self,
        sql: &str,
        params: ParamValues,
    ) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let started = std::time::Instant::now();
        let df = self.ctx.sql(sql).await?.with_param_values(params)?;
        tracing::trace!(
            ms = started.elapsed().as_secs_f64() * 1e3,
            "parsed and planned (logical)"
        );
        self.named(collect(df).await).await
    }
}

/// Runs a planned query to the end.
async fn collect(df: datafusion::prelude::DataFrame) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    if !tracing::enabled!(tracing::Level::TRACE) {
        return Ok((schema, df.collect().await?));
    }
    // At trace level: the executed plan with its per-operator metrics (rows, time), to
    // see where a slow query spends it.
    let started = std::time::Instant::now();
    let task = Arc::new(df.task_ctx());
    let plan = df.create_physical_plan().await?;
    let planned = started.elapsed();
    let batches = datafusion::physical_plan::collect(Arc::clone(&plan), task).await?;
    tracing::trace!(
        planned_ms = planned.as_secs_f64() * 1e3,
        total_ms = started.elapsed().as_secs_f64() * 1e3,
        "executed plan:\n{}",
        datafusion::physical_plan::display::DisplayableExecutionPlan::with_metrics(plan.as_ref())
            .indent(true)
    );
    Ok((schema, batches))
}

fn micros(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// The one-row `settings` table: the configuration values the views need.
pub(crate) fn settings_batch(config: &Config) -> Result<RecordBatch> {
    let m = &config.metrics;
    let schema = Arc::new(Schema::new(vec![
        Field::new("tz", DataType::Utf8, false),
        Field::new("calendar", DataType::Utf8, false),
        Field::new("service_level_target_s", DataType::Float64, false),
        Field::new("session_gap_us", DataType::Int64, false),
        Field::new("link_grace_us", DataType::Int64, false),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![config.timezone.name()])),
        Arc::new(StringArray::from(vec![config.metrics_calendar()])),
        Arc::new(Float64Array::from(vec![
            m.service_level_target.as_secs_f64(),
        ])),
        Arc::new(Int64Array::from(vec![micros(m.session_gap)])),
        Arc::new(Int64Array::from(vec![micros(m.link_grace)])),
    ];
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// The `sla_policies` table, in configuration order.
pub(crate) fn policies_batch(config: &Config) -> Result<RecordBatch> {
    let secs = |d: Option<std::time::Duration>| d.map(|d| d.as_secs_f64());
    let schema = Arc::new(Schema::new(vec![
        Field::new("ordinal", DataType::Int64, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("first_response_s", DataType::Float64, true),
        Field::new("next_response_s", DataType::Float64, true),
        Field::new("resolution_s", DataType::Float64, true),
        Field::new("calendar", DataType::Utf8, true),
    ]));
    let p = &config.sla;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(0..p.len() as i64)),
        Arc::new(StringArray::from_iter_values(
            p.iter().map(|p| p.name.as_str()),
        )),
        Arc::new(Float64Array::from_iter(
            p.iter().map(|p| secs(p.first_response)),
        )),
        Arc::new(Float64Array::from_iter(
            p.iter().map(|p| secs(p.next_response)),
        )),
        Arc::new(Float64Array::from_iter(
            p.iter().map(|p| secs(p.resolution)),
        )),
        Arc::new(StringArray::from_iter(
            p.iter().map(|p| p.calendar.as_deref()),
        )),
    ];
    Ok(RecordBatch::try_new(schema, columns)?)
}

async fn register_events(ctx: &SessionContext, paths: &LakePaths) -> Result<()> {
    let dir = paths.events();
    if !dir.is_dir() {
        // An empty lake still has an (empty) events table with the full schema.
        let schema = events_table_schema();
        let table = MemTable::try_new(schema, vec![vec![]])?;
        ctx.register_table(EVENTS, Arc::new(table))?;
        return Ok(());
    }
    let abs = std::path::absolute(&dir)
        .map_err(|e| QueryError::Location(dir.display().to_string(), e.to_string()))?;
    let url = ListingTableUrl::parse(format!("{}/", abs.display()))?;
    let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
        .with_file_extension(".parquet")
        .with_table_partition_cols(vec![(DATE_COLUMN.to_owned(), DataType::Date32)]);
    let config = ListingTableConfig::new(url)
        .with_listing_options(options)
        .with_schema(events_read_schema());
    let table = ListingTable::try_new(config)?
        .with_cache(ctx.runtime_env().cache_manager.get_file_statistic_cache());
    ctx.register_table(EVENTS, Arc::new(table))?;
    Ok(())
}
