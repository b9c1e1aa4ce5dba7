//! `supportlake erase`: remove one customer from the lake (LGPD art. 18).

use anyhow::Context;
use chrono::Utc;

use super::{EXIT_OK, LakeArg};
use crate::lake::erase::{self, Actor, EraseOptions, Erasure, ErasureRecord, Target};
use crate::lake::{LakeError, LakeLock, LakePaths};
use crate::pseudonym::{KEY_ENV, KEY_FILE_ENV, PseudonymKey};

/// Test hook: abort after this many files were replaced (proves a rerun finishes the job).
const ABORT_ENV: &str = "SUPPORTLAKE_TEST_ERASE_ABORT_AFTER_FILES";

/// Remove every trace of one customer from the lake (LGPD art. 18).
///
/// Finds the customer's rows — their own events, every event of the conversations those
/// events name (agent assignments and resolutions included), and the rows of derived tables
/// for those conversations and for their WhatsApp sessions — and rewrites each Parquet file
/// that holds any without them, under the same name. Also rewrites write-ahead log segments
/// left by a server that stopped without flushing, and drops every quarantined line
/// (<lake>/_rejected) that names the customer: the phone number in any notation, the
/// contact id, or the customer key.
///
/// Each file is replaced atomically; if the command is interrupted, run it again: it
/// continues where it stopped. Files without the customer's data are not touched, so
/// erasing twice is harmless.
///
/// Every erasure appends one line to <lake>/_audit/erasures.jsonl: when, who (your OS user),
/// rows removed per table, files rewritten, log and quarantine counts. It never holds the
/// phone number, contact id or key.
///
/// What it cannot reach: backups and copies of the lake, exports and CSVs already
/// downloaded, emails already sent, the source systems (WhatsApp, Chatwoot) — see
/// docs/privacy.md. Events the sources send again later are stored again.
///
/// Needs the lake to itself: while `supportlake serve` runs on it, use its route
/// DELETE /api/v1/customers/{key} (admin token) instead. The pseudonymization key comes from
/// SUPPORTLAKE_PSEUDONYM_KEY or SUPPORTLAKE_PSEUDONYM_KEY_FILE, as for `ingest`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
supportlake erase --lake ./lake --customer '+55 11 98765-4321'\n  \
supportlake erase --lake ./lake --customer 5511987654321          # as WhatsApp sends wa_id\n  \
supportlake erase --lake ./lake --customer chatwoot-contact:4242   # Chatwoot, no phone\n  \
supportlake erase --lake ./lake --customer-key 3f1c…e9 --format json")]
pub struct Args {
    #[command(flatten)]
    lake: LakeArg,

    /// The customer's phone number (any notation: +55 11 98765-4321, 5511987654321, …) or
    /// source contact id, exactly as ingest received it.
    #[arg(
        long,
        value_name = "PHONE_OR_ID",
        required_unless_present = "customer_key",
        conflicts_with = "customer_key"
    )]
    customer: Option<String>,

    /// The customer key (64 hex characters) as stored in the lake's customer_key column,
    /// when you do not have the phone number or contact id.
    #[arg(long, value_name = "HEX")]
    customer_key: Option<String>,

    /// How to print the outcome: for people, or the audit record as JSON.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Text,
    Json,
}

/// The OS user running the command, for the audit record.
pub(crate) fn os_user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|u| !u.trim().is_empty())
        .map(|u| format!("user {}", u.trim()))
        // SAFETY: getuid has no preconditions and cannot fail.
        .unwrap_or_else(|| format!("uid {}", unsafe { libc::getuid() }))
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let key = PseudonymKey::from_sources(
        std::env::var(KEY_ENV).ok().as_deref(),
        std::env::var(KEY_FILE_ENV).ok().as_deref(),
    )?;
    let target = match (&args.customer, &args.customer_key) {
        (Some(c), _) => Target::from_identity(c, &key)?,
        (None, Some(k)) => Target::from_key(k)?,
        (None, None) => anyhow::bail!("name the customer with --customer or --customer-key"),
    };
    let paths = LakePaths::new(&args.lake.lake);
    anyhow::ensure!(
        paths.root().is_dir(),
        "{} is not a lake folder",
        paths.root().display()
    );
    let _lock = match LakeLock::acquire(&paths, &format!("erase, pid {}", std::process::id())) {
        Ok(l) => l,
        Err(LakeError::Locked { root, holder }) => anyhow::bail!(
            "the lake {} is in use by {holder}. While the server runs, erase through it:\n  \
             curl -X DELETE -H \"Authorization: Bearer $ADMIN_TOKEN\" http://HOST:PORT/api/v1/customers/{}",
            root.display(),
            target.key()
        ),
        Err(e) => return Err(e.into()),
    };
    let opts = EraseOptions {
        rewrite_wal: true,
        abort_after_files: std::env::var(ABORT_ENV).ok().and_then(|v| v.parse().ok()),
    };
    let actor = Actor {
        via: "cli".into(),
        who: os_user(),
    };
    let done =
        erase::erase(&paths, &target, &key, actor, Utc::now(), &opts).with_context(|| {
            format!(
                "erasure in {} failed; run it again to finish it",
                paths.root().display()
            )
        })?;
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&done.record)?),
        Format::Text => print!("{}", render(&paths, &done)),
    }
    Ok(EXIT_OK)
}

fn render(paths: &LakePaths, done: &Erasure) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    if let Some(before) = &done.finished_before {
        let _ = writeln!(
            s,
            "finished an interrupted erasure first: {} ({} rows, {} files)",
            before.erasure_id,
            before.total_rows(),
            before.files_rewritten.len()
        );
    }
    let r: &ErasureRecord = &done.record;
    let _ = writeln!(
        s,
        "{} (customer named by {}{})",
        r.erasure_id,
        r.identified_by,
        if r.resumed > 0 {
            ", continued after an interruption"
        } else {
            ""
        }
    );
    let by_table: Vec<String> = r
        .rows_removed
        .iter()
        .map(|(t, n)| format!("{t} {n}"))
        .collect();
    let _ = writeln!(s, "  {:<22}{:>8}", "conversations found", r.conversations);
    let _ = writeln!(
        s,
        "  {:<22}{:>8}{}",
        "rows removed",
        r.total_rows(),
        if by_table.is_empty() {
            String::new()
        } else {
            format!("  ({})", by_table.join(", "))
        }
    );
    let _ = writeln!(
        s,
        "  {:<22}{:>8}",
        "files rewritten",
        r.files_rewritten.len()
    );
    for f in &r.files_rewritten {
        let _ = writeln!(s, "    {f}");
    }
    let _ = writeln!(
        s,
        "  {:<22}{:>8}  events removed from {} segment(s)",
        "write-ahead log", r.wal.events_removed, r.wal.segments_rewritten
    );
    let _ = writeln!(
        s,
        "  {:<22}{:>8}  lines removed; {} file(s) rewritten, {} emptied and removed",
        "quarantine",
        r.quarantine.lines_removed,
        r.quarantine.files_rewritten,
        r.quarantine.files_removed
    );
    if r.total_rows() == 0 && r.quarantine.lines_removed == 0 && r.wal.events_removed == 0 {
        let _ = writeln!(
            s,
            "  nothing of this customer is in the lake (any more); if you expected some, check \
             that the pseudonymization key is the one the lake was ingested with"
        );
    }
    let _ = writeln!(
        s,
        "  audit record in {}",
        paths.audit().join(erase::AUDIT_FILE).display()
    );
    s
}
