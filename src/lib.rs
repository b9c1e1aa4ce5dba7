//! supportlake: support metrics and SLAs over a Parquet lake.
//!
//! Modules in the order data flows through them:
//!
//! ```text
//!  WhatsApp webhook ─┐
//!  Chatwoot webhook ─┼─► sources (pure decode) ─► event::Event rows ─► ingest ─► lake (dedupe, Parquet)
//!  agent event log ──┘       │ pseudonym: customer ids → HMAC keys        │
//!                            └─ rejects (position, field, reason) ─► lake/_rejected
//!                                                                         │
//!   config (calendars, SLA policies) ─► calendar (business time) ─┐        │
//!                                                                 ▼        ▼
//!        query: DataFusion over the lake + views of queries/views + UDFs (interval buckets)
//!                                                                 │
//!                  metrics (queries/metrics, typed series) ─► cli (metrics, sql, demo)
//! ```
//!
//! Invariants (see ARCHITECTURE.md): decoders do no IO; only `lake` writes under the lake
//! root; only `query` touches DataFusion; nothing below `cli` reads the wall clock.

pub mod event;
pub mod pseudonym;
pub mod sources;
pub mod ingest;
pub mod lake;
pub mod calendar;
pub mod config;
pub mod interval;
pub mod query;
pub mod metrics;
pub mod charts;
pub mod html;
pub mod generate;
pub mod auth;
pub mod server;
pub mod report;
pub mod cli;
