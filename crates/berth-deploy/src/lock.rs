//! One deploy at a time per release: a `coordination.k8s.io` Lease with a TTL.
//!
//! The holder renews the Lease every third of its TTL while it works. A second deploy waits
//! (up to its own deadline) and then fails naming the holder. A process killed mid-deploy stops
//! renewing, so its lock frees itself once the TTL has passed — there is no "another operation
//! is in progress" state that needs a human.
//!
//! Taking an expired or free lease is a compare-and-swap on `resourceVersion`, so two waiters
//! cannot both win.

use std::sync::Arc;
use std::time::Duration;

use berth_cluster::{Cluster, ObjectKey};
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

/// Whether a lease is free to take: no holder, or not renewed within its duration.
fn is_free(lease: &Value, now: jiff::Timestamp) -> bool {
    let spec = &lease["spec"];
    if spec["holderIdentity"].as_str().unwrap_or("").is_empty() {
        return true;
    }
    let secs = spec["leaseDurationSeconds"].as_i64().unwrap_or(0);
    let renewed = spec["renewTime"]
        .as_str()
        .or(spec["acquireTime"].as_str())
        .and_then(|t| t.parse::<jiff::Timestamp>().ok());
    match renewed {
        Some(t) => t + jiff::SignedDuration::from_secs(secs) < now,
        None => true,
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
    ) -> Result<Lock, DeployError> {
        let key = ObjectKey::new(
            "coordination.k8s.io/v1",
            "Lease",
            Some(namespace),
            &lease_name(release),
        );
        let deadline = tokio::time::Instant::now() + options.wait;
        let ttl = options.ttl.as_secs().max(1) as i64;
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
                Some(live) if is_free(&live, jiff::Timestamp::now()) => {
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
                    if tokio::time::Instant::now() >= deadline {
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
                return Ok(Lock::start(cluster.clone(), key, options));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    fn start(cluster: Cluster, key: ObjectKey, options: &LockOptions) -> Lock {
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel();
        let (lost_tx, lost_rx) = watch::channel(None);
        let lost_tx = Arc::new(lost_tx);
        let every = options.ttl / 3;
        let holder = options.holder.clone();
        let (c, k, h) = (cluster.clone(), key.clone(), holder.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = &mut stop_rx => return,
                    _ = tokio::time::sleep(every) => {}
                }
                match c.get(&k).await {
                    Ok(Some(mut live)) if live["spec"]["holderIdentity"] == h.as_str() => {
                        live["spec"]["renewTime"] = json!(micro_now());
                        if let Err(e) = c.replace(&live).await {
                            tracing::warn!("renewing {k}: {e}");
                        }
                    }
                    Ok(other) => {
                        let who = other
                            .and_then(|l| l["spec"]["holderIdentity"].as_str().map(String::from))
                            .unwrap_or_else(|| "nobody (deleted)".into());
                        let _ = lost_tx.send(Some(who));
                        return;
                    }
                    Err(e) => tracing::warn!("renewing {k}: {e}"),
                }
            }
        });
        Lock {
            cluster,
            key,
            holder,
            stop: Some(stop_tx),
            lost: lost_rx,
        }
    }

    /// Who took the lock from us, if someone did (we stopped renewing in time, e.g. a
    /// suspended laptop).
    pub fn lost_to(&self) -> Option<String> {
        self.lost.borrow().clone()
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

    #[test]
    fn a_lease_is_free_when_unheld_or_expired() {
        let now: jiff::Timestamp = "2026-01-01T00:01:00Z".parse().unwrap();
        let held = |renew: &str| json!({"spec": {"holderIdentity": "a", "leaseDurationSeconds": 30, "renewTime": renew}});
        assert!(!is_free(&held("2026-01-01T00:00:45.000000Z"), now));
        assert!(is_free(&held("2026-01-01T00:00:20.000000Z"), now));
        assert!(is_free(&json!({"spec": {"holderIdentity": ""}}), now));
        assert!(is_free(&json!({"spec": {}}), now));
    }

    #[test]
    fn micro_time_has_six_digits() {
        let t = micro_now();
        let frac = t.split('.').nth(1).unwrap();
        assert_eq!(frac.len(), 7, "{t}"); // six digits and Z
    }
}
