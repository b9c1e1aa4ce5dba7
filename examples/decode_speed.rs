//! Decoder throughput on one format, without the lake: where ingest time goes.
//! `cargo run --release --example decode_speed -- whatsapp FILE...`

use std::time::Instant;

use supportlake::event::{EventBatchBuilder, EventRef, EventSink};
use supportlake::pseudonym::{PseudonymKey, Pseudonymizer};
use supportlake::sources::{self, Report, SourceFormat};

struct Count(u64);
impl EventSink for Count {
    fn push(&mut self, _: &EventRef<'_>) {
        self.0 += 1;
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let format = match args.next().as_deref() {
        Some("whatsapp") => SourceFormat::WhatsApp,
        Some("chatwoot") => SourceFormat::Chatwoot,
        Some("agent-log") => SourceFormat::AgentLog,
        other => panic!("format whatsapp|chatwoot|agent-log, got {other:?}"),
    };
    let mut data = Vec::new();
    for f in args {
        data.extend_from_slice(&std::fs::read(f).expect("readable file"));
    }
    let key = PseudonymKey::new(b"decode-speed-key-0123456789".to_vec()).unwrap();
    for with_arrow in [false, true] {
        let mut p = Pseudonymizer::new(&key);
        let mut report = Report::default();
        let mut count = Count(0);
        let mut builder = EventBatchBuilder::new(chrono::Utc::now());
        let started = Instant::now();
        for (i, line) in data.split(|b| *b == b'\n').enumerate() {
            if line.is_empty() {
                continue;
            }
            let sink: &mut dyn EventSink = if with_arrow { &mut builder } else { &mut count };
            sources::decode_record(format, line, i as u64 + 1, &mut p, sink, &mut report);
            if builder.len() >= 65536 {
                let _ = builder.finish();
            }
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{:>9}: {} events, {:.0} MB in {secs:.2} s: {:.0} events/s, {:.0} MB/s",
            if with_arrow { "to Arrow" } else { "decode" },
            report.events,
            data.len() as f64 / 1e6,
            report.events as f64 / secs,
            data.len() as f64 / 1e6 / secs
        );
    }
}
