//! One deploy at a time per release: a `coordination.k8s.io` Lease with a TTL.
//!
//! The holder renews the Lease every third of its TTL while it works. A second deploy waits
//! (up to its own deadline) and then fails naming the holder. A process killed mid-deploy stops
//! renewing, so its lock frees itself once the TTL has passed — there is no "another operation
//! is in progress" state that needs a human.
//!
//! Taking an expired or free lease is a compare-and-swap on `resourceVersion`, so two waiters
//! cannot both win.
//!
//! **Expiry is judged by local time only**, as client-go's leader election does: a waiter
//! remembers the lease's `resourceVersion` and the local monotonic instant it first saw it
//! ([`Observed`]); the lease is expired once it has not changed for `leaseDurationSeconds` of
//! the waiter's own clock. The holder's `renewTime` is written by another host whose clock may
//! be minutes off, so it is shown to people but never compared with the local clock.
//!
//! **A lost lock stops the deploy at once.** The holder checks the Lease every third of its
//! TTL; when another holder's name is there, the Lease is gone, or renewals have failed for a
//! whole TTL (so a waiter may have taken it), [`Lock::check`] fails with
//! [`DeployError::LostLock`] and [`Lock::lost`] wakes whoever waits on it. The engine checks
//! between every apply, before every prune and write of a record, and aborts tracking.

use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_cluster::{Cluster, ObjectKey};
use berth_types::{Event, EventSink, State};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::DeployError;

/// Lock settings.
#[derive(Clone, Debug)]
pub struct LockOptions {
    /// How long a lock lives without renewal.
    pub ttl: Duration,
    /// How long to wait for another holder before giving up.
    pub wait: Duration,
    /// Who we are, as shown to others (user@host pid).
    pub holder: String,
}

/// A held lock; renewed in the background until [`Lock::release`] (or drop, which stops
/// renewing and lets the TTL free it).
pub struct Lock {
    cluster: Cluster,
    key: ObjectKey,
    holder: String,
    release: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    lost: watch::Receiver<Option<String>>,
}

fn lease_name(release: &str) -> String {
    format!("berth-lock-{release}")
}

fn micro_now() -> String {
    // MicroTime: RFC 3339 with exactly six fractional digits.
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

/// What a waiter has seen of a lease held by someone else: its `resourceVersion` and the
/// local instant it first saw that version.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    seen: Option<(String, Instant)>,
}

