//! Answers of metric queries kept for the state of the lake they were computed on.
//!
//! A dashboard asks the same questions on every load and every auto-refresh; while no flush
//! or rollup refresh has changed the lake, the answers cannot change, except for metrics
//! that read "now" (their cache key holds it, so they are recomputed). Each entry is stored
//! under the session key (lake and upkeep generations) of the query session that computed
//! it; a newer key empties the cache, and an answer computed on an older session is never
//! stored, so no request sees an answer older than the session it would have run on.

use std::collections::HashMap;
use std::sync::Mutex;

use super::SessionKey;

/// How many answers are kept (each a few kilobytes).
const CAPACITY: usize = 1024;

/// Values (answers, or the rows of settled intervals) by key; `V` is cheap to clone (an
/// `Arc`).
pub(super) struct ResultCache<V> {
    inner: Mutex<Inner<V>>,
}

struct Inner<V> {
    session: SessionKey,
    tick: u64,
    entries: HashMap<String, (u64, V)>,
}

impl<V> Default for ResultCache<V> {
    fn default() -> Self {
        ResultCache {
            inner: Mutex::new(Inner {
                session: SessionKey::default(),
                tick: 0,
                entries: HashMap::new(),
            }),
        }
    }
}

impl<V: Clone> ResultCache<V> {
    /// The value of `key` computed on session `session`, if kept.
    pub(super) fn get(&self, session: SessionKey, key: &str) -> Option<V> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if g.session != session {
            return None;
        }
        g.tick += 1;
        let tick = g.tick;
        g.entries.get_mut(key).map(|(used, r)| {
            *used = tick;
            r.clone()
        })
    }

    /// Keeps an answer computed on `session`; answers of an older session are dropped.
    pub(super) fn put(&self, session: SessionKey, key: String, result: V) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if session < g.session {
            return;
        }
        if session > g.session {
            g.session = session;
            g.entries.clear();
        }
        if g.entries.len() >= CAPACITY && !g.entries.contains_key(&key) {
            // Least recently used out.
            if let Some(oldest) = g
                .entries
                .iter()
                .min_by_key(|(_, (used, _))| *used)
                .map(|(k, _)| k.clone())
            {
                g.entries.remove(&oldest);
            }
        }
        g.tick += 1;
        let tick = g.tick;
        g.entries.insert(key, (tick, result));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::metrics::MetricResult;

    fn result(metric: &'static str) -> Arc<MetricResult> {
        Arc::new(MetricResult {
            metric,
            unit: "seconds",
            business_hours: false,
            from: String::new(),
            to: String::new(),
            interval: "day".into(),
            group_by: None,
            tz: "UTC".into(),
            series: Vec::new(),
        })
    }

    #[test]
    fn answers_are_kept_for_their_session_only() {
        let c = ResultCache::<Arc<MetricResult>>::default();
        c.put((1, 0), "a".into(), result("wait"));
        assert_eq!(c.get((1, 0), "a").map(|r| r.metric), Some("wait"));
        assert!(c.get((1, 0), "b").is_none());
        // A query that ran on the next session finds nothing of the previous one …
        assert!(c.get((1, 1), "a").is_none());
        c.put((1, 1), "b".into(), result("handle"));
        assert!(c.get((1, 1), "a").is_none());
        // … and an answer computed on an older session is not kept.
        c.put((1, 0), "a".into(), result("wait"));
        assert!(c.get((1, 1), "a").is_none());
        assert!(c.get((1, 0), "a").is_none());
    }

    #[test]
    fn the_least_recently_used_answer_leaves_first() {
        let c = ResultCache::<Arc<MetricResult>>::default();
        for i in 0..CAPACITY {
            c.put((0, 0), format!("k{i}"), result("wait"));
        }
        // Touch k0 so k1 is the oldest.
        assert!(c.get((0, 0), "k0").is_some());
        c.put((0, 0), "new".into(), result("wait"));
        assert!(c.get((0, 0), "k0").is_some());
        assert!(c.get((0, 0), "k1").is_none());
        assert!(c.get((0, 0), "new").is_some());
    }
}
