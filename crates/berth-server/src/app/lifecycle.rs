//! The life of one run: its checkout and view of berth.yaml, the protected-environment
//! check, the work itself and its outcome in the store.

use super::*;

impl Server {
    pub(super) async fn environment_for_branch(
        &self,
        repo: &Repository,
        branch: &str,
    ) -> Option<String> {
        let mut views = self.inner.views.lock().await;
        let v = views.get_mut(&repo.name)?;
        if let Some(known) = v.branches.get(branch) {
            return known.clone();
        }
        let env = self
            .inner
            .executor
            .environment_for_branch(&v.checkout, branch);
        v.branches.insert(branch.to_string(), env.clone());
        env
    }

    /// The checkout the UI and API read a repository's berth.yaml from: the last commit run,
    /// or the remote's HEAD when nothing ran yet.
    pub(crate) async fn view(&self, repo: &Repository) -> Result<Checkout, String> {
        if let Some(v) = self.inner.views.lock().await.get(&repo.name) {
            return Ok(v.checkout.clone());
        }
        self.refresh_view(repo, None).await
    }

    pub(super) async fn refresh_view(
        &self,
        repo: &Repository,
        commit: Option<(&str, Option<&str>)>,
    ) -> Result<Checkout, String> {
        let remote = remote_of(repo);
        self.inner
            .git
            .fetch(&repo.name, &remote)
            .await
            .map_err(|e| e.to_string())?;
        let (commit, branch) = match commit {
            Some((c, b)) => (c.to_string(), b.map(str::to_string)),
            None => {
                let mut found = None;
                // The mirror's HEAD may not follow the remote's default branch (a mirror made
                // by `init` + `fetch` points at `master`), and HEAD names no branch, which a
                // polled repository without `branches:` needs: the usual names come first.
                // (Whether the mirror was made before or after the first push decided this,
                // and made polling of such a repository see no branch at all.)
                for rev in repo
                    .branches
                    .iter()
                    .map(String::as_str)
                    .chain(["main", "master", "HEAD"])
                {
                    if let Ok(c) = self.inner.git.resolve(&repo.name, rev).await {
                        found = Some((c, (rev != "HEAD").then(|| rev.to_string())));
                        break;
                    }
                }
                found.ok_or_else(|| format!("repository `{}` has no commits yet", repo.name))?
            }
        };
        let mut views = self.inner.views.lock().await;
        if let Some(v) = views.get(&repo.name)
            && v.checkout.commit == commit
        {
            return Ok(v.checkout.clone());
        }
        let dest = self.inner.config.data_dir.join("views").join(format!(
            "{}-{}",
            repo.name,
            &commit[..12.min(commit.len())]
        ));
        let _ = std::fs::create_dir_all(self.inner.config.data_dir.join("views"));
        let _ = std::fs::remove_dir_all(&dest);
        let worktree = self
            .inner
            .git
            .worktree(&repo.name, &commit, &dest)
            .await
            .map_err(|e| e.to_string())?;
        let checkout = Checkout {
            config: dest.join(&repo.config),
            dir: dest,
            commit,
            branch,
            repository: repo.name.clone(),
        };
        views.insert(
            repo.name.clone(),
            ViewCheckout {
                checkout: checkout.clone(),
                _worktree: worktree,
                branches: HashMap::new(),
            },
        );
        Ok(checkout)
    }

