//! The bytes of a write-ahead log segment: frames, row records, and reading back what is
//! intact around whatever is not.
//!
//! # Format
//!
//! A segment (`<lake>/_wal/<16-digit number>.wal`) is a magic line, `supportlake-wal 2\n`,
//! followed by **frames**, one per appended record:
//!
//! | bytes | what |
//! |---|---|
//! | 4 | the frame marker `D5 1A 7E C3` |
//! | 4 | payload length, `u32` little-endian |
//! | 4 | header check: low 32 bits of XXH64 (seed 1) of the marker and length bytes |
//! | 8 | XXH64 (seed 0) of the payload, little-endian |
//! | n | the payload |
//!
//! A payload is either a row record ([`RowRecord`]: the events of one request, written by
//! the server) or one Arrow IPC stream holding one batch of canonical events (written by
//! erasure when it rewrites a segment). An IPC stream starts with `0xFFFFFFFF`, a row record
//! with `ROW1`.
//!
//! Segments of version 1 (`supportlake-wal 1\n`, earlier releases) have no marker and no
//! header check: `u32` length, `u64` XXH64, payload. They are still read.
//!
//! # Reading around damage
//!
//! The marker and the header check let a reader find the next frame after bytes that fail
//! their checks, so one damaged record costs only itself: every intact frame after it is
//! read. [`parse_segment`] reports each run of bytes it could not read ([`Damage`]) by
//! offset, with what it means:
//! - **torn**: the last frame promises more bytes than the file has. A write was cut short
//!   by a crash; its `fdatasync` never returned, so it was never acknowledged.
//! - **damaged in the middle**: bytes between intact frames. They held acknowledged
//!   records, now unreadable; the log says so and the bytes are kept aside.
//! - **damaged at the end**: no intact frame follows. Either a write cut short in a way
//!   that left other bytes than a short frame, or acknowledged records damaged since; kept
//!   aside too.
//! - **unwritten**: zero bytes at the end (space a file system allocated, never written).
//!   Nothing.
//! - **bad record**: a frame whose checksum holds but whose payload does not decode (a
//!   record of a format this release does not know). Kept aside.
//!
//! Version 1 segments have no marker to resynchronize on: reading stops at the first bad
//! record and everything from there on is kept aside.

use std::path::Path;

use arrow::array::RecordBatch;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use chrono::{DateTime, Utc};

use crate::event::{Author, EventBatchBuilder, EventRef, EventSink, Kind, Source};
use crate::lake::LakeError;

/// The magic line of segments this release writes.
pub(super) const MAGIC: &[u8] = b"supportlake-wal 2\n";
/// The magic line of segments of earlier releases (read, never written).
const MAGIC_V1: &[u8] = b"supportlake-wal 1\n";
/// The first bytes of every frame.
const MARKER: [u8; 4] = [0xD5, 0x1A, 0x7E, 0xC3];
/// Marker, length, header check, payload checksum.
pub(super) const FRAME_HEAD: usize = 20;
/// Records larger than this are refused (a request body is far smaller).
pub(super) const MAX_RECORD: usize = 256 << 20;

/// Appends one frame holding `payload` to `out`.
pub(super) fn push_frame(out: &mut Vec<u8>, payload: &[u8]) {
    let len = (payload.len() as u32).to_le_bytes();
    out.extend_from_slice(&MARKER);
    out.extend_from_slice(&len);
    out.extend_from_slice(&header_check(&len).to_le_bytes());
    out.extend_from_slice(&twox_hash::XxHash64::oneshot(0, payload).to_le_bytes());
    out.extend_from_slice(payload);
}

fn header_check(len: &[u8; 4]) -> u32 {
    let mut h = [0u8; 8];
    h[..4].copy_from_slice(&MARKER);
    h[4..].copy_from_slice(len);
    twox_hash::XxHash64::oneshot(1, &h) as u32
}

/// Encodes a batch of events as one WAL payload.
pub fn encode(batch: &RecordBatch) -> Result<Vec<u8>, arrow::error::ArrowError> {
    let mut buf = Vec::with_capacity(batch.get_array_memory_size() / 2 + 1024);
    let mut w = StreamWriter::try_new(&mut buf, &batch.schema())?;
    w.write(batch)?;
    w.finish()?;
    drop(w);
    Ok(buf)
}

