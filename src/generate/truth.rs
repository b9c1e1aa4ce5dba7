//! The simulation's own account of what happened, for checking decoders and metrics.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::clock::rfc3339;
use super::{Calibration, GenerateError};

pub(crate) const CONVERSATIONS_HEADER: &str = "conversation_id,source,customer,channel,inbox,priority,started_at,queued_at,assigned_at,first_response_at,resolved_at,outcome,team_first_response,agent_first_response,team_resolved,agent_resolved,messages_in,messages_out,private_notes,transfers,reopens,csat_score,csat_at";
pub(crate) const AGENT_STATUS_HEADER: &str = "agent_id,from,to,status,reason";

/// One row of `truth/conversations.csv`.
pub(crate) struct ConvRow<'a> {
    pub(crate) id: &'a str,
    pub(crate) source: &'static str,
    pub(crate) customer: &'a str,
    pub(crate) channel: &'static str,
    pub(crate) inbox: &'static str,
    pub(crate) priority: Option<&'static str>,
    pub(crate) started_at: i64,
    pub(crate) queued_at: Option<i64>,
    pub(crate) assigned_at: Option<i64>,
    pub(crate) first_response_at: Option<i64>,
    pub(crate) resolved_at: Option<i64>,
    pub(crate) outcome: &'static str,
    pub(crate) team_first_response: Option<&'static str>,
    pub(crate) agent_first_response: Option<&'a str>,
    pub(crate) team_resolved: Option<&'static str>,
    pub(crate) agent_resolved: Option<&'a str>,
    pub(crate) messages_in: u32,
    pub(crate) messages_out: u32,
    pub(crate) private_notes: u32,
    pub(crate) transfers: u32,
    pub(crate) reopens: u32,
    pub(crate) csat: Option<(u8, i64)>,
}

fn opt_ts(s: &mut String, t: Option<i64>) {
    if let Some(t) = t {
        s.push_str(&rfc3339(t));
    }
    s.push(',');
}

fn opt_str(s: &mut String, v: Option<&str>) {
    if let Some(v) = v {
        s.push_str(v);
    }
    s.push(',');
}

impl ConvRow<'_> {
    /// None of the fields can hold a comma, quote or newline (ids, instants, fixed
    /// words, digits), so no CSV quoting is needed.
    fn render(&self) -> String {
        let mut s = String::with_capacity(256);
        s.push_str(self.id);
        s.push(',');
        s.push_str(self.source);
        s.push(',');
        s.push_str(self.customer);
        s.push(',');
        s.push_str(self.channel);
        s.push(',');
        s.push_str(self.inbox);
        s.push(',');
        opt_str(&mut s, self.priority);
        opt_ts(&mut s, Some(self.started_at));
        opt_ts(&mut s, self.queued_at);
        opt_ts(&mut s, self.assigned_at);
        opt_ts(&mut s, self.first_response_at);
        opt_ts(&mut s, self.resolved_at);
        s.push_str(self.outcome);
        s.push(',');
        opt_str(&mut s, self.team_first_response);
        opt_str(&mut s, self.agent_first_response);
        opt_str(&mut s, self.team_resolved);
        opt_str(&mut s, self.agent_resolved);
        let _ = write!(
            s,
            "{},{},{},{},{},",
            self.messages_in, self.messages_out, self.private_notes, self.transfers, self.reopens
        );
        match self.csat {
            Some((score, at)) => {
                let _ = write!(s, "{score},{}", rfc3339(at));
            }
            None => s.push(','),
        }
        s.push('\n');
        s
    }
}

/// One agent-status interval, as it goes to `truth/agent_status.csv`.
pub(crate) struct StatusRow {
    pub(crate) agent_id: String,
    pub(crate) from: i64,
    pub(crate) to: i64,
    pub(crate) status: &'static str,
    pub(crate) reason: &'static str,
}

pub(crate) struct Truth {
    path: PathBuf,
    status_path: PathBuf,
    writer: BufWriter<File>,
    /// Rows finished out of order wait here so the file lists conversations in the
    /// order they started; the map only holds what finished while an older
    /// conversation is still running, which is bounded by the longest conversation.
    pending: BTreeMap<u64, String>,
    next: u64,
    pub(crate) rows: u64,
    pub(crate) bytes: u64,
    pub(crate) status_rows: Vec<StatusRow>,
    pub(crate) status_bytes: u64,
    pub(crate) calibration: Calibration,
}

impl Truth {
    pub(crate) fn create(root: &Path) -> Result<Self, GenerateError> {
        let path = root.join("truth").join("conversations.csv");
        let f = File::create(&path).map_err(|e| GenerateError::io("create", &path, e))?;
        let mut writer = BufWriter::with_capacity(1 << 17, f);
        writer
            .write_all(CONVERSATIONS_HEADER.as_bytes())
            .and_then(|()| writer.write_all(b"\n"))
            .map_err(|e| GenerateError::io("write", &path, e))?;
        Ok(Self {
            status_path: root.join("truth").join("agent_status.csv"),
            path,
            writer,
            pending: BTreeMap::new(),
            next: 0,
            rows: 0,
            bytes: CONVERSATIONS_HEADER.len() as u64 + 1,
            status_rows: Vec::new(),
            status_bytes: 0,
            calibration: Calibration::default(),
        })
    }

    /// Records the row of conversation number `seq` (0-based, in order of start).
    pub(crate) fn push(&mut self, seq: u64, row: &ConvRow<'_>) {
        self.calibration.add(row);
        self.pending.insert(seq, row.render());
    }

    /// Writes the rows that are next in start order.
    pub(crate) fn drain(&mut self) -> Result<(), GenerateError> {
        while let Some(line) = self.pending.remove(&self.next) {
            self.write_row(&line)?;
            self.next += 1;
        }
        Ok(())
    }

    fn write_row(&mut self, line: &str) -> Result<(), GenerateError> {
        self.writer
            .write_all(line.as_bytes())
            .map_err(|e| GenerateError::io("write", &self.path, e))?;
        self.rows += 1;
        self.bytes += line.len() as u64;
        Ok(())
    }

    /// Writes what is left (every conversation has pushed its row by now) and the
    /// agent-status intervals.
    pub(crate) fn finish(&mut self) -> Result<(), GenerateError> {
        self.drain()?;
        let rest = std::mem::take(&mut self.pending);
        for line in rest.values() {
            self.write_row(line)?;
        }
        self.writer
            .flush()
            .map_err(|e| GenerateError::io("write", &self.path, e))?;

        self.status_rows.sort_by(|a, b| {
            a.from
                .cmp(&b.from)
                .then_with(|| a.agent_id.cmp(&b.agent_id))
        });
        let f = File::create(&self.status_path)
            .map_err(|e| GenerateError::io("create", &self.status_path, e))?;
        let mut w = BufWriter::new(f);
        let mut out =
            String::with_capacity(AGENT_STATUS_HEADER.len() + 80 * self.status_rows.len());
        out.push_str(AGENT_STATUS_HEADER);
        out.push('\n');
        for r in &self.status_rows {
            let _ = writeln!(
                out,
                "{},{},{},{},{}",
                r.agent_id,
                rfc3339(r.from),
                rfc3339(r.to),
                r.status,
                r.reason
            );
        }
        self.status_bytes = out.len() as u64;
        w.write_all(out.as_bytes())
            .and_then(|()| w.flush())
            .map_err(|e| GenerateError::io("write", &self.status_path, e))
    }
}
