//! The deploy's decisions about single objects — what to prune, whether a hook runs again, whether
//! the live revision is still in place — written against [`ClusterObjects`], the three cluster
//! operations they use, so that they are unit-tested on inline objects (an in-memory
//! implementation in the tests below). [`berth_cluster::Cluster`] is the real one.
//!
//! Every wait here ends at a deadline the caller passes (the deploy's `--timeout`, what is left
//! of it); none has one of its own.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_cluster::{Cluster, ClusterError, ObjectKey};
use berth_types::{Event, EventSink, Level, State, Step};
use futures::FutureExt;
use serde_json::Value;

use crate::plan::{self, key_of};
use crate::release::{Release, SeedRun};
use crate::{DeployError, FIELD_MANAGER, Failure, Lock, PARALLEL_APPLIES, at_most};

/// The cluster operations on single objects that the deploy's decisions use.
pub trait ClusterObjects: Sync {
    /// The live object, if it exists.
    fn get(
        &self,
        key: &ObjectKey,
    ) -> impl Future<Output = Result<Option<Value>, ClusterError>> + Send;
    /// Server-side apply of `object` as `field_manager`; the live object.
    fn apply(
        &self,
        object: &Value,
        field_manager: &str,
        force: bool,
    ) -> impl Future<Output = Result<Value, ClusterError>> + Send;
    /// Deletes the object; whether it existed.
    fn delete(&self, key: &ObjectKey) -> impl Future<Output = Result<bool, ClusterError>> + Send;
}

impl ClusterObjects for Cluster {
    fn get(
        &self,
        key: &ObjectKey,
    ) -> impl Future<Output = Result<Option<Value>, ClusterError>> + Send {
        Cluster::get(self, key)
    }

    fn apply(
        &self,
        object: &Value,
        field_manager: &str,
        force: bool,
    ) -> impl Future<Output = Result<Value, ClusterError>> + Send {
        Cluster::apply(self, object, field_manager, force)
    }

    fn delete(&self, key: &ObjectKey) -> impl Future<Output = Result<bool, ClusterError>> + Send {
        Cluster::delete(self, key)
    }
}

/// Whether the release's lock is still ours ([`Lock::check`]); checked before every write.
pub trait Held: Sync {
    /// [`DeployError::LostLock`] once the lock is lost.
    fn check(&self) -> Result<(), DeployError>;
}

impl Held for Lock {
    fn check(&self) -> Result<(), DeployError> {
        Lock::check(self)
    }
}

/// Reports a message of the deploy step.
pub(crate) fn message(sink: &Arc<dyn EventSink>, level: Level, message: String) {
    sink.emit(Event::Message {
        step: Step::Deploy.into(),
        level,
        message,
    });
}

/// Reports an object's state, `t0` being the deploy's start.
pub(crate) fn object_state(
    sink: &Arc<dyn EventSink>,
    t0: Instant,
    object: &str,
    state: State,
    message: &str,
) {
    sink.emit(Event::ObjectState {
        object: object.into(),
        state,
        message: message.into(),
        millis: t0.elapsed().as_millis() as u64,
    });
}

/// The steps of one deploy over `cluster`, reporting to `sink`.
pub(crate) struct Steps<'a, C> {
    pub cluster: &'a C,
    pub sink: &'a Arc<dyn EventSink>,
    /// The deploy's start, for the events' times.
    pub t0: Instant,
}