/// The first bytes of a row record.
const ROWS_TAG: &[u8; 4] = b"ROW1";
/// Rows per batch when a segment's row records are read back.
const READ_BATCH_ROWS: usize = 8192;
/// Length that stands for an absent optional string in a row record.
const ABSENT: u32 = u32::MAX;

/// The events of one request as a write-ahead log record: a few plain bytes per field,
/// much cheaper to build for a handful of events than an Arrow batch, which the flusher
/// builds once per segment instead.
///
/// Layout (little-endian): `ROW1`, `received_at` (`i64` µs), the event count (`u32`), then
/// per event: `ts` (`i64` µs), `source`, `kind` and `author` as `u8`-length strings (length
/// 0: no author), `csat_score` as a presence byte and an `i8`, then `event_id` and the
/// eleven optional strings (`conversation_id` … `reason`, `attrs`) each as a `u32` length
/// (`u32::MAX`: absent) and UTF-8 bytes.
pub struct RowRecord {
    buf: Vec<u8>,
    count: u32,
}

impl RowRecord {
    pub fn new(received_at: DateTime<Utc>, capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity + 16);
        buf.extend_from_slice(ROWS_TAG);
        buf.extend_from_slice(&received_at.timestamp_micros().to_le_bytes());
        buf.extend_from_slice(&0u32.to_le_bytes());
        RowRecord { buf, count: 0 }
    }

    pub fn len(&self) -> usize {
        self.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The payload to append.
    pub fn finish(mut self) -> Vec<u8> {
        self.buf[12..16].copy_from_slice(&self.count.to_le_bytes());
        self.buf
    }

    fn short(&mut self, s: &str) {
        // Enum names: a few bytes, far below 255.
        self.buf.push(s.len().min(255) as u8);
        self.buf
            .extend_from_slice(&s.as_bytes()[..s.len().min(255)]);
    }

    fn string(&mut self, s: Option<&str>) {
        match s {
            Some(s) => {
                self.buf.extend_from_slice(&(s.len() as u32).to_le_bytes());
                self.buf.extend_from_slice(s.as_bytes());
            }
            None => self.buf.extend_from_slice(&ABSENT.to_le_bytes()),
        }
    }
}

impl EventSink for RowRecord {
    fn push(&mut self, e: &EventRef<'_>) {
        self.buf.extend_from_slice(&e.ts.to_le_bytes());
        self.short(e.source.as_str());
        self.short(e.kind.as_str());
        self.short(e.author.map_or("", Author::as_str));
        match e.csat_score {
            Some(v) => self.buf.extend_from_slice(&[1, v as u8]),
            None => self.buf.extend_from_slice(&[0, 0]),
        }
        self.string(Some(e.event_id));
        for s in [
            e.conversation_id,
            e.customer_key,
            e.agent_id,
            e.team,
            e.channel,
            e.inbox,
            e.priority,
            e.message_id,
            e.status,
            e.reason,
            e.attrs,
        ] {
            self.string(s);
        }
        self.count += 1;
    }
}

