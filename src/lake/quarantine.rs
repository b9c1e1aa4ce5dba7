//! Quarantine: rejected input is kept, with why, under `<lake>/_rejected/`.
//!
//! One JSON Lines file per run (`<run id>.jsonl`), one line per rejected record:
//! `{"input": "...", "record": 17, "rejects": [{"pointer": "...", "field": "ts",
//!   "code": "bad_timestamp", "reason": "..."}], "raw": "<the record as received>"}`
//! (a webhook body may hold several bad items; each is listed, the body is kept once). A record that is not UTF-8 is kept
//! as `raw_base64`; a record longer than [`RAW_LIMIT`] keeps its first [`RAW_PREFIX`] bytes
//! with `raw_truncated: true` and its full length in `raw_bytes`. Fixing the cause and
//! ingesting the `raw` values again is safe: accepted events are never stored twice.
//!
//! The quarantine holds input as received, personal data included; `erase` covers it.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use base64::Engine as _;
use serde::Serialize;

use super::writer::create_dir_durable;
use super::{LakeError, LakePaths, Result};
use crate::sources::Reject;

/// Records up to this size are kept whole.
pub const RAW_LIMIT: usize = 1 << 20;
/// How much of a longer record is kept.
pub const RAW_PREFIX: usize = 64 << 10;

#[derive(Serialize)]
struct Item<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    pointer: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    field: &'a str,
    code: &'a str,
    reason: &'a str,
}

#[derive(Serialize)]
struct Line<'a> {
    input: &'a str,
    record: u64,
    rejects: Vec<Item<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    raw: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    raw_base64: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    raw_truncated: bool,
    raw_bytes: u64,
}

/// Appends rejects of one run to its quarantine file, created on the first reject.
pub struct Quarantine {
    path: PathBuf,
    out: Option<BufWriter<File>>,
    count: u64,
}

impl Quarantine {
    pub fn new(paths: &LakePaths, run_id: &str) -> Self {
        Quarantine {
            path: paths.rejected().join(format!("{run_id}.jsonl")),
            out: None,
            count: 0,
        }
    }

    /// Keeps one rejected record with its rejects (all of the same record). `raw` is the
    /// record as received (or its first bytes when it was too long to hold, with `total_len`
    /// its real length).
    pub fn keep(
        &mut self,
        input: &str,
        record: u64,
        rejects: &[Reject],
        raw: &[u8],
        total_len: u64,
    ) -> Result<()> {
        let truncated = total_len as usize > raw.len() || raw.len() > RAW_LIMIT;
        let raw = if raw.len() > RAW_LIMIT {
            &raw[..RAW_PREFIX]
        } else {
            raw
        };
        let (text, b64) = match std::str::from_utf8(raw) {
            Ok(t) => (Some(t), None),
            Err(e) if truncated && e.error_len().is_none() => {
                // Cut inside a multi-byte character: keep the valid part as text.
                let valid = &raw[..e.valid_up_to()];
                (std::str::from_utf8(valid).ok(), None)
            }
            Err(_) => (
                None,
                Some(base64::engine::general_purpose::STANDARD.encode(raw)),
            ),
        };
        let line = Line {
            input,
            record,
            rejects: rejects
                .iter()
                .map(|r| Item {
                    pointer: &r.position.pointer,
                    field: &r.field,
                    code: r.code,
                    reason: &r.reason,
                })
                .collect(),
            raw: text,
            raw_base64: b64,
            raw_truncated: truncated,
            raw_bytes: total_len,
        };
        if self.out.is_none() {
            let dir = self.path.parent().map(PathBuf::from).unwrap_or_default();
            create_dir_durable(&dir)?;
            let f = File::create(&self.path).map_err(|e| LakeError::io(&self.path, e))?;
            self.out = Some(BufWriter::new(f));
        }
        let out = self
            .out
            .as_mut()
            .unwrap_or_else(|| unreachable!("opened above"));
        serde_json::to_writer(&mut *out, &line).map_err(|e| LakeError::io(&self.path, e.into()))?;
        out.write_all(b"\n")
            .map_err(|e| LakeError::io(&self.path, e))?;
        self.count += 1;
        Ok(())
    }

    /// Flushes and fsyncs; returns the file's path if anything was kept.
    pub fn finish(self) -> Result<Option<PathBuf>> {
        let Some(out) = self.out else {
            return Ok(None);
        };
        let file = out
            .into_inner()
            .map_err(|e| LakeError::io(&self.path, e.into_error()))?;
        file.sync_all().map_err(|e| LakeError::io(&self.path, e))?;
        if let Some(dir) = self.path.parent() {
            super::writer::sync_dir(dir)?;
        }
        Ok(Some(self.path))
    }

    pub fn count(&self) -> u64 {
        self.count
    }
}
