//! The delivery server behind `berth serve`: git webhooks in, queued pipeline runs, history,
//! a JSON API with live logs over SSE, Prometheus metrics and a server-rendered web UI.
//!
//! ```text
//!  POST /hooks/{repo} ──verify+parse (berth-hooks)──► Store::accept_delivery ──► 202
//!  poll (berth-git ls-remote) ─────────────────────►  (delivery + runs, one transaction)
//!  API / UI (re-run, rollback, promote) ───────────►        │
//!                                                    Scheduler (queue.rs: limit, one run per
//!                                                    environment, oldest first)
//!                                                           │
//!                  fetch + worktree (berth-git) ◄───────────┘
//!                           │
//!                  Executor::execute (the engine; wired in the `berth` binary)
//!                           │ Events
//!                  Store::append_event ──► broadcast ──► SSE /api/runs/{id}/stream, run page
//! ```
//!
//! Design:
//! - **Persist before acknowledging.** A webhook is answered only after its delivery and its
//!   runs are committed, so a crash after the answer loses nothing; a crash before it makes
//!   the sender retry, and the delivery id makes the retry idempotent.
//! - **The store is the queue.** The scheduler keeps no queue of its own: it reads queued
//!   runs from the store and takes one with a compare-and-set `queued -> running`, so a
//!   restart resumes exactly where the database says. At start, runs left `running` by a
//!   crash become `interrupted` with their events kept; they can be re-run.
//! - **The engine is behind a trait** ([`executor::Executor`]), so this crate never links the
//!   CLI or the cluster client.
//! - **Cancel is safe.** A queued run is cancelled at once; a running one is stopped between
//!   steps (or during a build, test or push), but never once its data step or deploy has
//!   started: the deploy engine finishes or rolls back. The run's [`berth_types::CancelToken`]
//!   decides, so a cancel and the deploy's start cannot both win.

pub mod api;
pub mod app;
pub mod auth;
pub mod config;
pub mod executor;
pub mod metrics;
pub mod queue;
pub mod sse;
pub mod ui;
pub mod webhooks;

pub use app::{Server, ServerError};
pub use config::ServeConfig;
pub use executor::Executor;
