//! Measures generator throughput and prints the calibration figures:
//! `cargo run --release --example gen_speed -- [DAYS] [PER_DAY] [OUT|-] [SEED]`.
//! Without OUT (or with `-`) it writes to a temporary directory removed afterwards.

use std::time::Instant;

use supportlake::generate::{GenerateOptions, generate};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let days: u32 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(30);
    let per_day: u32 = args
        .next()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(12_000);
    let out_arg = args.next().filter(|s| s != "-");
    let seed: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(42);
    let tmp = tempfile::tempdir()?;
    let out = out_arg
        .map(Into::into)
        .unwrap_or_else(|| tmp.path().join("out"));
    let opts = GenerateOptions {
        out,
        start: chrono::NaiveDate::from_ymd_opt(2026, 11, 2).ok_or("bad date")?,
        days,
        conversations_per_day: per_day,
        seed,
        timezone: chrono_tz::America::Sao_Paulo,
        id_offset: 0,
    };
    let t0 = Instant::now();
    let summary = generate(&opts, &mut |p| {
        eprint!("\rday {}/{}  {} events", p.day, p.days, p.events);
    })?;
    let secs = t0.elapsed().as_secs_f64();
    eprintln!();
    let c = &summary.calibration;
    println!(
        "{} days x {}/day: {} conversations, {} events, {:.1} MB in {:.2} s = {:.0} events/s",
        days,
        per_day,
        summary.conversations,
        summary.events,
        summary.bytes as f64 / 1e6,
        secs,
        summary.events as f64 / secs
    );
    println!(
        "mean wait (queued->first reply) {:.0} s, mean queued->assigned {:.0} s, abandonment {:.1}% of queued ({} lost, {} after assignment), bot containment {:.1}%, open {}, mean CSAT {:.2} ({} ratings)",
        c.mean_wait_s(),
        if c.assignments > 0 {
            c.assignment_wait_s as f64 / c.assignments as f64
        } else {
            0.0
        },
        100.0 * c.abandonment_rate(),
        c.lost,
        c.abandoned_after_assignment,
        100.0 * c.containment_rate(),
        c.open,
        c.mean_csat(),
        c.csat_count
    );
    println!(
        "events/conversation {:.1}, source bytes/event {:.0}, transferred {}, reopened {}",
        summary.events as f64 / summary.conversations.max(1) as f64,
        summary.source_bytes as f64 / summary.events.max(1) as f64,
        c.transferred,
        c.reopened
    );
    Ok(())
}