/// Reads a row record into `out`; the error says what is wrong with it.
fn read_rows(payload: &[u8], out: &mut EventBatchBuilder) -> Result<(), String> {
    struct Cursor<'a> {
        b: &'a [u8],
        at: usize,
    }
    impl<'a> Cursor<'a> {
        fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
            let end = self.at.checked_add(n).filter(|&e| e <= self.b.len());
            let end = end.ok_or_else(|| format!("row record cut short at byte {}", self.at))?;
            let s = &self.b[self.at..end];
            self.at = end;
            Ok(s)
        }
        fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
            let mut a = [0u8; N];
            a.copy_from_slice(self.take(N)?);
            Ok(a)
        }
        fn text(&mut self, n: usize) -> Result<&'a str, String> {
            let at = self.at;
            std::str::from_utf8(self.take(n)?)
                .map_err(|_| format!("row record holds a string that is not UTF-8 at byte {at}"))
        }
        fn short(&mut self) -> Result<&'a str, String> {
            let [n] = self.array::<1>()?;
            self.text(n as usize)
        }
        fn string(&mut self) -> Result<Option<&'a str>, String> {
            match u32::from_le_bytes(self.array()?) {
                ABSENT => Ok(None),
                n => self.text(n as usize).map(Some),
            }
        }
    }
    let mut c = Cursor { b: payload, at: 0 };
    if c.take(4)? != ROWS_TAG {
        return Err("not a row record".into());
    }
    let received_at = i64::from_le_bytes(c.array()?);
    let count = u32::from_le_bytes(c.array()?);
    // Read whole before anything reaches `out`: a record that turns out bad adds nothing.
    let mut events = Vec::with_capacity((count as usize).min(payload.len() / 32));
    for _ in 0..count {
        let ts = i64::from_le_bytes(c.array()?);
        let source = c.short()?;
        let source = Source::parse(source).ok_or_else(|| format!("unknown source {source:?}"))?;
        let kind = c.short()?;
        let kind = Kind::parse(kind).ok_or_else(|| format!("unknown kind {kind:?}"))?;
        let author = match c.short()? {
            "" => None,
            a => Some(Author::parse(a).ok_or_else(|| format!("unknown author {a:?}"))?),
        };
        let [has_csat, csat] = c.array::<2>()?;
        let event_id = c.string()?.ok_or("row record without an event id")?;
        let mut e = EventRef::new(event_id, ts, source, kind);
        e.author = author;
        e.csat_score = (has_csat == 1).then_some(csat as i8);
        e.conversation_id = c.string()?;
        e.customer_key = c.string()?;
        e.agent_id = c.string()?;
        e.team = c.string()?;
        e.channel = c.string()?;
        e.inbox = c.string()?;
        e.priority = c.string()?;
        e.message_id = c.string()?;
        e.status = c.string()?;
        e.reason = c.string()?;
        e.attrs = c.string()?;
        events.push(e);
    }
    if c.at != payload.len() {
        return Err(format!(
            "row record has {} bytes after its {count} events",
            payload.len() - c.at
        ));
    }
    out.set_received_at(crate::event::micros_to_datetime(received_at));
    for e in &events {
        out.push(e);
    }
    Ok(())
}

/// A whole segment holding `batches`, one record each: what [`read_segment`] reads back.
pub(crate) fn encode_segment(batches: &[RecordBatch]) -> Result<Vec<u8>, arrow::error::ArrowError> {
    let mut out = MAGIC.to_vec();
    for b in batches {
        push_frame(&mut out, &encode(b)?);
    }
    Ok(out)
}

/// What a run of unreadable bytes means; see the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DamageKind {
    /// A frame cut short at the end of the file: never acknowledged.
    Torn,
    /// Between intact frames: acknowledged records lost.
    Middle,
    /// At the end, with no intact frame after it.
    End,
    /// The magic line is not one this release knows; frames were looked for anyway.
    Header,
    /// A frame whose checksum holds but whose payload does not decode.
    BadRecord(String),
    /// A version 1 segment's record that fails its checks: nothing after it can be read.
    V1Rest,
}

/// A run of bytes of a segment that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    pub start: u64,
    pub end: u64,
    pub kind: DamageKind,
    /// Intact records read after these bytes.
    pub records_after: u64,
}

impl Damage {
    /// Whether the bytes may have held acknowledged events (worth keeping for inspection).
    pub fn may_hold_acknowledged(&self) -> bool {
        !matches!(self.kind, DamageKind::Torn | DamageKind::Header)
    }
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (s, e) = (self.start, self.end);
        match &self.kind {
            DamageKind::Torn => write!(
                f,
                "bytes {s}..{e}: a record cut short by a crash during its write (never acknowledged)"
            ),
            DamageKind::Middle => write!(
                f,
                "bytes {s}..{e}: damaged between intact records; the acknowledged records they held are lost, the {} intact records after them are kept",
                self.records_after
            ),
            DamageKind::End => write!(
                f,
                "bytes {s}..{e}: damaged at the end of the segment (a write cut short by a crash, never acknowledged, or acknowledged records damaged since)"
            ),
            DamageKind::Header => write!(
                f,
                "bytes {s}..{e}: the segment's first line is damaged; its records were found by their frames"
            ),
            DamageKind::BadRecord(why) => write!(
                f,
                "bytes {s}..{e}: a record that passes its checksum but does not decode ({why}); the {} records after it are kept",
                self.records_after
            ),
            DamageKind::V1Rest => write!(
                f,
                "bytes {s}..{e}: a record of an old-format segment fails its checks; the old format cannot be read past it"
            ),
        }
    }
}

