//! A query running for a Postgres client, and the cursors that keep one between fetches.
//!
//! Every way the protocol can leave a query half-read — a portal suspended at the row
//! limit of an `Execute`, a cursor between two `FETCH`es — keeps the sandbox's bounds:
//! - the deadline is fixed when the query starts; a later read past it fails with the
//!   timeout error, and a read that waits for a slow operator is cut at the deadline;
//! - the row cap counts every row the query returns, across all fetches;
//! - the query slot ([`Slot`]) goes back when the rows are done, the portal or cursor is
//!   dropped, or the deadline passes — whichever is first — so a client that declares
//!   cursors and never reads them cannot hold the analyst slots.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::physical_plan::SendableRecordBatchStream;
use futures::StreamExt;
use tokio::sync::{Mutex, OwnedSemaphorePermit};
use tokio::time::Instant;

use super::SandboxError;

/// A query slot held for one running query, given back at the latest at its deadline.
pub struct Slot {
    permit: Arc<std::sync::Mutex<Option<OwnedSemaphorePermit>>>,
    expiry: tokio::task::AbortHandle,
}

impl Slot {
    pub fn new(permit: OwnedSemaphorePermit, deadline: Instant) -> Slot {
        let permit = Arc::new(std::sync::Mutex::new(Some(permit)));
        let held = Arc::clone(&permit);
        let expiry = tokio::spawn(async move {
            tokio::time::sleep_until(deadline).await;
            held.lock().unwrap_or_else(|e| e.into_inner()).take();
        })
        .abort_handle();
        Slot { permit, expiry }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.expiry.abort();
        self.permit.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

/// A started query: its (shaped) schema and its batches, under its deadline and slot.
pub struct Running {
    pub schema: SchemaRef,
    stream: Pin<Box<SendableRecordBatchStream>>,
    deadline: Instant,
    timeout: std::time::Duration,
    _slot: Slot,
}

impl Running {
    pub fn new(
        stream: SendableRecordBatchStream,
        deadline: Instant,
        timeout: std::time::Duration,
        slot: Slot,
    ) -> Running {
        Running {
            schema: stream.schema(),
            stream: Box::pin(stream),
            deadline,
            timeout,
            _slot: slot,
        }
    }

    /// The next batch; `None` at the end.
    pub async fn next(&mut self) -> Option<Result<RecordBatch, SandboxError>> {
        match tokio::time::timeout_at(self.deadline, self.stream.next()).await {
            Err(_) => Some(Err(SandboxError::Timeout(self.timeout))),
            Ok(None) => None,
            Ok(Some(Ok(b))) => Some(Ok(b)),
            Ok(Some(Err(e))) => Some(Err(SandboxError::from_datafusion(e, self.timeout))),
        }
    }

    /// The batches as a stream, counting rows against `max_rows`.
    pub fn into_stream(
        self,
        max_rows: usize,
    ) -> impl futures::Stream<Item = Result<RecordBatch, SandboxError>> + Send {
        futures::stream::unfold(
            (self, 0usize, false),
            move |(mut run, rows, done)| async move {
                if done {
                    return None;
                }
                match run.next().await {
                    None => None,
                    Some(Ok(b)) if rows + b.num_rows() > max_rows => {
                        Some((Err(SandboxError::TooManyRows(max_rows)), (run, rows, true)))
                    }
                    Some(Ok(b)) => {
                        let n = b.num_rows();
                        Some((Ok(b), (run, rows + n, false)))
                    }
                    Some(Err(e)) => Some((Err(e), (run, rows, true))),
                }
            },
        )
    }
}

/// A declared cursor: the query's rows, read as the client fetches them.
pub struct Cursor {
    run: Running,
    /// Rows read from the query and not fetched yet.
    pending: Option<RecordBatch>,
    /// Declared `WITH HOLD`: it outlives its transaction block.
    hold: bool,
    fetched: usize,
    max_rows: usize,
    finished: bool,
}

impl Cursor {
    pub fn new(run: Running, hold: bool, max_rows: usize) -> Cursor {
        Cursor {
            run,
            pending: None,
            hold,
            fetched: 0,
            max_rows,
            finished: false,
        }
    }

    /// Up to `count` more rows (all that are left when `None`).
    async fn fetch(&mut self, count: Option<usize>) -> Result<Vec<RecordBatch>, SandboxError> {
        let mut out = Vec::new();
        let mut wanted = count.unwrap_or(usize::MAX);
        while wanted > 0 {
            let batch = match self.pending.take() {
                Some(b) => b,
                None if self.finished => break,
                None => match self.run.next().await {
                    None => {
                        self.finished = true;
                        break;
                    }
                    Some(Err(e)) => {
                        self.finished = true;
                        return Err(e);
                    }
                    Some(Ok(b)) => b,
                },
            };
            let take = batch.num_rows().min(wanted);
            if self.fetched + take > self.max_rows {
                self.finished = true;
                return Err(SandboxError::TooManyRows(self.max_rows));
            }
            if take < batch.num_rows() {
                self.pending = Some(batch.slice(take, batch.num_rows() - take));
            }
            if take > 0 {
                out.push(batch.slice(0, take));
            }
            self.fetched += take;
            wanted -= take;
        }
        Ok(out)
    }
}

/// Why a cursor statement failed.
#[derive(Debug, thiserror::Error)]
pub enum CursorError {
    #[error("cursor \"{0}\" does not exist")]
    Missing(String),
    #[error("cursor \"{0}\" already exists")]
    Exists(String),
    #[error(transparent)]
    Query(#[from] SandboxError),
}

/// The cursors of one connection, by name.
#[derive(Default)]
pub struct Cursors(Mutex<HashMap<String, Cursor>>);

impl Cursors {
    pub async fn declare(&self, name: &str, cursor: Cursor) -> Result<(), CursorError> {
        let mut all = self.0.lock().await;
        if all.contains_key(name) {
            return Err(CursorError::Exists(name.to_owned()));
        }
        all.insert(name.to_owned(), cursor);
        Ok(())
    }

    pub async fn schema(&self, name: &str) -> Option<SchemaRef> {
        self.0
            .lock()
            .await
            .get(name)
            .map(|c| Arc::clone(&c.run.schema))
    }

    /// `FETCH [count]`: the schema and the rows.
    pub async fn fetch(
        &self,
        name: &str,
        count: Option<usize>,
    ) -> Result<(SchemaRef, Vec<RecordBatch>), CursorError> {
        let mut all = self.0.lock().await;
        let cursor = all
            .get_mut(name)
            .ok_or_else(|| CursorError::Missing(name.to_owned()))?;
        let rows = cursor.fetch(count).await?;
        Ok((Arc::clone(&cursor.run.schema), rows))
    }

    /// `CLOSE name`, or `CLOSE ALL` with `None`.
    pub async fn close(&self, name: Option<&str>) -> Result<(), CursorError> {
        let mut all = self.0.lock().await;
        match name {
            None => all.clear(),
            Some(n) => {
                all.remove(n)
                    .ok_or_else(|| CursorError::Missing(n.to_owned()))?;
            }
        }
        Ok(())
    }

    /// The end of a transaction block closes the cursors declared without `WITH HOLD`.
    pub async fn end_of_transaction(&self) {
        self.0.lock().await.retain(|_, c| c.hold);
    }
}
