//! Ordering and writing of the three event streams.
//!
//! Everything the simulation emits is stamped no earlier than its clock, so pending
//! items wait in a min-heap keyed by (timestamp, emission sequence) and everything
//! older than the clock is written whenever the clock moves. That gives files in exact
//! timestamp order while holding only the near future (mostly delivery statuses) in
//! memory.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::GenerateError;
use super::agent_log;
use super::clock::{date_string, utc_day};
use super::rng::SimRng;
use super::whatsapp::{self, EntryParts};

/// A rendered WhatsApp message or status, waiting to be put in a POST body.
pub(crate) struct WaPiece {
    pub(crate) inbox: u8,
    pub(crate) status: bool,
    pub(crate) json: String,
    /// The `contacts` element that goes with an inbound message.
    pub(crate) contact: Option<String>,
}

enum Payload {
    /// Rendered without its `id`, which is given at write time.
    AgentLog(String),
    Chatwoot(String),
    Wa(WaPiece),
}

struct Item {
    ts: i64,
    seq: u64,
    payload: Payload,
}

impl PartialEq for Item {
    fn eq(&self, other: &Self) -> bool {
        self.ts == other.ts && self.seq == other.seq
    }
}
impl Eq for Item {}
impl PartialOrd for Item {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Item {
    // Reversed so that `BinaryHeap` (a max-heap) yields the earliest item first.
    fn cmp(&self, other: &Self) -> Ordering {
        other.ts.cmp(&self.ts).then(other.seq.cmp(&self.seq))
    }
}

/// What one written file holds; it feeds the manifest and the summary.
#[derive(Clone, Debug)]
pub(crate) struct FileStat {
    /// Relative to the output directory, with `/` separators.
    pub(crate) rel: String,
    pub(crate) lines: u64,
    pub(crate) events: u64,
    pub(crate) bytes: u64,
}

/// Appends lines to `<root>/<sub>/<UTC date>.jsonl`, moving to the next file when the
/// date of the line changes (dates only grow, as lines come in time order).
pub(crate) struct DayWriter {
    root: PathBuf,
    sub: &'static str,
    day: i64,
    file: Option<(PathBuf, BufWriter<File>)>,
    pub(crate) files: Vec<FileStat>,
}

impl DayWriter {
    pub(crate) fn new(root: &Path, sub: &'static str) -> Self {
        Self {
            root: root.to_path_buf(),
            sub,
            day: i64::MIN,
            file: None,
            files: Vec::new(),
        }
    }

    fn write(&mut self, ts: i64, line: &[u8], events: u64) -> Result<(), GenerateError> {
        let day = utc_day(ts);
        if self.file.is_none() || day != self.day {
            self.close()?;
            let name = format!("{}.jsonl", date_string(day));
            let path = self.root.join(self.sub).join(&name);
            let f = File::create(&path).map_err(|e| GenerateError::io("create", &path, e))?;
            self.file = Some((path, BufWriter::with_capacity(1 << 18, f)));
            self.files.push(FileStat {
                rel: format!("{}/{}", self.sub, name),
                lines: 0,
                events: 0,
                bytes: 0,
            });
            self.day = day;
        }
        if let (Some((path, w)), Some(stat)) = (self.file.as_mut(), self.files.last_mut()) {
            w.write_all(line)
                .map_err(|e| GenerateError::io("write", path, e))?;
            stat.lines += 1;
            stat.events += events;
            stat.bytes += line.len() as u64;
        }
        Ok(())
    }

    fn close(&mut self) -> Result<(), GenerateError> {
        if let Some((path, mut w)) = self.file.take() {
            w.flush()
                .map_err(|e| GenerateError::io("write", &path, e))?;
        }
        Ok(())
    }
}

/// WhatsApp pieces being gathered into one POST body.
struct Batch {
    statuses: bool,
    day: i64,
    first_ts: i64,
    last_ts: i64,
    target: usize,
    two_entries: bool,
    inboxes: Vec<u8>,
    pieces: Vec<WaPiece>,
}

/// How far apart (seconds) the pieces of one body may be: Meta batches what it has
/// ready, which is only what happened within moments.
const BATCH_WINDOW_S: i64 = 3;

pub(crate) struct Output {
    heap: BinaryHeap<Item>,
    seq: u64,
    end: i64,
    next_event_id: u64,
    pub(crate) agent_log: DayWriter,
    pub(crate) whatsapp: DayWriter,
    pub(crate) chatwoot: DayWriter,
    batch: Option<Batch>,
    rng: SimRng,
    buf: Vec<u8>,
    /// Events written so far (see `Summary::events`).
    pub(crate) events: u64,
    error: Option<GenerateError>,
}

impl Output {
    /// `end`: items stamped at or after it fall outside the simulated window and are
    /// never written.
    pub(crate) fn new(root: &Path, end: i64, seed: u64) -> Self {
        Self {
            heap: BinaryHeap::new(),
            seq: 0,
            end,
            next_event_id: 1,
            agent_log: DayWriter::new(root, "agent-log"),
            whatsapp: DayWriter::new(root, "whatsapp"),
            chatwoot: DayWriter::new(root, "chatwoot"),
            batch: None,
            rng: SimRng::new(seed, 0xBA7C),
            buf: Vec::with_capacity(8192),
            events: 0,
            error: None,
        }
    }

