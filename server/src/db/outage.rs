//! A database that does not answer is one condition, not one per request: while PostgreSQL is
//! down (restarting, or an external server gone) every request would otherwise log the same WARN
//! (thousands a second under load). [`Repeats`] lets the first line through, then at most one a
//! [`WINDOW`], carrying how many were held back; [`unavailable`] is the shared line every door
//! logs a lost database with. Also says which client errors mean "unavailable" rather than a
//! SQL error: closed connections and PostgreSQL's shutdown/crash/starting-up codes.

use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// At most one line per this long for each repeating message.
pub const WINDOW: Duration = Duration::from_secs(10);

/// Rate limit of one repeating log line (a `static` per call site).
pub struct Repeats {
    window: Mutex<Window>,
}

struct Window {
    /// When the last line went out; `None` before the first.
    since: Option<Instant>,
    /// Occurrences held back since then.
    held: u64,
}

/// What to add to a line that goes out: how many were held back since the last one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    pub count: u64,
    pub over: Duration,
}

impl fmt::Display for Held {
    /// Empty when nothing was held back; else "; N more like this in the last S s".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.count == 0 {
            return Ok(());
        }
        write!(
            f,
            "; {} more like this in the last {} s",
            self.count,
            self.over.as_secs().max(1)
        )
    }
}

impl Repeats {
    pub const fn new() -> Repeats {
        Repeats {
            window: Mutex::new(Window {
                since: None,
                held: 0,
            }),
        }
    }

    /// `Some` when this occurrence should be logged (with what was held back), `None` when it is
    /// held back.
    pub fn check(&self) -> Option<Held> {
        self.check_at(Instant::now())
    }

    fn check_at(&self, now: Instant) -> Option<Held> {
        let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        match w.since {
            Some(since) if now.saturating_duration_since(since) < WINDOW => {
                w.held += 1;
                None
            }
            since => {
                let held = Held {
                    count: w.held,
                    over: since.map_or(Duration::ZERO, |s| now.saturating_duration_since(s)),
                };
                w.since = Some(now);
                w.held = 0;
                Some(held)
            }
        }
    }
}

impl Default for Repeats {
    fn default() -> Self {
        Repeats::new()
    }
}

static UNAVAILABLE: Repeats = Repeats::new();

/// Logs (rate-limited, shared by every door) that a request found no usable database.
/// `error` is a pool or connection error: it names no credentials.
pub fn unavailable(door: &str, error: &dyn fmt::Display) {
    if let Some(held) = UNAVAILABLE.check() {
        tracing::warn!(door, error = %error, held_back = held.count, "database unavailable{held}");
    }
}

/// True when `e` means the server went away or is not accepting work (not a SQL error): the
/// connection closed, or PostgreSQL said it is shutting down (57P01), crashed (57P02) or still
/// starting/recovering (57P03).
pub fn is_unavailable(e: &tokio_postgres::Error) -> bool {
    match e.as_db_error() {
        Some(db) => is_unavailable_code(db.code().code()),
        None => true,
    }
}

/// 57P01 admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now.
pub fn is_unavailable_code(sqlstate: &str) -> bool {
    matches!(sqlstate, "57P01" | "57P02" | "57P03")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_line_goes_out_then_one_per_window_with_the_count() {
        let r = Repeats::new();
        let t0 = Instant::now();
        let first = r.check_at(t0).expect("the first goes out");
        assert_eq!(first.count, 0);
        assert_eq!(first.to_string(), "");
        for i in 1..=500u64 {
            assert_eq!(r.check_at(t0 + Duration::from_millis(i * 10)), None);
        }
        let next = r
            .check_at(t0 + Duration::from_secs(12))
            .expect("a line once the window passed");
        assert_eq!(next.count, 500);
        assert_eq!(next.to_string(), "; 500 more like this in the last 12 s");
        // Quiet afterwards: the next one after a long gap carries nothing held back.
        let later = r.check_at(t0 + Duration::from_secs(100)).unwrap();
        assert_eq!(later.count, 0);
    }

    #[test]
    fn unavailable_codes() {
        for code in ["57P01", "57P02", "57P03"] {
            assert!(is_unavailable_code(code), "{code}");
        }
        for code in ["57014", "23505", "42501", "08006"] {
            assert!(!is_unavailable_code(code), "{code}");
        }
    }
}
