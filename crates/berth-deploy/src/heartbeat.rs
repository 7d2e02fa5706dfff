//! Never silent: during any wait longer than [`FIRST`], berth says what it still awaits and for
//! how long (`still waiting (45 s of 5m): no load-balancer address`). A five-minute wait on
//! one object that never becomes ready used to print nothing until the deadline.
//!
//! The schedule is every 10 s for the first minute, then every 30 s: often enough that a person
//! watching sees the wait is alive, rare enough that a long wait does not flood the log.

use std::time::Duration;

use tokio::time::Instant;

/// The first heartbeat comes after this much waiting.
pub const FIRST: Duration = Duration::from_secs(10);

/// When the next heartbeat of a wait is due.
#[derive(Clone, Debug)]
pub struct Heartbeat {
    started: Instant,
    total: Duration,
    next: Instant,
}

impl Heartbeat {
    /// A wait that began at `started` and may last `total`.
    pub fn new(started: Instant, total: Duration) -> Heartbeat {
        Heartbeat {
            started,
            total,
            next: started + FIRST,
        }
    }

    /// When the next heartbeat is due.
    pub fn next(&self) -> Instant {
        self.next
    }

    /// At or after [`Heartbeat::next`]: the `(45 s of 5m)` part of the line, and the next one
    /// scheduled. `None` when it is not due yet.
    pub fn beat(&mut self, now: Instant) -> Option<String> {
        if now < self.next {
            return None;
        }
        let waited = now.saturating_duration_since(self.started);
        self.next = self.started + next_after(waited);
        Some(format!("({} s of {})", waited.as_secs(), human(self.total)))
    }
}

/// The elapsed time of the heartbeat after one at `waited`: the next multiple of 10 s within
/// the first minute, of 30 s after it.
fn next_after(waited: Duration) -> Duration {
    let s = waited.as_secs();
    let step = if s < 60 { 10 } else { 30 };
    Duration::from_secs((s / step + 1) * step)
}

pub use berth_types::duration::human;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_berth_yaml_writes_them() {
        assert_eq!(human(Duration::from_secs(300)), "5m");
        assert_eq!(human(Duration::from_secs(90)), "1m30s");
        assert_eq!(human(Duration::from_secs(3600)), "1h");
        assert_eq!(human(Duration::from_secs(7500)), "2h5m");
        assert_eq!(human(Duration::from_secs(0)), "0s");
        assert_eq!(human(Duration::from_millis(24_970)), "25s");
        assert_eq!(human(Duration::from_millis(25_200)), "25s");
    }

    #[test]
    fn beats_every_ten_seconds_for_a_minute_then_every_thirty() {
        let t0 = Instant::now();
        let mut hb = Heartbeat::new(t0, Duration::from_secs(300));
        assert_eq!(hb.beat(t0 + Duration::from_secs(9)), None);
        assert_eq!(
            hb.beat(t0 + Duration::from_secs(10)).as_deref(),
            Some("(10 s of 5m)")
        );
        assert_eq!(hb.next(), t0 + Duration::from_secs(20));
        // A late wake-up does not make a burst of beats.
        assert_eq!(
            hb.beat(t0 + Duration::from_secs(47)).as_deref(),
            Some("(47 s of 5m)")
        );
        assert_eq!(hb.next(), t0 + Duration::from_secs(50));
        hb.beat(t0 + Duration::from_secs(61));
        assert_eq!(hb.next(), t0 + Duration::from_secs(90));
    }
}
