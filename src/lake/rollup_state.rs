//! The manifest of the rollup tables: `<lake>/_rollup/state.json`.
//!
//! The rollup tables (`conversations`, `conversation_links`, `conversation_intervals`,
//! `conversation_owners`, `conversation_messages`, `sla_targets`) are Parquet files under `<lake>/<table>/date=YYYY-MM-DD/<generation>.parquet`.
//! A refresh writes new files for the partitions it changes and then replaces this manifest
//! in one rename: the manifest, not the directory listing, says which files make up each
//! table, so a reader that opens the manifest sees one consistent version of all the
//! tables. Files a refresh replaced are *retired*: listed here with the time they left, and
//! deleted by a later refresh once the grace period is over.
//!
//! The manifest also records which `events` data files the tables were computed from
//! (`processed`, per partition), so a refresh knows exactly which files are new — a flush
//! that lands late in an old partition included — and the configuration `fingerprint` the
//! tables were computed with (a changed calendar or SLA policy means a rebuild).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::paths::LakePaths;
use super::writer::{create_dir_durable, sync_dir};
use super::{LakeError, Result};

/// The folder of the manifest.
pub const ROLLUP_DIR: &str = "_rollup";
const STATE_FILE: &str = "state.json";
const FORMAT: u32 = 1;

/// A replaced rollup file, kept until readers are done with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retired {
    /// Relative to the lake root.
    pub path: String,
    /// Unix seconds when it left the manifest.
    pub since: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollupState {
    pub format: u32,
    /// What the tables were computed with (configuration and definitions).
    pub fingerprint: String,
    /// Bumped by every refresh that changed a table; new files carry it in their name.
    pub generation: u64,
    /// RFC 3339 time of the last refresh.
    pub refreshed_at: String,
    /// `events` partition directory name → data file names already reflected in the tables.
    pub processed: BTreeMap<String, BTreeSet<String>>,
    /// Table → its files, relative to the lake root.
    pub tables: BTreeMap<String, Vec<String>>,
    pub retired: Vec<Retired>,
    /// Content hashes of the partitions of tables that are recomputed whole
    /// (`agent_status_intervals`), by `table/date=D`: a refresh rewrites only the
    /// partitions whose content changed.
    #[serde(default)]
    pub content: BTreeMap<String, String>,
}

impl RollupState {
    pub fn new(fingerprint: String) -> Self {
        RollupState {
            format: FORMAT,
            fingerprint,
            ..RollupState::default()
        }
    }

    pub fn path(paths: &LakePaths) -> PathBuf {
        paths.root().join(ROLLUP_DIR).join(STATE_FILE)
    }

    /// The manifest, or `None` when the lake has no rollups yet. A manifest this version
    /// cannot read is reported, never silently ignored.
    pub fn load(paths: &LakePaths) -> Result<Option<Self>> {
        let path = Self::path(paths);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(LakeError::io(&path, e)),
        };
        let state: RollupState = serde_json::from_str(&text).map_err(|e| {
            LakeError::Schema(format!("{}: not a rollup manifest: {e}", path.display()))
        })?;
        if state.format != FORMAT {
            return Err(LakeError::Schema(format!(
                "{}: rollup manifest format {} (this version reads {FORMAT}); run `supportlake rollup --rebuild`",
                path.display(),
                state.format
            )));
        }
        Ok(Some(state))
    }

    /// Replaces the manifest atomically: temp file, fsync, rename, fsync of the folder.
    pub fn save(&self, paths: &LakePaths) -> Result<()> {
        let path = Self::path(paths);
        let dir = path.parent().unwrap_or(Path::new("."));
        create_dir_durable(dir)?;
        let tmp = dir.join(format!(".{STATE_FILE}.tmp"));
        let text = serde_json::to_vec_pretty(self)
            .map_err(|e| LakeError::Schema(format!("cannot encode the rollup manifest: {e}")))?;
        let mut f = File::create(&tmp).map_err(|e| LakeError::io(&tmp, e))?;
        f.write_all(&text)
            .and_then(|_| f.sync_all())
            .map_err(|e| LakeError::io(&tmp, e))?;
        drop(f);
        fs::rename(&tmp, &path).map_err(|e| LakeError::io(&path, e))?;
        sync_dir(dir)
    }

    /// Records that compaction replaced `inputs` of a partition by `output`: the output is
    /// processed when every input was (otherwise its rows are looked at again, which is
    /// harmless).
    pub fn on_compacted(&mut self, partition_dir: &str, inputs: &[String], output: &str) -> bool {
        let Some(set) = self.processed.get_mut(partition_dir) else {
            return false;
        };
        if inputs.iter().all(|i| set.contains(i)) {
            for i in inputs {
                set.remove(i);
            }
            set.insert(output.to_owned());
            true
        } else {
            false
        }
    }

    /// Every file the manifest names (live tables), relative to the root.
    pub fn live_files(&self) -> BTreeSet<&str> {
        self.tables
            .values()
            .flat_map(|v| v.iter().map(String::as_str))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_and_loads_and_follows_compaction() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = LakePaths::new(tmp.path());
        assert_eq!(RollupState::load(&paths).unwrap(), None);
        let mut s = RollupState::new("abc".into());
        s.processed.insert(
            "date=2026-11-02".into(),
            ["a.parquet".to_owned(), "b.parquet".to_owned()].into(),
        );
        s.save(&paths).unwrap();
        assert_eq!(RollupState::load(&paths).unwrap(), Some(s.clone()));
        assert!(s.on_compacted(
            "date=2026-11-02",
            &["a.parquet".into(), "b.parquet".into()],
            "ab.parquet"
        ));
        assert_eq!(s.processed["date=2026-11-02"].len(), 1);
        assert!(!s.on_compacted(
            "date=2026-11-02",
            &["ab.parquet".into(), "c.parquet".into()],
            "abc.parquet"
        ));
        fs::write(RollupState::path(&paths), "{").unwrap();
        assert!(RollupState::load(&paths).is_err());
    }
}