impl Observed {
    /// Whether `lease`, read at local instant `now`, is free to take: no holder, or unchanged
    /// for its `leaseDurationSeconds` of local time since first seen. Timestamps in the lease
    /// are never compared with the local clock.
    pub fn is_free(&mut self, lease: &Value, now: Instant) -> bool {
        let spec = &lease["spec"];
        if spec["holderIdentity"].as_str().unwrap_or("").is_empty() {
            return true;
        }
        let version = lease["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let ttl = Duration::from_secs(spec["leaseDurationSeconds"].as_u64().unwrap_or(0));
        match &self.seen {
            Some((v, at)) if *v == version => now.duration_since(*at) >= ttl,
            _ => {
                // New to us (or renewed since): its holder is alive as of now.
                self.seen = Some((version, now));
                false
            }
        }
    }
}

impl Lock {
    /// Takes the lock of `release` in `namespace`, waiting for another holder up to
    /// `options.wait`.
    pub async fn acquire(
        cluster: &Cluster,
        namespace: &str,
        release: &str,
        options: &LockOptions,
        sink: &Arc<dyn EventSink>,
    ) -> Result<Lock, DeployError> {
        let key = ObjectKey::new(
            "coordination.k8s.io/v1",
            "Lease",
            Some(namespace),
            &lease_name(release),
        );
        let waiting_since = tokio::time::Instant::now();
        let deadline = waiting_since + options.wait;
        let mut heartbeat = crate::heartbeat::Heartbeat::new(waiting_since, options.wait);
        let ttl = options.ttl.as_secs().max(1) as i64;
        let mut observed = Observed::default();
        loop {
            let now = micro_now();
            let mine = json!({
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": key.name, "namespace": namespace,
                             "labels": {"app.kubernetes.io/managed-by": "berth"}},
                "spec": {"holderIdentity": options.holder, "leaseDurationSeconds": ttl,
                         "acquireTime": now, "renewTime": now}
            });
            let taken = match cluster.get(&key).await? {
                None => match cluster.create(&mine).await {
                    Ok(_) => true,
                    Err(e) if e.is_conflict() => false,
                    Err(e) => return Err(e.into()),
                },
                Some(live) if observed.is_free(&live, Instant::now()) => {
                    let mut next = mine.clone();
                    next["metadata"]["resourceVersion"] =
                        live["metadata"]["resourceVersion"].clone();
                    match cluster.replace(&next).await {
                        Ok(_) => true,
                        Err(e) if e.is_conflict() => false,
                        Err(e) => return Err(e.into()),
                    }
                }
                Some(live) => {
                    let now = tokio::time::Instant::now();
                    if let Some(waited) = heartbeat.beat(now).filter(|_| now < deadline) {
                        sink.emit(Event::ObjectState {
                            object: format!("Lease/{}", key.name),
                            state: State::Waiting,
                            message: format!(
                                "still waiting {waited}: release `{release}` is locked by {}",
                                live["spec"]["holderIdentity"].as_str().unwrap_or("?")
                            ),
                            millis: now.duration_since(waiting_since).as_millis() as u64,
                        });
                    }
                    if now >= deadline {
                        let spec = &live["spec"];
                        return Err(DeployError::Locked {
                            release: release.into(),
                            namespace: namespace.into(),
                            holder: spec["holderIdentity"].as_str().unwrap_or("?").into(),
                            renewed: spec["renewTime"].as_str().unwrap_or("?").into(),
                            ttl: spec["leaseDurationSeconds"].as_i64().unwrap_or(0),
                        });
                    }
                    false
                }
            };
            if taken {
                return Ok(Lock::start(cluster.clone(), key, release, options));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    fn start(cluster: Cluster, key: ObjectKey, release: &str, options: &LockOptions) -> Lock {
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel();
        let (lost_tx, lost_rx) = watch::channel(None);
        let lost_tx = Arc::new(lost_tx);
        let ttl = options.ttl.max(Duration::from_secs(1));
        let every = ttl / 3;
        let holder = options.holder.clone();
        let (c, k, h) = (cluster.clone(), key.clone(), holder.clone());
        tokio::spawn(async move {
            let mut renewed = Instant::now();
            loop {
                tokio::select! {
                    _ = &mut stop_rx => return,
                    _ = tokio::time::sleep(every) => {}
                }
                match c.get(&k).await {
                    Ok(Some(mut live)) if live["spec"]["holderIdentity"] == h.as_str() => {
                        live["spec"]["renewTime"] = json!(micro_now());
                        match c.replace(&live).await {
                            Ok(_) => renewed = Instant::now(),
                            // Changed under us: the next round reads who holds it now.
                            Err(e) => tracing::warn!("renewing {k}: {e}"),
                        }
                    }
                    Ok(other) => {
                        let who = other
                            .and_then(|l| l["spec"]["holderIdentity"].as_str().map(String::from))
                            .filter(|w| !w.is_empty())
                            .unwrap_or_else(|| "nobody (the Lease was deleted)".into());
                        let _ = lost_tx.send(Some(who));
                        return;
                    }
                    Err(e) => tracing::warn!("renewing {k}: {e}"),
                }
                if renewed.elapsed() >= ttl {
                    // A waiter may have judged it expired by now: we no longer hold it.
                    let _ = lost_tx.send(Some(format!(
                        "whoever takes it next (berth could not renew it for {}s)",
                        ttl.as_secs()
                    )));
                    return;
                }
            }
        });
        Lock {
            cluster,
            key,
            holder,
            release: release.into(),
            stop: Some(stop_tx),
            lost: lost_rx,
        }
    }

    /// Who took the lock from us, if someone did (we stopped renewing in time, e.g. a
    /// suspended laptop).
    pub fn lost_to(&self) -> Option<String> {
        self.lost.borrow().clone()
    }

    /// The error for a lock lost to `holder`.
    pub fn lost_error(&self, holder: String) -> DeployError {
        DeployError::LostLock {
            namespace: self.key.namespace.clone().unwrap_or_default(),
            release: self.release.clone(),
            holder,
        }
    }

    /// Fails with [`DeployError::LostLock`] once the lock is lost.
    pub fn check(&self) -> Result<(), DeployError> {
        match self.lost_to() {
            Some(holder) => Err(self.lost_error(holder)),
            None => Ok(()),
        }
    }

    /// Waits until the lock is lost and says to whom (never returns while it is held).
    pub async fn lost(&self) -> String {
        let mut rx = self.lost.clone();
        // The watch's guard (`Ref`, not `Send`) is dropped before any other await: this
        // future runs on the server's multi-threaded runtime.
        let who = rx.wait_for(Option::is_some).await.map(|who| who.clone());
        match who {
            Ok(who) => who.unwrap_or_default(),
            // The renewer ended without a loss (released): hold forever.
            Err(_) => std::future::pending().await,
        }
    }

    /// Stops renewing and frees the lock at once.
    pub async fn release(mut self) -> Result<(), DeployError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(live) = self.cluster.get(&self.key).await?
            && live["spec"]["holderIdentity"] == self.holder.as_str()
        {
            self.cluster.delete(&self.key).await?;
        }
        Ok(())
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(version: &str, renew: &str) -> Value {
        json!({"metadata": {"resourceVersion": version},
               "spec": {"holderIdentity": "a", "leaseDurationSeconds": 30, "renewTime": renew}})
    }

    #[test]
    fn a_lease_is_free_when_unheld() {
        let now = Instant::now();
        assert!(Observed::default().is_free(&json!({"spec": {"holderIdentity": ""}}), now));
        assert!(Observed::default().is_free(&json!({"spec": {}}), now));
    }

    #[test]
    fn lease_expiry_ignores_a_skewed_remote_clock() {
        let t0 = Instant::now();
        // The holder's clock is an hour behind: its renewTime looks long expired, but it is
        // renewing. Only a lease unchanged for 30 s of local time is free.
        let mut seen = Observed::default();
        assert!(!seen.is_free(&held("100", "2020-01-01T00:00:00.000000Z"), t0));
        assert!(!seen.is_free(
            &held("100", "2020-01-01T00:00:00.000000Z"),
            t0 + Duration::from_secs(29)
        ));
        // Renewed (new resourceVersion): the local count starts again.
        assert!(!seen.is_free(
            &held("101", "2020-01-01T00:00:10.000000Z"),
            t0 + Duration::from_secs(29)
        ));
        assert!(!seen.is_free(
            &held("101", "2020-01-01T00:00:10.000000Z"),
            t0 + Duration::from_secs(58)
        ));
        assert!(seen.is_free(
            &held("101", "2020-01-01T00:00:10.000000Z"),
            t0 + Duration::from_secs(59)
        ));
        // A holder an hour ahead looks fresh for an hour by timestamps; it is free after 30 s
        // without a change.
        let mut seen = Observed::default();
        assert!(!seen.is_free(&held("7", "2099-01-01T00:00:00.000000Z"), t0));
        assert!(seen.is_free(
            &held("7", "2099-01-01T00:00:00.000000Z"),
            t0 + Duration::from_secs(30)
        ));
    }

    #[test]
    fn micro_time_has_six_digits() {
        let t = micro_now();
        let frac = t.split('.').nth(1).unwrap();
        assert_eq!(frac.len(), 7, "{t}"); // six digits and Z
    }
}