    pub(super) async fn execute(&self, run: Run, cancel: CancelToken) {
        let started = Instant::now();
        let (tx, _) = broadcast::channel(1024);
        self.inner
            .live
            .lock()
            .expect("live")
            .insert(run.id, tx.clone());
        let sink = Arc::new(RunSink::start(self.inner.store.clone(), run.id, tx));
        // The engine stops at its next step boundary (or during a cancellable step) once
        // `cancel` is taken, and refuses to be cancelled from its deploy on (the token says).
        let result = self.work(&run, sink.clone(), &cancel).await;
        let (state, note, summary) = match &result {
            Ok(outcome) => (
                RunState::Succeeded,
                None,
                serde_json::json!({ "outcome": outcome }),
            ),
            Err(_) if cancel.is_cancelled() => (
                RunState::Cancelled,
                Some("cancelled before its deploy started".to_string()),
                serde_json::json!({ "error": "cancelled" }),
            ),
            Err(f) => (
                if f.rolled_back {
                    RunState::RolledBack
                } else {
                    RunState::Failed
                },
                Some(f.message.clone()),
                serde_json::json!({ "error": f.message, "rolled_back": f.rolled_back, "diagnosis": f.diagnosis }),
            ),
        };
        if let Err(f) = &result {
            sink.emit(Event::Message {
                step: Step::Run.into(),
                level: Level::Error,
                message: f.message.clone(),
            });
        }
        sink.finish().await;
        if let Err(e) = self.inner.store.set_result(run.id, &summary).await {
            tracing::error!(run = %run.id, "recording the result: {e}");
        }
        match self
            .inner
            .store
            .transition(run.id, RunState::Running, state, note.as_deref())
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(run = %run.id, "run was no longer running when it finished")
            }
            Err(e) => tracing::error!(run = %run.id, "recording the end of the run: {e}"),
        }
        self.inner
            .metrics
            .run_finished(state, Some(started.elapsed()));
    }

    /// fetch -> worktree -> the executor.
    pub(super) async fn work(
        &self,
        run: &Run,
        sink: Arc<RunSink>,
        cancel: &CancelToken,
    ) -> Result<Outcome, Failure> {
        let repo = self
            .inner
            .config
            .repository(&run.repository)
            .ok_or_else(|| {
                Failure::msg(format!(
                    "repository `{}` is no longer configured",
                    run.repository
                ))
            })?
            .clone();
        let step = |name: Step| {
            cancel.enter(name)?;
            sink.emit(Event::StepStarted { step: name.into() });
            Ok::<(), Failure>(())
        };
        let done = |name: Step, t: Instant, ok: bool, message: String| {
            sink.emit(Event::StepFinished {
                step: name.into(),
                ok,
                millis: t.elapsed().as_millis() as u64,
                message,
            })
        };

        let t = Instant::now();
        step(Step::Fetch)?;
        let fetched = cancel
            .during(Step::Fetch, async {
                Ok::<_, Failure>(self.inner.git.fetch(&repo.name, &remote_of(&repo)).await)
            })
            .await?;
        let commit = match fetched {
            Ok(_) => match self.inner.git.resolve(&repo.name, &run.commit).await {
                Ok(c) => c,
                Err(e) => {
                    done(Step::Fetch, t, false, e.to_string());
                    return Err(Failure::msg(e.to_string()));
                }
            },
            Err(e) => {
                done(Step::Fetch, t, false, e.to_string());
                return Err(Failure::msg(e.to_string()));
            }
        };
        done(
            Step::Fetch,
            t,
            true,
            format!("{} at {}", repo.name, short(&commit)),
        );

        let t = Instant::now();
        step(Step::Checkout)?;
        let dest = self
            .inner
            .config
            .data_dir
            .join("work")
            .join(run.id.to_string());
        let _ = std::fs::remove_dir_all(&dest);
        let worktree = match self.inner.git.worktree(&repo.name, &commit, &dest).await {
            Ok(w) => w,
            Err(e) => {
                done(Step::Checkout, t, false, e.to_string());
                return Err(Failure::msg(e.to_string()));
            }
        };
        let branch = (!run.branch.is_empty()).then(|| run.branch.clone());
        let checkout = Checkout {
            config: dest.join(&repo.config),
            dir: dest.clone(),
            commit: commit.clone(),
            branch: branch.clone(),
            repository: repo.name.clone(),
        };
        if !checkout.config.exists() {
            let m = format!(
                "commit {} has no {}; add it, or set `config:` of repository `{}` in the server config",
                short(&commit),
                repo.config.display(),
                repo.name
            );
            done(Step::Checkout, t, false, m.clone());
            return Err(Failure::msg(m));
        }
        done(
            Step::Checkout,
            t,
            true,
            format!("{} at {}", repo.config.display(), short(&commit)),
        );

        let action = match &run.trigger {
            Trigger::Rollback => Action::Rollback {
                to: run
                    .result
                    .as_ref()
                    .and_then(|r| r.get("to"))
                    .and_then(|v| v.as_u64()),
            },
            Trigger::Promote { from } => Action::Promote { from: from.clone() },
            _ => Action::Run,
        };
        let environment = if run.environment.is_empty() {
            match branch
                .as_deref()
                .and_then(|b| self.inner.executor.environment_for_branch(&checkout, b))
            {
                Some(e) => Some(e),
                None => {
                    let m = format!(
                        "no environment of {} deploys branch `{}`; give one a `branch: {}`",
                        repo.config.display(),
                        run.branch,
                        run.branch
                    );
                    return Err(Failure::msg(m));
                }
            }
        } else {
            Some(run.environment.clone())
        };
        let context = self
            .authorize(&repo, run, &checkout, environment.as_deref(), &action)
            .await
            .map_err(Failure::msg)?;
        let job = Job {
            run: run.id.to_string(),
            checkout: checkout.clone(),
            environment,
            action,
            user: trigger_user(&run.trigger),
            context,
            allow_host_network: repo.allow_host_network,
            cancel: cancel.clone(),
        };
        let result = self
            .inner
            .executor
            .execute(job, sink.clone() as Arc<dyn EventSink>)
            .await;
        sink.end_deploy(result.is_ok());
        drop(worktree);
        if result.is_ok() {
            // What ran last is what the UI reads berth.yaml from.
            let _ = self
                .refresh_view(&repo, Some((&commit, branch.as_deref())))
                .await;
        }
        result
    }

    /// Holds a run against the server config before anything builds or deploys: the
    /// environment the commit's berth.yaml chose must be one the server lets this repository
    /// and branch deploy, into the namespace and context it pins; a push into a protected
    /// environment must have been approved; and a push must not take an environment back to
    /// an older commit (a replayed webhook: the delivery id is not signed, so a captured push
    /// resent under a new id would redeploy its old commit). Runs a deployer asked for (run,
    /// re-run, rollback, promote) may go back. Returns the kube context the server pins.
    pub(super) async fn authorize(
        &self,
        repo: &Repository,
        run: &Run,
        checkout: &Checkout,
        environment: Option<&str>,
        action: &Action,
    ) -> Result<Option<String>, String> {
        let Some(environment) = environment else {
            return Ok(None);
        };
        let target = self.inner.executor.target(checkout, environment)?;
        let builds = matches!(action, Action::Run);
        let branch = builds.then_some(run.branch.as_str());
        let context = repo.authorize(environment, branch, &target)?;
        let pushed = matches!(run.trigger, Trigger::Webhook { .. } | Trigger::Poll);
        if !pushed {
            return Ok(context);
        }
        let approved = run
            .result
            .as_ref()
            .and_then(|r| r.get("approved_by"))
            .is_some();
        if repo.protected(environment) && !approved {
            return Err(format!(
                "environment `{environment}` is protected: a push deploys it only once a deployer approves the run (POST /api/runs/{}/approve); re-run it to ask again",
                run.id
            ));
        }
        let live = self
            .inner
            .executor
            .live_commit(checkout, environment, context.as_deref())
            .await
            .map_err(|e| {
                format!("cannot read the release live in `{environment}` to check the push is newer: {e}")
            })?;
        if let Some(live) = live
            && live != checkout.commit
        {
            let force = format!(
                "a deployer can deploy it on purpose with POST /api/repositories/{}/runs {{\"commit\": \"{}\", \"environment\": \"{environment}\"}}",
                repo.name, checkout.commit
            );
            match self
                .inner
                .git
                .is_ancestor(&repo.name, &live, &checkout.commit)
                .await
            {
                Ok(true) => {}
                Ok(false) => {
                    return Err(format!(
                        "commit {} is not a descendant of {}, which `{environment}` runs now: a push never takes an environment back (a replayed or out-of-order webhook, or a force-push); {force}",
                        short(&checkout.commit),
                        short(&live),
                    ));
                }
                // The live commit is not in this repository (any more): fail closed.
                Err(e) => {
                    return Err(format!(
                        "cannot tell whether commit {} descends from {}, which `{environment}` runs now ({e}); a push never takes an environment back; {force}",
                        short(&checkout.commit),
                        short(&live),
                    ));
                }
            }
        }
        Ok(context)
    }
}
