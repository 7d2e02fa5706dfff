//! Prometheus metrics at `/metrics` (text format 0.0.4), kept by hand: a few counters and one
//! histogram do not need a metrics library.
//!
//! - `berth_runs{state}`: runs in the store by state (read from the store at scrape time, so
//!   it is right after a restart and with several servers on one database);
//! - `berth_runs_finished_total{state}`: runs this process saw end, by final state;
//! - `berth_webhooks_total{status}`: webhook answers by HTTP status;
//! - `berth_queue_depth`: queued runs at the scheduler's last look;
//! - `berth_run_duration_seconds`: wall time of finished runs (histogram).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use berth_store::{Run, RunState};

use crate::app::Server;

const BUCKETS: [f64; 10] = [
    1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

/// The process's counters.
#[derive(Default)]
pub struct Metrics {
    webhooks: Mutex<BTreeMap<u16, u64>>,
    finished: Mutex<BTreeMap<String, u64>>,
    started: AtomicU64,
    queue_depth: AtomicU64,
    durations: Mutex<(Vec<u64>, f64, u64)>,
}

impl Metrics {
    pub(crate) fn webhook(&self, status: u16) {
        *self
            .webhooks
            .lock()
            .expect("metrics")
            .entry(status)
            .or_default() += 1;
    }

    pub(crate) fn set_queue_depth(&self, n: usize) {
        self.queue_depth.store(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn run_started(&self, _run: &Run) {
        self.started.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn run_finished(&self, state: RunState, took: Option<Duration>) {
        *self
            .finished
            .lock()
            .expect("metrics")
            .entry(state.to_string())
            .or_default() += 1;
        if let Some(t) = took {
            let s = t.as_secs_f64();
            let mut d = self.durations.lock().expect("metrics");
            if d.0.is_empty() {
                d.0 = vec![0; BUCKETS.len()];
            }
            for (i, b) in BUCKETS.iter().enumerate() {
                if s <= *b {
                    d.0[i] += 1;
                }
            }
            d.1 += s;
            d.2 += 1;
        }
    }

    /// The text exposition, with `by_state` read from the store.
    pub fn render(&self, by_state: &BTreeMap<String, u64>) -> String {
        let mut out = String::new();
        out.push_str("# HELP berth_runs Runs in the store by state.\n# TYPE berth_runs gauge\n");
        for (s, n) in by_state {
            out.push_str(&format!("berth_runs{{state=\"{s}\"}} {n}\n"));
        }
        out.push_str("# HELP berth_runs_started_total Runs this process started.\n# TYPE berth_runs_started_total counter\n");
        out.push_str(&format!(
            "berth_runs_started_total {}\n",
            self.started.load(Ordering::Relaxed)
        ));
        out.push_str("# HELP berth_runs_finished_total Runs this process saw end, by state.\n# TYPE berth_runs_finished_total counter\n");
        for (s, n) in self.finished.lock().expect("metrics").iter() {
            out.push_str(&format!("berth_runs_finished_total{{state=\"{s}\"}} {n}\n"));
        }
        out.push_str("# HELP berth_webhooks_total Webhook requests by answer status.\n# TYPE berth_webhooks_total counter\n");
        for (s, n) in self.webhooks.lock().expect("metrics").iter() {
            out.push_str(&format!("berth_webhooks_total{{status=\"{s}\"}} {n}\n"));
        }
        out.push_str("# HELP berth_queue_depth Queued runs.\n# TYPE berth_queue_depth gauge\n");
        out.push_str(&format!(
            "berth_queue_depth {}\n",
            self.queue_depth.load(Ordering::Relaxed)
        ));
        out.push_str("# HELP berth_run_duration_seconds Wall time of finished runs.\n# TYPE berth_run_duration_seconds histogram\n");
        let d = self.durations.lock().expect("metrics");
        for (i, b) in BUCKETS.iter().enumerate() {
            let n = d.0.get(i).copied().unwrap_or(0);
            out.push_str(&format!(
                "berth_run_duration_seconds_bucket{{le=\"{b}\"}} {n}\n"
            ));
        }
        out.push_str(&format!(
            "berth_run_duration_seconds_bucket{{le=\"+Inf\"}} {}\n",
            d.2
        ));
        out.push_str(&format!("berth_run_duration_seconds_sum {}\n", d.1));
        out.push_str(&format!("berth_run_duration_seconds_count {}\n", d.2));
        out
    }
}

/// The routes.
pub fn routes() -> axum::Router<Server> {
    axum::Router::new().route("/metrics", get(scrape))
}

async fn scrape(State(server): State<Server>, headers: HeaderMap) -> Response {
    if !server.config().metrics_anonymous
        && let Err(d) = crate::auth::require(&server, &headers, berth_store::Role::Viewer).await
    {
        return (d.status, d.message).into_response();
    }
    let mut by_state = BTreeMap::new();
    for s in RunState::ALL {
        by_state.insert(s.to_string(), 0u64);
    }
    if let Ok(counts) = server.store().count_by_state().await {
        for (state, n) in counts {
            by_state.insert(state.to_string(), n);
        }
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        server.inner.metrics.render(&by_state),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_has_every_family() {
        let m = Metrics::default();
        m.webhook(202);
        m.webhook(401);
        m.webhook(401);
        m.set_queue_depth(3);
        m.run_finished(RunState::Succeeded, Some(Duration::from_secs(7)));
        let mut states = BTreeMap::new();
        states.insert("queued".to_string(), 3);
        let text = m.render(&states);
        assert!(
            text.contains("berth_webhooks_total{status=\"401\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("berth_runs{state=\"queued\"} 3\n"), "{text}");
        assert!(text.contains("berth_queue_depth 3\n"), "{text}");
        assert!(
            text.contains("berth_run_duration_seconds_bucket{le=\"5\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("berth_run_duration_seconds_bucket{le=\"10\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("berth_run_duration_seconds_count 1\n"),
            "{text}"
        );
    }
}
