//! Polling repositories whose hosts send no webhooks.

use super::*;

impl Server {
    /// Runs a repository's polling loop: every `poll`, ls-remote each branch and queue a run
    /// for a commit not seen before.
    pub(super) async fn poll(self, repo: Repository) {
        let every = repo.poll.expect("only polled repositories");
        let remote = remote_of(&repo);
        loop {
            let branches: Vec<String> = if repo.branches.is_empty() {
                match self.view(&repo).await {
                    Ok(c) => c.branch.into_iter().collect(),
                    Err(_) => Vec::new(),
                }
            } else {
                repo.branches.clone()
            };
            for branch in branches {
                match self.inner.git.ls_remote(&remote, &branch).await {
                    Ok(Some(commit)) => {
                        let seen = self
                            .inner
                            .store
                            .last_seen(&repo.name, &branch)
                            .await
                            .ok()
                            .flatten();
                        if seen.as_deref() != Some(commit.as_str()) {
                            let runs = self
                                .runs_for_push(&repo, &branch, &commit, Trigger::Poll)
                                .await
                                .unwrap_or_else(|why| {
                                    tracing::info!(repository = %repo.name, "polled commit {commit} not deployed: {why}");
                                    Vec::new()
                                });
                            for r in runs {
                                if let Err(e) = self.enqueue(r).await {
                                    tracing::error!(repository = %repo.name, "queueing a polled commit: {e}");
                                }
                            }
                            let _ = self
                                .inner
                                .store
                                .set_last_seen(&repo.name, &branch, &commit)
                                .await;
                        }
                    }
                    Ok(None) => {}
                    Err(e) => tracing::warn!(repository = %repo.name, branch, "polling: {e}"),
                }
            }
            tokio::time::sleep(every).await;
        }
    }
}