/// What [`parse_segment`] read.
#[derive(Debug, Default)]
pub struct SegmentRead {
    /// The events of every intact record, in order.
    pub batches: Vec<RecordBatch>,
    /// Intact records.
    pub records: u64,
    /// Runs of bytes that could not be read.
    pub damage: Vec<Damage>,
}

/// Reads a segment file; only an I/O error is an error.
pub fn read_segment(path: &Path) -> Result<SegmentRead, LakeError> {
    let bytes = std::fs::read(path).map_err(|e| LakeError::io(path, e))?;
    Ok(parse_segment(&bytes))
}

/// Decodes payloads into batches, keeping record order (rows of row records are joined into
/// batches of up to [`READ_BATCH_ROWS`]).
struct Decoder {
    out: SegmentRead,
    rows: EventBatchBuilder,
}

impl Decoder {
    fn new() -> Self {
        Decoder {
            out: SegmentRead::default(),
            rows: EventBatchBuilder::new(DateTime::<Utc>::UNIX_EPOCH),
        }
    }

    /// Adds one record; an error says why it does not decode (nothing of it was added).
    fn record(&mut self, payload: &[u8]) -> Result<(), String> {
        if payload.starts_with(ROWS_TAG) {
            read_rows(payload, &mut self.rows)?;
            if self.rows.len() >= READ_BATCH_ROWS {
                self.out.batches.push(self.rows.finish());
            }
        } else {
            let reader = StreamReader::try_new(std::io::Cursor::new(payload), None)
                .map_err(|e| e.to_string())?;
            let batches = reader
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| e.to_string())?;
            if let Some(b) = batches
                .iter()
                .find(|b| b.schema().fields() != crate::event::schema().fields())
            {
                return Err(format!(
                    "a batch with {} columns that are not the events columns",
                    b.num_columns()
                ));
            }
            // Keep the order of the records: rows read so far come first.
            if !self.rows.is_empty() {
                self.out.batches.push(self.rows.finish());
            }
            self.out.batches.extend(batches);
        }
        self.out.records += 1;
        Ok(())
    }

    fn finish(mut self) -> SegmentRead {
        if !self.rows.is_empty() {
            self.out.batches.push(self.rows.finish());
        }
        let total = self.out.records;
        for d in &mut self.out.damage {
            d.records_after = total - d.records_after;
        }
        self.out
    }

    /// Notes damage; `records_after` is fixed up in [`Self::finish`] (records read so far
    /// are kept there meanwhile).
    fn damage(&mut self, start: usize, end: usize, kind: DamageKind) {
        self.out.damage.push(Damage {
            start: start as u64,
            end: end as u64,
            kind,
            records_after: self.out.records,
        });
    }
}

/// One frame at `at`, as far as the bytes tell.
enum Frame<'a> {
    Intact {
        payload: &'a [u8],
        next: usize,
    },
    /// A good header whose payload runs past the end of the bytes.
    Torn,
    Bad,
}

