//! The server's background upkeep of the lake: rollup refresh after every flush, and
//! compaction on a timer, one at a time (behind the maintenance lock), on their own
//! low-priority threads so ingest and dashboards keep the cores when they need them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime};

use tracing::{info, warn};

use super::AppState;
use crate::lake::compact::{self, CompactOptions};
use crate::query::rollup::{self, RefreshOptions};

/// Tunables of the upkeep.
#[derive(Debug, Clone)]
pub struct UpkeepOptions {
    /// Keep the rollup tables up to date.
    pub rollups: bool,
    /// Compact this often (`None`: never).
    pub compact_interval: Option<Duration>,
    /// Replaced files stay this long for readers.
    pub grace: Duration,
}

impl Default for UpkeepOptions {
    fn default() -> Self {
        UpkeepOptions {
            rollups: true,
            compact_interval: Some(Duration::from_secs(600)),
            grace: Duration::from_secs(600),
        }
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct UpkeepStats {
    /// Bumped whenever the rollups or the file set changed, so the query session reopens.
    pub generation: AtomicU64,
    pub refreshes: AtomicU64,
    pub refresh_failures: AtomicU64,
    /// The last refresh failed (cleared by one that succeeds).
    pub refresh_failing: std::sync::atomic::AtomicBool,
    pub last_refresh_micros: AtomicU64,
    pub compactions: AtomicU64,
    pub files_merged: AtomicU64,
}

/// Starts the upkeep on its own thread; it ends when the server state is dropped.
pub(super) fn start(state: Weak<AppState>, opts: UpkeepOptions) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("upkeep")
        .on_thread_start(crate::query::analyst::lower_priority)
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("upkeep".into())
        .spawn(move || rt.block_on(run(state, opts)))?;
    Ok(())
}

async fn run(state: Weak<AppState>, opts: UpkeepOptions) {
    // Refresh once at start whatever the generation says (the rollups may be missing).
    let mut refreshed_at_generation: Option<u64> = None;
    let mut last_compaction = Instant::now();
    let mut backoff = Duration::ZERO;
    loop {
        tokio::time::sleep(Duration::from_millis(500) + backoff).await;
        let Some(s) = state.upgrade() else {
            return;
        };
        let generation = s.wal.stats().lake_generation.load(Ordering::SeqCst);
        let compaction_due = opts
            .compact_interval
            .is_some_and(|i| last_compaction.elapsed() >= i);
        let refresh_due = opts.rollups && refreshed_at_generation != Some(generation);
        if !compaction_due && !refresh_due {
            continue;
        }
        let _maintenance = s.maintenance.lock().await;
        if compaction_due {
            last_compaction = Instant::now();
            let paths = s.paths.clone();
            let copts = CompactOptions {
                grace: opts.grace,
                ..CompactOptions::default()
            };
            let result = tokio::task::spawn_blocking(move || {
                compact::compact_lake(&paths, &copts, SystemTime::now())
            })
            .await;
            match result {
                Ok(Ok(r)) => {
                    if !r.damaged.is_empty() {
                        s.upkeep.generation.fetch_add(1, Ordering::SeqCst);
                    }
                    let merged: usize = r.merges.iter().map(|m| m.inputs.len()).sum();
                    s.upkeep.compactions.fetch_add(1, Ordering::Relaxed);
                    s.upkeep
                        .files_merged
                        .fetch_add(merged as u64, Ordering::Relaxed);
                    if !r.merges.is_empty() || !r.deleted.is_empty() {
                        info!(
                            merges = r.merges.len(),
                            files_merged = merged,
                            deleted = r.deleted.len(),
                            "compaction"
                        );
                        s.upkeep.generation.fetch_add(1, Ordering::SeqCst);
                    }
                }
                Ok(Err(e)) => warn!(error = %e, "compaction failed; retrying at the next interval"),
                Err(e) => warn!(error = %e, "compaction stopped"),
            }
        }
        if opts.rollups {
            let started = Instant::now();
            let ropts = RefreshOptions {
                grace: opts.grace,
                ..RefreshOptions::default()
            };
            match rollup::refresh(
                &s.paths,
                Arc::clone(&s.config),
                &ropts,
                SystemTime::now(),
                |_, _| {},
            )
            .await
            {
                Ok(r) => {
                    s.upkeep.refresh_failing.store(false, Ordering::Relaxed);
                    refreshed_at_generation = Some(generation);
                    backoff = Duration::ZERO;
                    s.upkeep.refreshes.fetch_add(1, Ordering::Relaxed);
                    s.upkeep
                        .last_refresh_micros
                        .store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
                    if r.steps > 0 || r.rebuilt || r.files_deleted > 0 {
                        info!(
                            new_events = r.new_events,
                            conversations = r.conversations_recomputed,
                            seconds = r.elapsed.as_secs_f64(),
                            rebuilt = r.rebuilt,
                            "rollups refreshed"
                        );
                        s.upkeep.generation.fetch_add(1, Ordering::SeqCst);
                    }
                }
                Err(e) => {
                    // A damaged events file fails every refresh until it is found and
                    // moved aside: look for one (files read whole before are not read
                    // again), and try again at once when it was that.
                    if s.runtime.damage().find(&s.paths, None).await.is_some() {
                        warn!(error = %e, "rollup refresh failed on a damaged events file; it is being moved aside and the refresh retried");
                        continue;
                    }
                    s.upkeep.refresh_failures.fetch_add(1, Ordering::Relaxed);
                    s.upkeep.refresh_failing.store(true, Ordering::Relaxed);
                    backoff = (backoff * 2).clamp(Duration::from_secs(5), Duration::from_secs(300));
                    warn!(error = %e, retry_in_s = backoff.as_secs(), "rollup refresh failed; dashboards show the rollups of the last refresh meanwhile");
                }
            }
        }
    }
}