    fn push(&mut self, ts: i64, payload: Payload) {
        self.seq += 1;
        self.heap.push(Item {
            ts,
            seq: self.seq,
            payload,
        });
    }

    pub(crate) fn fail(&mut self, e: serde_json::Error) {
        if self.error.is_none() {
            self.error = Some(GenerateError::Render(e));
        }
    }

    pub(crate) fn agent_log(&mut self, ts: i64, rendered: Result<String, serde_json::Error>) {
        match rendered {
            Ok(s) => self.push(ts, Payload::AgentLog(s)),
            Err(e) => self.fail(e),
        }
    }

    pub(crate) fn chatwoot(&mut self, ts: i64, rendered: Result<String, serde_json::Error>) {
        match rendered {
            Ok(s) => self.push(ts, Payload::Chatwoot(s)),
            Err(e) => self.fail(e),
        }
    }

    pub(crate) fn whatsapp(&mut self, ts: i64, piece: WaPiece) {
        self.push(ts, Payload::Wa(piece));
    }

    /// A rendering failure recorded while the simulation could not return it.
    pub(crate) fn take_error(&mut self) -> Option<GenerateError> {
        self.error.take()
    }

    /// Writes every pending item stamped before `t`.
    pub(crate) fn flush_before(&mut self, t: i64) -> Result<(), GenerateError> {
        let limit = t.min(self.end);
        while self.heap.peek().is_some_and(|i| i.ts < limit) {
            let Some(item) = self.heap.pop() else { break };
            self.write_item(item)?;
        }
        Ok(())
    }

    fn write_item(&mut self, item: Item) -> Result<(), GenerateError> {
        match item.payload {
            Payload::AgentLog(s) => {
                self.buf.clear();
                agent_log::write_with_id(&mut self.buf, self.next_event_id, &s);
                self.next_event_id += 1;
                self.events += 1;
                self.agent_log.write(item.ts, &self.buf, 1)
            }
            Payload::Chatwoot(s) => {
                self.buf.clear();
                self.buf.extend_from_slice(s.as_bytes());
                self.buf.push(b'\n');
                self.events += 1;
                self.chatwoot.write(item.ts, &self.buf, 1)
            }
            Payload::Wa(p) => self.add_to_batch(item.ts, p),
        }
    }

    fn add_to_batch(&mut self, ts: i64, piece: WaPiece) -> Result<(), GenerateError> {
        let day = utc_day(ts);
        if let Some(b) = self.batch.as_mut() {
            let inbox_ok =
                b.inboxes.contains(&piece.inbox) || (b.two_entries && b.inboxes.len() < 2);
            if b.statuses == piece.status
                && b.day == day
                && ts - b.first_ts <= BATCH_WINDOW_S
                && b.pieces.len() < b.target
                && inbox_ok
            {
                if !b.inboxes.contains(&piece.inbox) {
                    b.inboxes.push(piece.inbox);
                }
                b.pieces.push(piece);
                b.last_ts = ts;
                if b.pieces.len() >= b.target {
                    self.close_batch()?;
                }
                return Ok(());
            }
            self.close_batch()?;
        }
        // Most bodies carry one item; some carry a few, a few span both accounts.
        let target = if self.rng.chance(0.8) {
            1
        } else {
            self.rng.int(2, 4) as usize
        };
        let two_entries = self.rng.chance(0.3);
        self.batch = Some(Batch {
            statuses: piece.status,
            day,
            first_ts: ts,
            last_ts: ts,
            target,
            two_entries,
            inboxes: vec![piece.inbox],
            pieces: vec![piece],
        });
        if target == 1 {
            self.close_batch()?;
        }
        Ok(())
    }

    fn close_batch(&mut self) -> Result<(), GenerateError> {
        let Some(b) = self.batch.take() else {
            return Ok(());
        };
        let mut entries: Vec<EntryParts<'_>> = Vec::with_capacity(b.inboxes.len());
        for inbox in &b.inboxes {
            let mut e = EntryParts {
                inbox: *inbox,
                contacts: Vec::new(),
                items: Vec::new(),
            };
            for p in b.pieces.iter().filter(|p| p.inbox == *inbox) {
                e.items.push(&p.json);
                if let Some(c) = &p.contact
                    && !e.contacts.contains(&c.as_str())
                {
                    e.contacts.push(c);
                }
            }
            entries.push(e);
        }
        self.buf.clear();
        whatsapp::write_body(&mut self.buf, &entries, b.statuses);
        let n = b.pieces.len() as u64;
        self.events += n;
        self.whatsapp.write(b.last_ts, &self.buf, n)
    }

    /// Writes what falls inside the window, drops the rest, and flushes the files.
    pub(crate) fn finish(&mut self) -> Result<(), GenerateError> {
        self.flush_before(self.end)?;
        self.heap.clear();
        self.close_batch()?;
        self.agent_log.close()?;
        self.whatsapp.close()?;
        self.chatwoot.close()
    }
}