fn frame_at(b: &[u8], at: usize) -> Frame<'_> {
    let Some(head) = b.get(at..at + FRAME_HEAD) else {
        return if b.len() - at < FRAME_HEAD && b[at..].starts_with(&MARKER[..(b.len() - at).min(4)])
        {
            Frame::Torn
        } else {
            Frame::Bad
        };
    };
    let len: [u8; 4] = head[4..8].try_into().unwrap_or_default();
    let check = u32::from_le_bytes(head[8..12].try_into().unwrap_or_default());
    if head[..4] != MARKER || header_check(&len) != check {
        return Frame::Bad;
    }
    let n = u32::from_le_bytes(len) as usize;
    if n > MAX_RECORD {
        return Frame::Bad;
    }
    let start = at + FRAME_HEAD;
    let Some(payload) = b.get(start..start + n) else {
        return Frame::Torn;
    };
    let sum = u64::from_le_bytes(head[12..20].try_into().unwrap_or_default());
    if twox_hash::XxHash64::oneshot(0, payload) != sum {
        return Frame::Bad;
    }
    Frame::Intact {
        payload,
        next: start + n,
    }
}

/// Reads every intact record of a segment's bytes and reports the rest. Pure: the same
/// bytes always give the same answer.
pub fn parse_segment(b: &[u8]) -> SegmentRead {
    let mut d = Decoder::new();
    if b.is_empty() {
        return d.finish();
    }
    if b.starts_with(MAGIC_V1) {
        read_v1(b, &mut d);
        return d.finish();
    }
    let from = if b.starts_with(MAGIC) {
        MAGIC.len()
    } else {
        // Look for frames from the start; what comes before the first is the bad header.
        let first = memchr::memmem::find(b, &MARKER).unwrap_or(b.len());
        d.damage(0, first, DamageKind::Header);
        first
    };
    read_frames(b, from, &mut d);
    if !b.starts_with(MAGIC) && d.out.records == 0 && b.len() > MAGIC_V1.len() {
        // Maybe an old-format segment whose first line is damaged.
        let mut v1 = Decoder::new();
        read_v1(b, &mut v1);
        if v1.out.records > 0 {
            v1.damage(0, MAGIC_V1.len(), DamageKind::Header);
            return v1.finish();
        }
    }
    d.finish()
}

fn read_frames(b: &[u8], from: usize, d: &mut Decoder) {
    let mut at = from;
    let mut bad_from: Option<usize> = None;
    while at < b.len() {
        match frame_at(b, at) {
            Frame::Intact { payload, next } => {
                if let Some(s) = bad_from.take() {
                    d.damage(s, at, DamageKind::Middle);
                }
                let records_before = d.out.records;
                if let Err(why) = d.record(payload) {
                    d.out.damage.push(Damage {
                        start: at as u64,
                        end: next as u64,
                        kind: DamageKind::BadRecord(why),
                        records_after: records_before,
                    });
                }
                at = next;
            }
            Frame::Torn => {
                match bad_from.take() {
                    Some(s) => d.damage(s, b.len(), DamageKind::End),
                    None => d.damage(at, b.len(), DamageKind::Torn),
                }
                return;
            }
            Frame::Bad => {
                bad_from.get_or_insert(at);
                at = match memchr::memmem::find(&b[at + 1..], &MARKER) {
                    Some(i) => at + 1 + i,
                    None => b.len(),
                };
            }
        }
    }
    if let Some(s) = bad_from
        && b[s..].iter().any(|&x| x != 0)
    {
        d.damage(s, b.len(), DamageKind::End);
    }
}

