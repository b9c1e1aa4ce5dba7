//! When scheduled reports run, and the record that keeps them from running twice.
//!
//! Each `[[reports]]` entry with a `cron` runs at the times of that expression in its time
//! zone (wall-clock times: `0 8 * * 1-5` is 08:00 local on weekdays, before and after a DST
//! change). The last run of each report is kept in `<lake>/_reports/state.json`, written
//! atomically before the send starts (`sending`) and again when it ends (`sent`/`failed`):
//! - a restart never sends a scheduled time again — not even one whose send was cut off,
//!   since the record says it started (losing one email beats sending it twice);
//! - after downtime, the most recent missed time is sent once, late, with a note saying so
//!   (older missed times are not piled up);
//! - a report new to the state waits for its next time.
//!
//! [`Scheduler::tick`] takes "now" as an argument, so tests drive it with their own clock.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use chrono::{DateTime, Duration, Utc};
use croner::Cron;
use serde::{Deserialize, Serialize};

use super::ReportError;
use super::spec::ReportSpec;

/// How late a run may start and still count as on time.
pub const GRACE: Duration = Duration::minutes(5);

/// The record of a report's last scheduled run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastRun {
    /// The cron time this run was for.
    pub scheduled_for: DateTime<Utc>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// `sending`, `sent` or `failed`.
    pub status: String,
    pub late: bool,
    pub recipients: Vec<String>,
    pub error: Option<String>,
    /// The period the report covered.
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

/// A run to do now.
#[derive(Debug, Clone, PartialEq)]
pub struct Due {
    pub name: String,
    pub scheduled_for: DateTime<Utc>,
    /// Started more than [`GRACE`] after its time (the server was down or busy).
    pub late: bool,
}

