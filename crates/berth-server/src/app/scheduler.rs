//! The scheduler: queued runs started as their lane frees, cancellation, enqueueing.

use super::*;

impl Server {
    /// Wakes the scheduler (a run was queued or finished).
    pub(crate) fn wake(&self) {
        self.inner.wake.notify_one();
    }

    pub(super) async fn schedule(self) {
        loop {
            if let Err(e) = self.start_ready().await {
                tracing::error!("scheduler: {e}");
            }
            tokio::select! {
                _ = self.inner.wake.notified() => {}
                // A safety net: runs queued by another server process on the same database.
                _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
            }
        }
    }

    pub(super) async fn start_ready(&self) -> Result<(), berth_store::StoreError> {
        let queued = self.inner.store.queued().await?;
        self.inner.metrics.set_queue_depth(queued.len());
        let running: Vec<String> = self
            .inner
            .active
            .lock()
            .expect("active")
            .values()
            .map(|a| a.lane.clone())
            .collect();
        let candidates: Vec<queue::Queued<RunId>> = queued
            .iter()
            .map(|r| queue::Queued {
                id: r.id,
                lane: lane_of(r),
            })
            .collect();
        for id in queue::next(&candidates, &running, self.inner.config.concurrency) {
            let run = queued
                .iter()
                .find(|r| r.id == id)
                .expect("picked from the queue")
                .clone();
            if !self
                .inner
                .store
                .transition(id, RunState::Queued, RunState::Running, None)
                .await?
            {
                continue; // cancelled or taken meanwhile
            }
            self.inner.metrics.run_started(&run);
            let active = Active {
                lane: lane_of(&run),
                cancel: CancelToken::new(),
            };
            let cancel = active.cancel.clone();
            self.inner.active.lock().expect("active").insert(id, active);
            let server = self.clone();
            tokio::spawn(async move {
                server.execute(run, cancel).await;
                server.inner.active.lock().expect("active").remove(&id);
                server.inner.live.lock().expect("live").remove(&id);
                server.wake();
            });
        }
        Ok(())
    }

    /// Subscribes to the live events of `run` (None when it is not running here).
    pub(crate) fn subscribe(&self, run: RunId) -> Option<broadcast::Receiver<StoredEvent>> {
        self.inner
            .live
            .lock()
            .expect("live")
            .get(&run)
            .map(|s| s.subscribe())
    }

    /// Cancels `run`: a queued one at once, a running one before its deploy starts.
    /// Returns what happened, for people.
    pub async fn cancel(&self, run: RunId, who: &str) -> Result<String, berth_store::StoreError> {
        let note = format!("cancelled by {who}");
        let mut was_waiting = false;
        for from in [RunState::Queued, RunState::AwaitingApproval] {
            was_waiting |= self
                .inner
                .store
                .transition(run, from, RunState::Cancelled, Some(&note))
                .await?;
            if was_waiting {
                break;
            }
        }
        if was_waiting {
            self.inner.metrics.run_finished(RunState::Cancelled, None);
            return Ok("cancelled before it started".into());
        }
        let active = self.inner.active.lock().expect("active");
        match active.get(&run) {
            Some(a) if a.cancel.cancel() => Ok("cancelling: it stops before its next step".into()),
            Some(_) => Ok(
                "its deploy is in progress: it will finish or roll back; it cannot be stopped half-way".into(),
            ),
            None => Ok("it is not queued or running".into()),
        }
    }

    /// Queues a run and wakes the scheduler; supersedes older queued runs of its branch when
    /// configured.
    pub async fn enqueue(&self, new: NewRun) -> Result<Run, berth_store::StoreError> {
        let run = self.inner.store.create_run(new).await?;
        self.after_queued(std::slice::from_ref(&run)).await?;
        Ok(run)
    }

    /// What happens after runs are persisted (by [`Server::enqueue`] or a webhook delivery).
    pub(crate) async fn after_queued(&self, runs: &[Run]) -> Result<(), berth_store::StoreError> {
        if self.inner.config.supersede {
            for r in runs
                .iter()
                .filter(|r| matches!(r.trigger, Trigger::Webhook { .. } | Trigger::Poll))
            {
                for old in self.inner.store.supersede_older(r.id).await? {
                    tracing::info!(run = %old, by = %r.id, "superseded by a newer push");
                    self.inner.metrics.run_finished(RunState::Superseded, None);
                }
            }
        }
        self.wake();
        Ok(())
    }

    /// The runs a push of `commit` to `branch` of `repo` creates, or why it creates none
    /// (the server config lets the branch deploy no environment). A run into a protected
    /// environment — or of a branch that may deploy one, when the environment is not known
    /// before the run reads berth.yaml — waits for a deployer's approval.
    pub(crate) async fn runs_for_push(
        &self,
        repo: &Repository,
        branch: &str,
        commit: &str,
        trigger: Trigger,
    ) -> Result<Vec<NewRun>, String> {
        if !repo.branch_may_deploy(branch) {
            return Err(repo.refused_branch(branch));
        }
        let environment = self.environment_for_branch(repo, branch).await;
        if environment.is_none() {
            // The view may be stale: queue it anyway; the run itself reads berth.yaml of the
            // pushed commit, and refuses what the server config does not allow.
            tracing::debug!(repository = %repo.name, branch, "no environment known for the branch yet");
        }
        let needs_approval = match &environment {
            Some(e) => repo.protected(e),
            None => repo
                .environments
                .iter()
                .any(|e| e.protected && e.branches.iter().any(|b| b == branch)),
        };
        Ok(vec![NewRun {
            repository: repo.name.clone(),
            branch: branch.to_string(),
            commit: commit.to_string(),
            environment: environment.unwrap_or_default(),
            trigger,
            needs_approval,
        }])
    }
}