fn read_v1(b: &[u8], d: &mut Decoder) {
    let mut at = MAGIC_V1.len();
    while at < b.len() {
        let Some(head) = b.get(at..at + 12) else {
            d.damage(at, b.len(), DamageKind::Torn);
            return;
        };
        let n = u32::from_le_bytes(head[..4].try_into().unwrap_or_default()) as usize;
        let sum = u64::from_le_bytes(head[4..].try_into().unwrap_or_default());
        let start = at + 12;
        let payload = if n <= MAX_RECORD {
            b.get(start..start + n)
        } else {
            None
        };
        let Some(payload) = payload else {
            let kind = if n <= MAX_RECORD {
                DamageKind::Torn
            } else {
                DamageKind::V1Rest
            };
            d.damage(at, b.len(), kind);
            return;
        };
        if twox_hash::XxHash64::oneshot(0, payload) != sum {
            d.damage(at, b.len(), DamageKind::V1Rest);
            return;
        }
        if let Err(why) = d.record(payload) {
            d.damage(at, start + n, DamageKind::BadRecord(why));
        }
        at = start + n;
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::event::{EventBatchBuilder, EventRef, EventSink, Kind, Source};

    fn batch(id: &str) -> RecordBatch {
        let mut b = EventBatchBuilder::new(Utc.with_ymd_and_hms(2026, 11, 2, 12, 0, 0).unwrap());
        b.push(&EventRef::new(
            id,
            1_793_620_800_000_000,
            Source::AgentLog,
            Kind::ConversationOpened,
        ));
        b.finish()
    }

    /// Events with every field set, none set, and text that is not ASCII.
    fn varied_events() -> Vec<crate::event::Event> {
        use crate::event::Author;
        let mut full = EventRef::new(
            "wamid.ÉÑ-1",
            1_793_620_800_123_456,
            Source::WhatsApp,
            Kind::CsatSubmitted,
        );
        full.conversation_id = Some("c-1");
        full.customer_key = Some("ab12");
        full.agent_id = Some("agente.joão");
        full.team = Some("suporte 🛟");
        full.channel = Some("whatsapp");
        full.inbox = Some("");
        full.priority = Some("high");
        full.author = Some(Author::Customer);
        full.message_id = Some("m-1");
        full.status = Some("read");
        full.reason = Some("131047");
        full.csat_score = Some(-3);
        full.attrs = Some(r#"{"private":true}"#);
        let bare = EventRef::new("e-2", -5, Source::AgentLog, Kind::AgentStatus);
        let received = Utc.with_ymd_and_hms(2026, 11, 2, 12, 0, 0).unwrap();
        let mut sink = crate::event::VecSink::new(received);
        sink.push(&full);
        sink.push(&bare);
        sink.events
    }

    #[test]
    fn row_records_read_back_as_the_batch_the_events_make() {
        let events = varied_events();
        let received = events[0].received_at;
        let mut direct = EventBatchBuilder::new(received);
        let mut record = RowRecord::new(received, 0);
        for e in &events {
            direct.push(&e.as_ref());
            record.push(&e.as_ref());
        }
        assert_eq!(record.len(), 2);
        let mut back = EventBatchBuilder::new(DateTime::<Utc>::UNIX_EPOCH);
        read_rows(&record.finish(), &mut back).unwrap();
        assert_eq!(back.finish(), direct.finish());
    }

    #[test]
    fn a_damaged_row_record_is_an_error_not_a_panic() {
        let events = varied_events();
        let mut record = RowRecord::new(events[0].received_at, 0);
        for e in &events {
            record.push(&e.as_ref());
        }
        let payload = record.finish();
        for cut in 0..payload.len() {
            let mut out = EventBatchBuilder::new(DateTime::<Utc>::UNIX_EPOCH);
            assert!(
                read_rows(&payload[..cut], &mut out).is_err(),
                "cut at {cut}"
            );
        }
        let mut longer = payload.clone();
        longer.push(0);
        let mut out = EventBatchBuilder::new(DateTime::<Utc>::UNIX_EPOCH);
        let err = read_rows(&longer, &mut out).unwrap_err();
        assert!(err.contains("1 bytes after its 2 events"), "{err}");
        let mut bad_kind = payload;
        // The kind's first letter ("c" of csat_submitted) after tag, received_at, count,
        // ts, and the source "whatsapp" with its length byte.
        let at = 4 + 8 + 4 + 8 + 9 + 1;
        assert_eq!(bad_kind[at], b'c');
        bad_kind[at] = b'x';
        let mut out = EventBatchBuilder::new(DateTime::<Utc>::UNIX_EPOCH);
        let err = read_rows(&bad_kind, &mut out).unwrap_err();
        assert!(err.contains("unknown kind"), "{err}");
    }

    #[test]
    fn a_segment_mixing_row_and_arrow_records_reads_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let events = varied_events();
        let mut seg = MAGIC.to_vec();
        let mut add = |payload: Vec<u8>| push_frame(&mut seg, &payload);
        let mut first = RowRecord::new(events[0].received_at, 0);
        first.push(&events[0].as_ref());
        add(first.finish());
        add(encode(&batch("middle")).unwrap());
        let mut last = RowRecord::new(events[1].received_at, 0);
        last.push(&events[1].as_ref());
        add(last.finish());
        let path = dir.path().join("0000000000000001.wal");
        std::fs::write(&path, &seg).unwrap();
        let read = read_segment(&path).unwrap();
        assert!(read.damage.is_empty(), "{:?}", read.damage);
        let ids: Vec<String> = read
            .batches
            .iter()
            .flat_map(|b| {
                let col = b.column(0).as_any();
                let a = col.downcast_ref::<arrow::array::StringArray>().unwrap();
                a.iter().map(|v| v.unwrap().to_owned()).collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(ids, ["wamid.ÉÑ-1", "middle", "e-2"]);
    }

    /// The event ids of what was read, in order.
    fn ids(read: &SegmentRead) -> Vec<String> {
        read.batches
            .iter()
            .flat_map(|b| {
                let col = b.column(0).as_any();
                let a = col.downcast_ref::<arrow::array::StringArray>().unwrap();
                a.iter().map(|v| v.unwrap().to_owned()).collect::<Vec<_>>()
            })
            .collect()
    }

    /// A segment of `n` one-event row records with ids r0, r1, …; also the offset where
    /// each frame starts.
    fn segment_of(n: usize) -> (Vec<u8>, Vec<usize>) {
        let received = Utc.with_ymd_and_hms(2026, 11, 2, 12, 0, 0).unwrap();
        let mut seg = MAGIC.to_vec();
        let mut starts = Vec::new();
        for i in 0..n {
            let mut r = RowRecord::new(received, 0);
            let id = format!("r{i}");
            let mut e = EventRef::new(
                &id,
                1_793_620_800_000_000,
                Source::AgentLog,
                Kind::MessageIn,
            );
            e.attrs = Some(r#"{"n":1}"#);
            r.push(&e);
            starts.push(seg.len());
            push_frame(&mut seg, &r.finish());
        }
        (seg, starts)
    }

    fn all(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("r{i}")).collect()
    }

    /// Regression: a record failing its checksum in the middle of a segment used to end
    /// the reading there, dropping every intact record after it as "never acknowledged".
    #[test]
    fn a_damaged_record_in_the_middle_costs_only_itself() {
        let (mut seg, starts) = segment_of(10);
        // One payload byte of record 4 flipped.
        seg[starts[4] + FRAME_HEAD + 3] ^= 0xff;
        let read = parse_segment(&seg);
        let mut want = all(10);
        want.remove(4);
        assert_eq!(ids(&read), want);
        assert_eq!(read.records, 9);
        assert_eq!(read.damage.len(), 1, "{:?}", read.damage);
        let d = &read.damage[0];
        assert_eq!(d.kind, DamageKind::Middle);
        assert_eq!((d.start, d.end), (starts[4] as u64, starts[5] as u64));
        assert_eq!(d.records_after, 5);
        assert!(d.may_hold_acknowledged());
        assert!(
            d.to_string()
                .contains("5 intact records after them are kept"),
            "{d}"
        );
    }

    #[test]
    fn damaged_lengths_and_markers_are_skipped_to_the_next_frame() {
        for (what, at) in [
            ("marker", 0),
            ("length", 5),
            ("header check", 9),
            ("checksum", 14),
        ] {
            let (mut seg, starts) = segment_of(6);
            seg[starts[2] + at] ^= 0x10;
            let read = parse_segment(&seg);
            let mut want = all(6);
            want.remove(2);
            assert_eq!(ids(&read), want, "{what}");
            assert_eq!(read.damage.len(), 1, "{what}: {:?}", read.damage);
            assert_eq!(read.damage[0].start, starts[2] as u64, "{what}");
            assert_eq!(read.damage[0].end, starts[3] as u64, "{what}");
        }
        // Garbage spanning several frames, marker look-alikes included.
        let (mut seg, starts) = segment_of(8);
        for (k, b) in seg[starts[2]..starts[5]].iter_mut().enumerate() {
            *b = [0xD5, 0x1A, 0x7E, 0xC3, 0x00, 0x42][k % 6];
        }
        let read = parse_segment(&seg);
        assert_eq!(ids(&read), ["r0", "r1", "r5", "r6", "r7"]);
        assert_eq!(read.damage.len(), 1, "{:?}", read.damage);
        assert_eq!(read.damage[0].records_after, 3);
    }

    /// Regression: a damaged magic line used to make the whole segment be skipped.
    #[test]
    fn a_damaged_first_line_loses_no_record() {
        let (mut seg, starts) = segment_of(5);
        seg[3] = b'X';
        let read = parse_segment(&seg);
        assert_eq!(ids(&read), all(5));
        assert_eq!(read.damage.len(), 1);
        assert_eq!(read.damage[0].kind, DamageKind::Header);
        assert_eq!(read.damage[0].end, starts[0] as u64);
        assert!(!read.damage[0].may_hold_acknowledged());
        // The first line missing altogether.
        let read = parse_segment(&seg[MAGIC.len()..]);
        assert_eq!(ids(&read), all(5));
    }

    #[test]
    fn a_torn_tail_is_never_acknowledged_and_zeros_are_nothing() {
        let (seg, starts) = segment_of(4);
        for cut in starts[3] + 1..seg.len() {
            let read = parse_segment(&seg[..cut]);
            assert_eq!(ids(&read), all(3), "cut at {cut}");
            assert_eq!(read.damage.len(), 1, "cut at {cut}");
            assert_eq!(read.damage[0].kind, DamageKind::Torn, "cut at {cut}");
            assert!(!read.damage[0].may_hold_acknowledged());
        }
        let mut zeros = seg.clone();
        zeros.extend_from_slice(&[0; 4096]);
        let read = parse_segment(&zeros);
        assert_eq!(ids(&read), all(4));
        assert!(read.damage.is_empty(), "{:?}", read.damage);
        // A complete last frame whose payload was damaged: the end is damaged, not torn.
        let mut last = seg.clone();
        let n = last.len();
        last[n - 2] ^= 1;
        let read = parse_segment(&last);
        assert_eq!(ids(&read), all(3));
        assert_eq!(read.damage[0].kind, DamageKind::End);
        assert!(read.damage[0].may_hold_acknowledged());
    }

    #[test]
    fn a_record_that_passes_its_checksum_but_does_not_decode_is_set_apart() {
        let (seg, starts) = segment_of(3);
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&seg[starts[0]..starts[1]]);
        push_frame(&mut out, b"ROW1 but not really");
        out.extend_from_slice(&seg[starts[1]..]);
        let read = parse_segment(&out);
        assert_eq!(ids(&read), all(3));
        assert_eq!(read.damage.len(), 1);
        assert!(
            matches!(read.damage[0].kind, DamageKind::BadRecord(_)),
            "{:?}",
            read.damage
        );
        assert_eq!(read.damage[0].records_after, 2);
    }

    /// Segments of the earlier format still read; a bad record ends what can be read.
    #[test]
    fn version_1_segments_read_up_to_their_first_bad_record() {
        let (v2, starts) = segment_of(4);
        let mut v1 = MAGIC_V1.to_vec();
        let mut v1_starts = Vec::new();
        for w in starts
            .windows(2)
            .map(|w| (w[0], w[1]))
            .chain([(starts[3], v2.len())])
        {
            let payload = &v2[w.0 + FRAME_HEAD..w.1];
            v1_starts.push(v1.len());
            v1.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            v1.extend_from_slice(&twox_hash::XxHash64::oneshot(0, payload).to_le_bytes());
            v1.extend_from_slice(payload);
        }
        let read = parse_segment(&v1);
        assert_eq!(ids(&read), all(4));
        assert!(read.damage.is_empty());
        v1[v1_starts[2] + 20] ^= 1;
        let read = parse_segment(&v1);
        assert_eq!(ids(&read), all(2));
        assert_eq!(read.damage[0].kind, DamageKind::V1Rest);
        assert_eq!(read.damage[0].end, v1.len() as u64);
    }
}
