//! Retrying registry calls: which failures are worth another try, and how long to wait.
//!
//! A registry behind a load balancer answers 502/503 while it restarts, and a connection can
//! break halfway through a blob. Those are retried with exponential backoff (bounded number
//! of tries, bounded delay); everything else — 4xx, digest mismatches, bad manifests — fails
//! at once, because trying again would only give the same answer more slowly.

use std::time::Duration;

use oci_client::errors::OciDistributionError;

/// How often and how patiently to retry a registry call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub tries: u32,
    /// Wait before the second attempt; doubled for each one after.
    pub first_delay: Duration,
    /// Upper bound of one wait.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// Four tries, waiting 200 ms, 400 ms and 800 ms in between.
    fn default() -> Self {
        RetryPolicy {
            tries: 4,
            first_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt number `attempt` (1-based), or `None` when that was the
    /// last one.
    pub fn delay_after(&self, attempt: u32) -> Option<Duration> {
        if attempt >= self.tries.max(1) {
            return None;
        }
        let factor = 1u32.checked_shl(attempt - 1).unwrap_or(u32::MAX);
        Some(
            self.first_delay
                .checked_mul(factor)
                .unwrap_or(self.max_delay)
                .min(self.max_delay),
        )
    }
}

/// Whether `e` is a failure another attempt may not see: a 5xx answer, or a connection that
/// could not be made, timed out or broke.
pub(crate) fn is_transient(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::ServerError { code, .. } => *code >= 500,
        OciDistributionError::RequestError(r) => {
            r.is_connect()
                || r.is_timeout()
                || r.is_request()
                || r.is_body()
                || r.status().is_some_and(|s| s.is_server_error())
        }
        OciDistributionError::IoError(io) => matches!(
            io.kind(),
            std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::ConnectionRefused
                | std::io::ErrorKind::BrokenPipe
                | std::io::ErrorKind::UnexpectedEof
                | std::io::ErrorKind::TimedOut
        ),
        // oci-client reports some upload failures as text only.
        OciDistributionError::GenericError(Some(m)) => {
            m.contains("connection") || m.contains(" 50") || m.contains("status 5")
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_stops_after_the_last_try() {
        let p = RetryPolicy::default();
        let waits: Vec<_> = (1..=5).map(|a| p.delay_after(a)).collect();
        assert_eq!(
            waits,
            vec![
                Some(Duration::from_millis(200)),
                Some(Duration::from_millis(400)),
                Some(Duration::from_millis(800)),
                None,
                None
            ]
        );
        let capped = RetryPolicy {
            tries: 40,
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(3),
        };
        assert_eq!(capped.delay_after(35), Some(Duration::from_secs(3)));
        let once = RetryPolicy { tries: 0, ..p };
        assert_eq!(once.delay_after(1), None);
    }

    #[test]
    fn only_server_errors_and_broken_connections_are_transient() {
        let server = |code| OciDistributionError::ServerError {
            code,
            url: "u".into(),
            message: "m".into(),
        };
        assert!(is_transient(&server(503)));
        assert!(is_transient(&server(500)));
        assert!(!is_transient(&server(404)));
        assert!(!is_transient(&server(401)));
        assert!(is_transient(&OciDistributionError::IoError(
            std::io::ErrorKind::ConnectionReset.into()
        )));
        assert!(!is_transient(&OciDistributionError::IoError(
            std::io::ErrorKind::NotFound.into()
        )));
        assert!(!is_transient(&OciDistributionError::SpecViolationError(
            "x".into()
        )));
    }
}
