//! Giving freed memory back to the system after a burst.
//!
//! glibc's malloc keeps what the program frees for later allocations instead of returning
//! it: a burst of large request bodies (up to `--max-body` each, many at once, even all
//! rejected) left the server's resident memory eight times its idle size for good. Two
//! things held it:
//!
//! - **Free space inside the arenas.** Bodies are read in chunks of a few hundred KiB and
//!   joined; once freed, they leave free pages among live allocations that malloc keeps.
//!   A thread ([`start`]) looks once a second at the memory that is resident but
//!   allocated to nothing — the resident set minus malloc's bytes in use (the rest of it,
//!   code and stacks, barely moves) — and when that has grown by [`TRIM_AFTER`] since the
//!   last trim, asks malloc to hand its free pages back (`malloc_trim`). Memory in use is
//!   never touched, so a trim during a burst costs little and the one after it returns
//!   the rest.
//! - **The free top of each arena**, which `malloc_trim` leaves alone in the arenas of
//!   other threads than the first. glibc returns it when it exceeds a threshold that it
//!   raises by itself, up to 32 MiB, after large blocks are freed; with a dozen arenas
//!   that alone kept hundreds of MiB. [`tune`] fixes that threshold at [`TRIM_THRESHOLD`],
//!   and the size from which blocks get their own mapping at [`MMAP_THRESHOLD`] (where
//!   glibc's own adjustment ends up), which stops the adjustment.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tracing::debug;

/// Growth of resident-but-free memory that makes a trim worth it.
pub const TRIM_AFTER: u64 = 16 << 20;

/// Free space at the top of an arena beyond which it is returned at once.
pub const TRIM_THRESHOLD: usize = 1 << 20;

/// Blocks at least this large get a mapping of their own, unmapped when freed.
pub const MMAP_THRESHOLD: usize = 32 << 20;

/// How often the memory is looked at.
const EVERY: Duration = Duration::from_secs(1);

/// Stops the trimming thread when dropped.
pub struct Trimmer {
    stop: Arc<AtomicBool>,
}

impl Drop for Trimmer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Fixes malloc's trim and mapping thresholds (see the module docs). Call it before the
/// process starts threads: glibc does not make `mallopt` safe against other threads
/// setting up their arenas.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets malloc's parameters; the caller runs it before threads start.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD as libc::c_int);
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int);
    }
}

/// Starts the thread that trims after bursts (nothing where malloc is not glibc's).
pub fn start() -> std::io::Result<Trimmer> {
    let stop = Arc::new(AtomicBool::new(false));
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let stop = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("memory-trim".into())
            .spawn(move || {
                let mut reference = glibc::unused();
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EVERY);
                    let Some(unused) = glibc::unused() else {
                        return;
                    };
                    match reference {
                        Some(r) if unused < r + TRIM_AFTER => {
                            // Falling slack (freed pages reused) lowers the bar.
                            reference = Some(r.min(unused));
                        }
                        _ => {
                            glibc::trim();
                            reference = glibc::unused();
                            debug!(
                                unused_before = unused,
                                unused_after = reference.unwrap_or_default(),
                                "gave free memory back"
                            );
                        }
                    }
                }
            })?;
    }
    Ok(Trimmer { stop })
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod glibc {
    /// Resident bytes not allocated by malloc (`None` if they cannot be read).
    pub fn unused() -> Option<u64> {
        let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
        let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
        // SAFETY: sysconf and mallinfo2 only read process state.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        let info = unsafe { libc::mallinfo2() };
        let resident = pages * u64::try_from(page).ok()?;
        let in_use = (info.uordblks + info.hblkhd) as u64;
        Some(resident.saturating_sub(in_use))
    }

    pub fn trim() {
        // SAFETY: malloc_trim is safe to call at any time from any thread.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}
