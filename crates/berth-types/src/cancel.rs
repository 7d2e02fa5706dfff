//! Cancelling a run: a token shared by whoever may cancel (the server's cancel button) and
//! the engine, which checks it at each step boundary.
//!
//! The token also knows the run's point of no return: the engine enters every step through
//! [`CancelToken::enter`], and entering a step that is not [`Step::cancellable`] closes the
//! token for good. Both transitions happen under one lock, so a cancel and the start of the
//! deploy cannot both win: either the cancel came first (the deploy never starts) or the
//! deploy did (the cancel is refused, and the caller says so).

use std::sync::Arc;

use tokio::sync::watch;

use crate::Step;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Running cancellable steps; a cancel is taken.
    Open,
    /// Cancelled: the engine stops before (or during) its next cancellable step.
    Cancelled,
    /// Past the point of no return (a step that is not cancellable started).
    Committed,
}

/// What [`CancelToken::enter`] refuses: the run was cancelled before `step`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cancelled before its {step} step")]
pub struct Cancelled {
    /// The step that did not start (or was stopped).
    pub step: Step,
}

/// A run's cancellation; clones share it. See the module docs.
#[derive(Clone, Debug)]
pub struct CancelToken(Arc<watch::Sender<Phase>>);

impl Default for CancelToken {
    fn default() -> CancelToken {
        CancelToken::new()
    }
}

impl CancelToken {
    /// A token nobody has cancelled.
    pub fn new() -> CancelToken {
        CancelToken(Arc::new(watch::Sender::new(Phase::Open)))
    }

    /// Asks the run to stop. `true` when taken (or taken before); `false` when the run is past
    /// its point of no return and goes on to its end.
    pub fn cancel(&self) -> bool {
        let mut taken = false;
        self.0.send_if_modified(|p| match p {
            Phase::Open => {
                *p = Phase::Cancelled;
                taken = true;
                true
            }
            Phase::Cancelled => {
                taken = true;
                false
            }
            Phase::Committed => false,
        });
        taken
    }

    /// Whether a cancel was taken.
    pub fn is_cancelled(&self) -> bool {
        *self.0.borrow() == Phase::Cancelled
    }

    /// Whether the run is past its point of no return (a cancel would be refused).
    pub fn is_committed(&self) -> bool {
        *self.0.borrow() == Phase::Committed
    }

    /// The step boundary: called by the engine before it starts `step`. Refused when the run
    /// was cancelled (and `step` is cancellable, which every step before the point of no
    /// return is); a step that is not cancellable closes the token, so that later cancels
    /// are refused.
    pub fn enter(&self, step: Step) -> Result<(), Cancelled> {
        let mut refused = false;
        self.0.send_if_modified(|p| match (*p, step.cancellable()) {
            (Phase::Cancelled, _) => {
                refused = true;
                false
            }
            (Phase::Open, false) => {
                *p = Phase::Committed;
                true
            }
            _ => false,
        });
        if refused {
            Err(Cancelled { step })
        } else {
            Ok(())
        }
    }

    /// Resolves when a cancel is taken; never once the run is past its point of no return.
    pub async fn cancelled(&self) {
        let mut rx = self.0.subscribe();
        // The sender lives in `self`, so the channel cannot close while this waits.
        let _ = rx.wait_for(|p| *p == Phase::Cancelled).await;
        if !self.is_cancelled() {
            std::future::pending::<()>().await;
        }
    }

    /// Runs `work`, the body of cancellable step `step`, stopping it (dropping it) when the
    /// run is cancelled meanwhile. Checks the boundary first ([`CancelToken::enter`]).
    pub async fn during<T, E: From<Cancelled>>(
        &self,
        step: Step,
        work: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        self.enter(step)?;
        if !step.cancellable() {
            return work.await;
        }
        tokio::select! {
            r = work => r,
            () = self.cancelled() => Err(Cancelled { step }.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cancel_stops_the_run_at_its_next_cancellable_step() {
        let token = CancelToken::new();
        assert_eq!(token.enter(Step::Build), Ok(()));
        assert!(token.cancel());
        assert!(token.is_cancelled());
        assert_eq!(token.enter(Step::Push), Err(Cancelled { step: Step::Push }));
        // The deploy never starts after a cancel.
        assert_eq!(
            token.enter(Step::Deploy),
            Err(Cancelled { step: Step::Deploy })
        );
        assert!(token.cancel(), "a second cancel is taken too");
        assert!(!token.is_committed());
    }

    #[test]
    fn a_cancel_is_refused_once_the_deploy_started() {
        let token = CancelToken::new();
        assert_eq!(token.enter(Step::Render), Ok(()));
        assert_eq!(token.enter(Step::Deploy), Ok(()));
        assert!(token.is_committed());
        assert!(!token.cancel());
        assert!(!token.is_cancelled());
        assert_eq!(token.enter(Step::Run), Ok(()), "the run goes on to its end");
    }

    #[tokio::test]
    async fn a_cancel_during_a_step_drops_its_work() {
        let token = CancelToken::new();
        let cancel = token.clone();
        let work = async {
            cancel.cancel();
            std::future::pending::<Result<(), Cancelled>>().await
        };
        let r = token.during(Step::Build, work).await;
        assert_eq!(r, Err(Cancelled { step: Step::Build }));
    }

    #[tokio::test]
    async fn a_step_past_the_point_of_no_return_is_not_stopped() {
        let token = CancelToken::new();
        let cancel = token.clone();
        let r: Result<u8, Cancelled> = token
            .during(Step::Deploy, async {
                assert!(!cancel.cancel());
                tokio::task::yield_now().await;
                Ok(7)
            })
            .await;
        assert_eq!(r, Ok(7));
    }
}