/// The next cron time strictly after `t`.
pub fn next_after(spec: &ReportSpec, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let cron = Cron::from_str(spec.cron.as_deref()?).ok()?;
    cron.find_next_occurrence(&t.with_timezone(&spec.tz), false)
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

/// The latest cron time at or before `t`.
pub fn latest_at_or_before(spec: &ReportSpec, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let cron = Cron::from_str(spec.cron.as_deref()?).ok()?;
    cron.find_previous_occurrence(&t.with_timezone(&spec.tz), true)
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

/// The scheduled reports and their state file.
pub struct Scheduler {
    path: PathBuf,
    specs: Vec<ReportSpec>,
    state: BTreeMap<String, LastRun>,
    /// When each report was first seen without a record: only times after it are due.
    since: BTreeMap<String, DateTime<Utc>>,
}

impl Scheduler {
    /// Opens the state under `<lake>/_reports/` (missing: empty) for the given reports.
    pub fn open(lake_root: &Path, specs: Vec<ReportSpec>) -> Result<Self, ReportError> {
        let path = lake_root.join("_reports").join("state.json");
        let state = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                ReportError::Config(format!("{}: not a report state file: {e}", path.display()))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e.into()),
        };
        Ok(Scheduler {
            path,
            specs: specs.into_iter().filter(|s| s.cron.is_some()).collect(),
            state,
            since: BTreeMap::new(),
        })
    }

    pub fn specs(&self) -> &[ReportSpec] {
        &self.specs
    }

    pub fn last_run(&self, name: &str) -> Option<&LastRun> {
        self.state.get(name)
    }

    /// The reports due at `now`; each is recorded as `sending` (and the record made durable)
    /// before it is returned.
    pub fn tick(&mut self, now: DateTime<Utc>) -> Result<Vec<Due>, ReportError> {
        let mut due = Vec::new();
        for spec in &self.specs {
            let Some(latest) = latest_at_or_before(spec, now) else {
                continue;
            };
            let after = match self.state.get(&spec.name) {
                Some(last) => last.scheduled_for,
                None => *self.since.entry(spec.name.clone()).or_insert(now),
            };
            if latest <= after {
                continue;
            }
            due.push(Due {
                name: spec.name.clone(),
                scheduled_for: latest,
                late: now - latest > GRACE,
            });
        }
        for d in &due {
            let spec = self.specs.iter().find(|s| s.name == d.name);
            self.state.insert(
                d.name.clone(),
                LastRun {
                    scheduled_for: d.scheduled_for,
                    started_at: now,
                    finished_at: None,
                    status: "sending".into(),
                    late: d.late,
                    recipients: spec.map(|s| s.recipients.clone()).unwrap_or_default(),
                    error: None,
                    from: None,
                    to: None,
                },
            );
        }
        if !due.is_empty() {
            self.save()?;
        }
        Ok(due)
    }

    /// Records how a run ended.
    pub fn finish(
        &mut self,
        name: &str,
        at: DateTime<Utc>,
        period: Option<(DateTime<Utc>, DateTime<Utc>)>,
        result: Result<(), String>,
    ) -> Result<(), ReportError> {
        if let Some(run) = self.state.get_mut(name) {
            run.finished_at = Some(at);
            run.from = period.map(|p| p.0);
            run.to = period.map(|p| p.1);
            match result {
                Ok(()) => run.status = "sent".into(),
                Err(e) => {
                    run.status = "failed".into();
                    run.error = Some(e);
                }
            }
        }
        self.save()
    }

    /// The earliest next cron time of any report after `now`.
    pub fn next_wake(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.specs.iter().filter_map(|s| next_after(s, now)).min()
    }

    fn save(&self) -> Result<(), ReportError> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(".state.json.tmp");
        let bytes = serde_json::to_vec_pretty(&self.state)
            .map_err(|e| ReportError::Config(e.to_string()))?;
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

/// The note a late run's email starts with.
pub fn late_note(due: &Due, spec: &ReportSpec, pt: bool) -> String {
    let at = due
        .scheduled_for
        .with_timezone(&spec.tz)
        .format("%Y-%m-%d %H:%M %Z");
    if pt {
        format!(
            "Enviado com atraso: este relatório estava agendado para {at} e o serviço estava parado nesse horário."
        )
    } else {
        format!("Sent late: this report was due at {at} and the service was not running then.")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::spec::{Language, Period};
    use chrono::TimeZone;

    fn spec(cron: &str) -> ReportSpec {
        ReportSpec {
            name: "daily".into(),
            cron: Some(cron.into()),
            tz: "America/New_York".parse().unwrap(),
            period: Period::Yesterday,
            recipients: vec!["ops@example.com".into()],
            teams: vec![],
            language: Language::En,
        }
    }

    fn utc(d: u32, m: u32, day: u32, h: u32, min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(d as i32, m, day, h, min, 0).unwrap()
    }

    /// Drives the scheduler with its own clock, a minute at a time, across the end of US
    /// daylight saving time (2026-11-01 02:00 EDT → 01:00 EST), through a crash between
    /// "sending" and "sent", and through a day and a half of downtime.
    #[test]
    fn runs_at_local_times_across_dst_once_each_and_once_after_downtime() {
        let dir = tempfile::tempdir().unwrap();
        let open = || Scheduler::open(dir.path(), vec![spec("0 8 * * *")]).unwrap();
        let mut s = open();
        let mut sent: Vec<(DateTime<Utc>, bool)> = Vec::new();
        let mut now = utc(2026, 10, 30, 0, 0);
        let crash_at = utc(2026, 11, 1, 13, 0);
        let (down_from, down_to) = (utc(2026, 11, 2, 10, 0), utc(2026, 11, 3, 20, 0));
        let mut crashed = false;
        while now < utc(2026, 11, 5, 0, 0) {
            if now >= down_from && now < down_to {
                now += Duration::minutes(1);
                continue;
            }
            if now == down_to {
                s = open(); // the server starts again
            }
            for d in s.tick(now).unwrap() {
                sent.push((d.scheduled_for, d.late));
                if d.late {
                    // The late email says when it was due, in the report's time zone.
                    let note = late_note(&d, &spec("0 8 * * *"), false);
                    assert!(
                        note.starts_with("Sent late") && note.contains("2026-11-03 08:00 EST"),
                        "{note}"
                    );
                }
                if now == crash_at && !crashed {
                    // The process dies after recording "sending", before "sent"; it restarts
                    // and ticks again at the same instant: nothing is sent twice.
                    crashed = true;
                    s = open();
                    assert!(s.tick(now).unwrap().is_empty());
                    assert_eq!(s.last_run("daily").unwrap().status, "sending");
                    continue;
                }
                s.finish(&d.name, now, None, Ok(())).unwrap();
            }
            now += Duration::minutes(1);
        }
        // 08:00 in New York: 12:00 UTC under EDT, 13:00 UTC under EST.
        // 11-02 13:00 was missed during downtime and is not sent; 11-03 13:00 is sent once,
        // late, at restart (20:00); 11-04 is on time again.
        assert_eq!(
            sent,
            vec![
                (utc(2026, 10, 30, 12, 0), false),
                (utc(2026, 10, 31, 12, 0), false),
                (utc(2026, 11, 1, 13, 0), false),
                (utc(2026, 11, 3, 13, 0), true),
                (utc(2026, 11, 4, 13, 0), false),
            ]
        );
        let last = s.last_run("daily").unwrap();
        assert_eq!(last.status, "sent");
        assert_eq!(last.scheduled_for, utc(2026, 11, 4, 13, 0));
    }

    #[test]
    fn a_new_report_waits_for_its_next_time() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Scheduler::open(dir.path(), vec![spec("0 8 * * *")]).unwrap();
        // First seen at 15:00 UTC (11:00 EDT): today's 08:00 is past, not sent.
        assert!(s.tick(utc(2026, 10, 20, 15, 0)).unwrap().is_empty());
        assert_eq!(
            s.next_wake(utc(2026, 10, 20, 15, 0)),
            Some(utc(2026, 10, 21, 12, 0))
        );
        let due = s.tick(utc(2026, 10, 21, 12, 0)).unwrap();
        assert_eq!(due.len(), 1);
        assert!(!due[0].late);
    }
}
