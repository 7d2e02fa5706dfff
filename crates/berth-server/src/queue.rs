//! Which queued runs may start now: a pure decision over the queue and what is running.
//!
//! The rules, in order:
//! - at most `limit` runs at once over the whole server;
//! - at most one run per *lane* at once: a lane is `repository/environment` (one deploy at a
//!   time per environment — the deploy engine's Lease serialises across processes too, but a
//!   second run of one environment would only wait on the lock and hold a slot);
//! - oldest first, and a run never overtakes an older queued run of its own lane (so the
//!   order of pushes is the order of deploys).
//!
//! Superseding (a newer push to a branch replaces its queued older runs) happens when a run is
//! queued, in the store, in the same step that persists it; this module only sees the result.

use std::collections::HashSet;

/// A queued run, as the scheduler sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Queued<Id> {
    /// The run.
    pub id: Id,
    /// Its lane (`repository/environment`).
    pub lane: String,
}

/// The lane of a run of `repository` into `environment`.
pub fn lane(repository: &str, environment: &str) -> String {
    format!("{repository}/{environment}")
}

/// The runs to start now, oldest first. `queued` is oldest first; `running` holds the lanes
/// of the runs in progress.
pub fn next<Id: Clone>(queued: &[Queued<Id>], running: &[String], limit: usize) -> Vec<Id> {
    let mut busy: HashSet<&str> = running.iter().map(String::as_str).collect();
    let mut slots = limit.saturating_sub(running.len());
    let mut start = Vec::new();
    for q in queued {
        if slots == 0 {
            break;
        }
        // Whether it starts or not, its lane is taken for every younger run behind it.
        if busy.insert(q.lane.as_str()) {
            start.push(q.id.clone());
            slots -= 1;
        }
    }
    start
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(id: u32, lane: &str) -> Queued<u32> {
        Queued {
            id,
            lane: lane.into(),
        }
    }

    #[test]
    fn one_run_per_environment_at_a_time() {
        let queue = [q(1, "a/prod"), q(2, "a/prod"), q(3, "a/test")];
        assert_eq!(next(&queue, &[], 10), vec![1, 3]);
        assert_eq!(next(&queue[1..], &["a/test".into()], 10), vec![2]);
        assert_eq!(next(&queue[1..], &["a/prod".into()], 10), vec![3]);
    }

    #[test]
    fn the_global_limit_holds() {
        let queue = [q(1, "a/x"), q(2, "b/x"), q(3, "c/x")];
        assert_eq!(next(&queue, &[], 2), vec![1, 2]);
        assert_eq!(next(&queue, &["z/x".into()], 2), vec![1]);
        assert!(next(&queue, &["z/x".into(), "y/x".into()], 2).is_empty());
        // More running than the limit (the limit was lowered at a restart): nothing starts.
        assert!(next(&queue, &["z/x".into(), "y/x".into(), "w/x".into()], 2).is_empty());
    }

    #[test]
    fn oldest_first_and_no_overtaking_within_a_lane() {
        let queue = [
            q(1, "a/prod"),
            q(2, "b/prod"),
            q(3, "a/prod"),
            q(4, "c/prod"),
        ];
        assert_eq!(next(&queue, &[], 3), vec![1, 2, 4]);
        assert_eq!(next(&queue, &["b/prod".into()], 2), vec![1]);
    }

    #[test]
    fn an_empty_queue_starts_nothing() {
        assert!(next::<u32>(&[], &[], 4).is_empty());
    }

    #[test]
    fn lanes_separate_repositories_with_the_same_environment_name() {
        assert_ne!(lane("shop", "prod"), lane("blog", "prod"));
        let queue = [q(1, &lane("shop", "prod")), q(2, &lane("blog", "prod"))];
        assert_eq!(next(&queue, &[], 4), vec![1, 2]);
    }
}
