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
//!                                              query (DataFusion over the lake) ─► cli (sql, …)
//! ```
//!
//! Invariants (see ARCHITECTURE.md): decoders do no IO; only `lake` writes under the lake
//! root; only `query` touches DataFusion; nothing below `cli` reads the wall clock.

pub mod cli;
pub mod event;
pub mod generate;
pub mod ingest;
pub mod lake;
pub mod pseudonym;
pub mod query;
pub mod sources;