impl<C: ClusterObjects> Steps<'_, C> {
    /// Deletes objects of `previous` that `next` lacks, if they are still this release's
    /// (and, when cluster-scoped, this namespace's); how many were deleted.
    pub async fn prune(
        &self,
        previous: &[Value],
        next: &[Value],
        release: &str,
        namespace: &str,
        lock: &impl Held,
    ) -> Result<usize, DeployError> {
        let mut n = 0;
        for k in plan::to_prune(previous, next) {
            lock.check()?;
            let Some(live) = self.cluster.get(&k).await? else {
                continue;
            };
            if !plan::owned_by(&live, release, namespace) {
                message(
                    self.sink,
                    Level::Warning,
                    format!(
                        "left {k} alone: it is not labelled as release `{release}`'s{}, so berth \
                         does not own it",
                        if k.namespace.is_none() {
                            format!(" of namespace `{namespace}`")
                        } else {
                            String::new()
                        }
                    ),
                );
                continue;
            }
            lock.check()?;
            if self.cluster.delete(&k).await? {
                n += 1;
                object_state(
                    self.sink,
                    self.t0,
                    &format!("{}/{}", k.kind, k.name),
                    State::Pruned,
                    "",
                );
            }
        }
        Ok(n)
    }

    /// Starts hook Jobs: a run-once hook that succeeded before is skipped (noted in `seeds`
    /// with the revision that ran it, the live Job's `berth.dev/revision`); any other is
    /// deleted, waited for until `deadline`, and applied again (noted in `seeds` as run in
    /// `revision` when it runs once). The Jobs applied, to be waited for; `Err(Failure)` when
    /// an earlier run was not gone by `deadline`.
    pub async fn start_hooks(
        &self,
        hooks: &[&Value],
        lock: &impl Held,
        deadline: tokio::time::Instant,
        revision: u64,
        seeds: &mut Vec<SeedRun>,
    ) -> Result<Result<BTreeMap<ObjectKey, Value>, Failure>, DeployError> {
        let mut applied = BTreeMap::new();
        for hook in hooks {
            let k = key_of(hook);
            let name = format!("{}/{}", k.kind, k.name);
            if plan::runs_once(hook)
                && let Some(done) = self.cluster.get(&k).await?
                && done["status"]["succeeded"].as_i64().unwrap_or(0) > 0
            {
                // A seed/data-load Job: it succeeded once in this environment, never again.
                seeds.push(SeedRun {
                    job: name.clone(),
                    revision: done["metadata"]["annotations"]
                        [berth_objects::ownership::REVISION_ANNOTATION]
                        .as_str()
                        .and_then(|r| r.parse().ok())
                        .unwrap_or(0),
                    ran: false,
                });
                object_state(
                    self.sink,
                    self.t0,
                    &name,
                    State::Ready,
                    "succeeded before; berth.dev/hook-run: once",
                );
                continue;
            }
            if self.cluster.delete(&k).await? {
                // Jobs are immutable; wait for the old run to go before re-creating it.
                while self.cluster.get(&k).await?.is_some() {
                    if tokio::time::Instant::now() >= deadline {
                        return Ok(Err(Failure {
                            object: name,
                            reason: "the previous run of this hook was not deleted within the \
                                     deploy's deadline (--timeout)"
                                .into(),
                            logs: None,
                        }));
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            lock.check()?;
            let live = self.cluster.apply(hook, FIELD_MANAGER, true).await?;
            object_state(self.sink, self.t0, &name, State::Applied, "hook");
            if plan::runs_once(hook) {
                seeds.push(SeedRun {
                    job: name,
                    revision,
                    ran: true,
                });
            }
            applied.insert(k, live);
        }
        Ok(Ok(applied))
    }

    /// Whether every non-hook object of `release` exists, carries its revision and is ready
    /// now.
    pub async fn all_live_and_ready(&self, release: &Release) -> Result<bool, ClusterError> {
        let checks = release
            .objects
            .iter()
            .filter(|o| plan::hook_of(o).is_none())
            .map(|o| {
                async move {
                    let k = key_of(o);
                    self.cluster.get(&k).await.map(|live| {
                        live.is_some_and(|l| {
                            l["metadata"]["annotations"]
                                [berth_objects::ownership::REVISION_ANNOTATION]
                                == release.revision.to_string().as_str()
                                && berth_rollout::readiness(&l).is_ready()
                        })
                    })
                }
                .boxed()
            })
            .collect();
        for c in at_most(PARALLEL_APPLIES, checks).await {
            if !c? {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use serde_json::json;

    use super::*;

    /// Objects in memory: `get`, `apply` (stores the object, `status` kept) and `delete`
    /// (removes it, unless `sticky`, like a Job whose deletion a finalizer holds up).
    #[derive(Default)]
    struct Memory {
        objects: Mutex<BTreeMap<ObjectKey, Value>>,
        sticky: bool,
        applied: Mutex<Vec<String>>,
        deleted: Mutex<Vec<String>>,
    }

    impl Memory {
        fn with(objects: &[Value]) -> Memory {
            let m = Memory::default();
            for o in objects {
                m.objects.lock().unwrap().insert(key_of(o), o.clone());
            }
            m
        }
    }

    impl ClusterObjects for Memory {
        async fn get(&self, key: &ObjectKey) -> Result<Option<Value>, ClusterError> {
            Ok(self.objects.lock().unwrap().get(key).cloned())
        }

        async fn apply(&self, object: &Value, _: &str, _: bool) -> Result<Value, ClusterError> {
            self.applied.lock().unwrap().push(key_of(object).name);
            self.objects
                .lock()
                .unwrap()
                .insert(key_of(object), object.clone());
            Ok(object.clone())
        }

        async fn delete(&self, key: &ObjectKey) -> Result<bool, ClusterError> {
            self.deleted.lock().unwrap().push(key.name.clone());
            let mut objects = self.objects.lock().unwrap();
            if self.sticky {
                return Ok(objects.contains_key(key));
            }
            Ok(objects.remove(key).is_some())
        }
    }

    struct Ours;

    impl Held for Ours {
        fn check(&self) -> Result<(), DeployError> {
            Ok(())
        }
    }

    struct Quiet;

    impl EventSink for Quiet {
        fn emit(&self, _: Event) {}
    }

    fn sink() -> Arc<dyn EventSink> {
        Arc::new(Quiet)
    }

    fn steps<'a>(cluster: &'a Memory, sink: &'a Arc<dyn EventSink>) -> Steps<'a, Memory> {
        Steps {
            cluster,
            sink,
            t0: Instant::now(),
        }
    }

    fn config_map(name: &str, release: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": name, "namespace": "app",
                            "labels": {"app.kubernetes.io/managed-by": "berth",
                                       "berth.dev/release": release}}})
    }

    fn job(name: &str, hook_run: &str, succeeded: i64, revision: &str) -> Value {
        json!({"apiVersion": "batch/v1", "kind": "Job",
               "metadata": {"name": name, "namespace": "app",
                            "annotations": {"berth.dev/hook": "pre-deploy",
                                            "berth.dev/hook-run": hook_run,
                                            "berth.dev/revision": revision}},
               "status": {"succeeded": succeeded}})
    }

    #[tokio::test]
    async fn prune_deletes_what_the_next_revision_lacks_only_when_the_release_owns_it() {
        let live = [
            config_map("kept", "web"),
            config_map("gone", "web"),
            config_map("theirs", "other"),
        ];
        let cluster = Memory::with(&live);
        let sink = sink();
        let previous = [
            config_map("kept", "web"),
            config_map("gone", "web"),
            config_map("theirs", "web"),
            config_map("already-deleted", "web"),
        ];
        let next = [config_map("kept", "web")];
        let n = steps(&cluster, &sink)
            .prune(&previous, &next, "web", "app", &Ours)
            .await
            .unwrap();
        assert_eq!(n, 1);
        assert_eq!(*cluster.deleted.lock().unwrap(), ["gone"]);
        let names: Vec<String> = cluster
            .objects
            .lock()
            .unwrap()
            .keys()
            .map(|k| k.name.clone())
            .collect();
        assert_eq!(names, ["kept", "theirs"]);
    }

    #[tokio::test]
    async fn a_run_once_hook_that_succeeded_is_not_run_again_and_others_are_recreated() {
        let seed = job("seed", "once", 1, "3");
        let failed_seed = job("seed-failed", "once", 0, "3");
        let migrate = job("migrate", "always", 1, "3");
        let cluster = Memory::with(&[seed.clone(), failed_seed.clone(), migrate.clone()]);
        let sink = sink();
        let mut seeds = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let applied = steps(&cluster, &sink)
            .start_hooks(
                &[&seed, &failed_seed, &migrate],
                &Ours,
                deadline,
                4,
                &mut seeds,
            )
            .await
            .unwrap()
            .unwrap();
        let applied: Vec<String> = applied.keys().map(|k| k.name.clone()).collect();
        assert_eq!(applied, ["migrate", "seed-failed"]);
        assert_eq!(*cluster.deleted.lock().unwrap(), ["seed-failed", "migrate"]);
        assert_eq!(
            seeds,
            [
                SeedRun {
                    job: "Job/seed".into(),
                    revision: 3,
                    ran: false
                },
                SeedRun {
                    job: "Job/seed-failed".into(),
                    revision: 4,
                    ran: true
                },
            ]
        );
    }

    #[tokio::test]
    async fn a_hook_whose_old_job_is_never_deleted_fails_at_the_callers_deadline_not_after_60s() {
        let migrate = job("migrate", "always", 1, "3");
        let mut cluster = Memory::with(std::slice::from_ref(&migrate));
        cluster.sticky = true;
        let sink = sink();
        let started = tokio::time::Instant::now();
        let failure = steps(&cluster, &sink)
            .start_hooks(
                &[&migrate],
                &Ours,
                started + Duration::from_millis(500),
                4,
                &mut Vec::new(),
            )
            .await
            .unwrap()
            .unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "waited {:?}",
            started.elapsed()
        );
        assert_eq!(failure.object, "Job/migrate");
        assert!(failure.reason.contains("--timeout"), "{}", failure.reason);
        assert!(cluster.applied.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn the_live_revision_is_in_place_only_when_every_object_carries_it_and_is_ready() {
        let mut cm = config_map("c", "web");
        cm["metadata"]["annotations"] = json!({"berth.dev/revision": "2"});
        let release = |revision| Release {
            objects: vec![cm.clone(), job("migrate", "always", 0, "1")],
            ..crate::plan::tests::release(revision, crate::Status::Deployed, &[])
        };
        let cluster = Memory::with(std::slice::from_ref(&cm));
        let sink = sink();
        let s = steps(&cluster, &sink);
        // The hook Job is not live (and failed before): hooks do not count.
        assert!(s.all_live_and_ready(&release(2)).await.unwrap());
        // Live, but applied by another revision.
        assert!(!s.all_live_and_ready(&release(3)).await.unwrap());
        let empty = Memory::default();
        assert!(
            !steps(&empty, &sink)
                .all_live_and_ready(&release(2))
                .await
                .unwrap()
        );
    }
}
