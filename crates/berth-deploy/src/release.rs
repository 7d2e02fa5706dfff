//! Release history, stored in the environment's namespace.
//!
//! Each deploy is a numbered revision kept as one Secret `berth.release.<release>.v<N>` of type
//! `berth.dev/release.v1`: its data is gzip-compressed JSON with the exact objects applied (so a
//! rollback re-applies bytes, not a re-render), image digests, commit, who, when and outcome.
//! Labels make the history listable without reading the payloads. A Secret, as Helm does,
//! because manifests may hold Secret values.
//!
//! **The live revision is the newest record whose status is `deployed`.** A deploy writes its
//! own record `deployed` first — that single write is the commit point — and only then marks
//! the older `deployed` records `superseded`. A process killed between the two leaves two
//! `deployed` records, and the newest wins ([`History::load`] reports the older ones as
//! superseded); it can never leave none. A release is a **first install** only when it has no
//! record at all ([`History::is_first_install`]): not when none of its records says `deployed`,
//! and not when a record cannot be read.
//!
//! A record is decompressed to at most [`MAX_RECORD_BYTES`]; a record that is larger, corrupt
//! or of an unknown shape is listed in [`History::unreadable`] and skipped, so one bad Secret
//! does not stop every deploy and page. [`prune_history`] keeps the newest records (Helm's
//! `--history-max`), always keeping the live one.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use base64::Engine as _;
use berth_cluster::{Cluster, ObjectKey};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::DeployError;

/// Label naming the release a record belongs to (not `berth.dev/release`, which marks the
/// objects of a release).
pub const RECORD_LABEL: &str = "berth.dev/release-record";
/// Label carrying a record's revision number.
pub const RECORD_REVISION_LABEL: &str = "berth.dev/record-revision";
/// Label carrying a record's status.
pub const RECORD_STATUS_LABEL: &str = "berth.dev/record-status";
/// Secret type of release records.
pub const RECORD_TYPE: &str = "berth.dev/release.v1";
/// The most a record may decompress to (64 MiB); a larger one is unreadable, not a memory bomb.
pub const MAX_RECORD_BYTES: u64 = 64 * 1024 * 1024;
/// How many records a release keeps by default (as Helm's `--history-max`).
pub const DEFAULT_HISTORY_MAX: usize = 10;

/// Where a revision stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Being deployed now (or the process deploying it died: see [`Status::Interrupted`]).
    Pending,
    /// Deployed and verified; the live one.
    Deployed,
    /// Was deployed, later replaced.
    Superseded,
    /// Failed; the environment was rolled back to the previous deployed revision (or the
    /// objects of a failed first install were removed).
    Failed,
    /// Failed and left in place (`--no-rollback`).
    FailedKept,
    /// Found pending with no lock held: the process deploying it was killed.
    Interrupted,
    /// Stopped at its canary (a check failed, a pause timed out, a person aborted); the
    /// previous revision was restored.
    Aborted,
}

impl Status {
    /// Stable name, as in labels and output.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Deployed => "deployed",
            Status::Superseded => "superseded",
            Status::Failed => "failed",
            Status::FailedKept => "failed-kept",
            Status::Interrupted => "interrupted",
            Status::Aborted => "aborted",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One revision of a release.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Release {
    /// Release name (one per environment and application).
    pub name: String,
    /// Namespace it lives in.
    pub namespace: String,
    /// 1, 2, 3...
    pub revision: u64,
    /// Outcome.
    pub status: Status,
    /// Hash of the rendered objects without berth's per-revision annotations: equal hashes
    /// mean a redeploy would change nothing.
    pub content_hash: String,
    /// Source commit, if known.
    pub commit: Option<String>,
    /// Who deployed (user@host).
    pub user: String,
    /// RFC 3339 start time.
    pub started_at: String,
    /// RFC 3339 end time, once finished.
    pub finished_at: Option<String>,
    /// What happened, one line (the diagnosis when failed).
    pub description: String,
    /// Image digests this revision runs, name -> `repo@sha256:...`.
    pub images: BTreeMap<String, String>,
    /// The objects applied, as applied (hooks included).
    pub objects: Vec<Value>,
    /// The run-once hooks (`berth.dev/hook-run: once`, seed and data-load Jobs) of this
    /// revision: run in it, or skipped because they succeeded in an earlier one.
    #[serde(default)]
    pub seeds: Vec<SeedRun>,
}

/// What became of one run-once hook in a revision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedRun {
    /// `Job/name`.
    pub job: String,
    /// The revision whose deploy ran it (this one when `ran` is true; 0 when unknown).
    pub revision: u64,
    /// Whether this revision ran it (false: it had succeeded before and was skipped).
    pub ran: bool,
}

impl Release {
    /// Name of the Secret holding this record.
    pub fn secret_name(name: &str, revision: u64) -> String {
        format!("berth.release.{name}.v{revision}")
    }

    fn to_secret(&self) -> Result<Value, DeployError> {
        let json = serde_json::to_vec(self).expect("releases serialize");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&json)
            .and_then(|_| gz.finish())
            .map(|bytes| {
                let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
                json!({
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "type": RECORD_TYPE,
                    "metadata": {
                        "name": Release::secret_name(&self.name, self.revision),
                        "namespace": self.namespace,
                        "labels": {
                            RECORD_LABEL: self.name,
                            RECORD_REVISION_LABEL: self.revision.to_string(),
                            RECORD_STATUS_LABEL: self.status.as_str(),
                            "app.kubernetes.io/managed-by": "berth",
                        }
                    },
                    "data": {"release": b64}
                })
            })
            .map_err(|e| DeployError::Record(format!("compress: {e}")))
    }

    fn from_secret(secret: &Value) -> Result<Release, DeployError> {
        let name = secret["metadata"]["name"]
            .as_str()
            .unwrap_or("?")
            .to_string();
        let bad = |why: String| DeployError::Record(format!("release record {name}: {why}"));
        let b64 = secret["data"]["release"]
            .as_str()
            .ok_or_else(|| bad("no data.release".into()))?;
        let gz = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| bad(e.to_string()))?;
        Release::decompress(&gz, MAX_RECORD_BYTES).map_err(bad)
    }

    /// Decompresses and parses a record's payload, refusing one that grows past `cap` bytes.
    fn decompress(gz: &[u8], cap: u64) -> Result<Release, String> {
        let mut json = Vec::new();
        flate2::read::GzDecoder::new(gz)
            .take(cap + 1)
            .read_to_end(&mut json)
            .map_err(|e| e.to_string())?;
        if json.len() as u64 > cap {
            return Err(format!(
                "decompresses to more than {} MiB; berth refuses to read it. Delete the Secret \
                 if it is not a record berth wrote",
                cap / (1024 * 1024)
            ));
        }
        serde_json::from_slice(&json).map_err(|e| e.to_string())
    }
}

/// A record Secret that could not be read; skipped, but its revision number stays taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unreadable {
    /// The Secret's name.
    pub secret: String,
    /// Its revision, from its label or name, if either says.
    pub revision: Option<u64>,
    /// Why it could not be read (names the Secret).
    pub error: String,
}

/// The history of one release in one namespace.
pub struct History {
    /// Every readable revision, oldest first.
    pub releases: Vec<Release>,
    /// Record Secrets that could not be read (see the [module docs](self)).
    pub unreadable: Vec<Unreadable>,
    /// Revisions stored `deployed` but older than the newest deployed one, shown here as
    /// superseded (a deploy was killed before its last write); the next deploy saves them so.
    pub superseded_on_read: Vec<u64>,
}

impl History {
    /// Reads every record of `name` in `namespace`.
    pub async fn load(
        cluster: &Cluster,
        namespace: &str,
        name: &str,
    ) -> Result<History, DeployError> {
        let secrets = cluster
            .list(
                "v1",
                "Secret",
                namespace,
                Some(&format!("{RECORD_LABEL}={name}")),
            )
            .await?;
        Ok(History::from_secrets(&secrets))
    }

    /// The history in `secrets` (record Secrets of one release): unreadable ones set apart,
    /// every `deployed` record but the newest reported as superseded.
    pub fn from_secrets(secrets: &[Value]) -> History {
        let mut releases = Vec::new();
        let mut unreadable = Vec::new();
        for s in secrets {
            match Release::from_secret(s) {
                Ok(r) => releases.push(r),
                Err(e) => {
                    let secret = s["metadata"]["name"].as_str().unwrap_or("?").to_string();
                    let revision = s["metadata"]["labels"][RECORD_REVISION_LABEL]
                        .as_str()
                        .and_then(|r| r.parse().ok())
                        .or_else(|| secret.rsplit_once(".v").and_then(|(_, n)| n.parse().ok()));
                    unreadable.push(Unreadable {
                        secret,
                        revision,
                        error: e.to_string(),
                    });
                }
            }
        }
        releases.sort_by_key(|r| r.revision);
        let live = releases.iter().rposition(|r| r.status == Status::Deployed);
        let mut superseded_on_read = Vec::new();
        if let Some(live) = live {
            // A deploy killed after writing its record and before superseding the older one.
            for r in &mut releases[..live] {
                if r.status == Status::Deployed {
                    r.status = Status::Superseded;
                    superseded_on_read.push(r.revision);
                }
            }
        }
        History {
            releases,
            unreadable,
            superseded_on_read,
        }
    }

    /// Whether the release has never been deployed here: no record at all, readable or not.
    pub fn is_first_install(&self) -> bool {
        self.releases.is_empty() && self.unreadable.is_empty()
    }

    /// The live revision: the newest deployed one.
    pub fn current(&self) -> Option<&Release> {
        self.releases
            .iter()
            .rev()
            .find(|r| r.status == Status::Deployed)
    }

    /// The highest revision number used so far (0 when none).
    pub fn last_revision(&self) -> u64 {
        let readable = self.releases.last().map(|r| r.revision).unwrap_or(0);
        let unreadable = self
            .unreadable
            .iter()
            .filter_map(|u| u.revision)
            .max()
            .unwrap_or(0);
        readable.max(unreadable)
    }

    /// The records to delete to keep at most `max` (0: keep all): the oldest, never the live
    /// one nor `keep`.
    pub fn beyond(&self, max: usize, keep: u64) -> Vec<u64> {
        if max == 0 || self.releases.len() <= max {
            return Vec::new();
        }
        let live = self.current().map(|r| r.revision);
        let mut excess = self.releases.len() - max;
        let mut out = Vec::new();
        for r in &self.releases {
            if excess == 0 {
                break;
            }
            if Some(r.revision) == live || r.revision == keep {
                continue;
            }
            out.push(r.revision);
            excess -= 1;
        }
        out
    }

    /// A revision by number.
    pub fn get(&self, revision: u64) -> Option<&Release> {
        self.releases.iter().find(|r| r.revision == revision)
    }
}

/// Writes a record (creating or replacing it).
pub async fn save(cluster: &Cluster, release: &Release) -> Result<(), DeployError> {
    let secret = release.to_secret()?;
    match cluster.create(&secret).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_conflict() => {
            let key = ObjectKey::new(
                "v1",
                "Secret",
                Some(&release.namespace),
                &Release::secret_name(&release.name, release.revision),
            );
            let mut live = cluster.get(&key).await?.unwrap_or_default();
            live["metadata"]["labels"] = secret["metadata"]["labels"].clone();
            live["data"] = secret["data"].clone();
            cluster.replace(&live).await?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Deletes the oldest records of `name` beyond `max` (0: keep all), never the live one nor
/// `keep`; returns the revisions deleted.
pub async fn prune_history(
    cluster: &Cluster,
    namespace: &str,
    name: &str,
    max: usize,
    keep: u64,
) -> Result<Vec<u64>, DeployError> {
    let history = History::load(cluster, namespace, name).await?;
    let doomed = history.beyond(max, keep);
    for revision in &doomed {
        let key = ObjectKey::new(
            "v1",
            "Secret",
            Some(namespace),
            &Release::secret_name(name, *revision),
        );
        cluster.delete(&key).await?;
    }
    Ok(doomed)
}

/// The current time, RFC 3339.
pub fn now() -> String {
    jiff::Timestamp::now().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_a_secret() {
        let r = Release {
            name: "shop".into(),
            namespace: "prod".into(),
            revision: 7,
            status: Status::Deployed,
            content_hash: "abc".into(),
            commit: Some("deadbeef".into()),
            user: "me@host".into(),
            started_at: now(),
            finished_at: None,
            description: "ok".into(),
            images: BTreeMap::from([("web".into(), "r/web@sha256:00".into())]),
            objects: vec![json!({"kind": "ConfigMap", "metadata": {"name": "c"}})],
            seeds: vec![SeedRun {
                job: "Job/load".into(),
                revision: 3,
                ran: false,
            }],
        };
        let s = r.to_secret().unwrap();
        assert_eq!(s["metadata"]["name"], "berth.release.shop.v7");
        assert_eq!(s["metadata"]["labels"][RECORD_STATUS_LABEL], "deployed");
        assert_eq!(s["type"], RECORD_TYPE);
        assert_eq!(Release::from_secret(&s).unwrap(), r);
    }

    fn record(revision: u64, status: Status) -> Release {
        Release {
            name: "shop".into(),
            namespace: "prod".into(),
            revision,
            status,
            content_hash: "abc".into(),
            commit: None,
            user: "me@host".into(),
            started_at: now(),
            finished_at: None,
            description: "ok".into(),
            images: BTreeMap::new(),
            objects: vec![json!({"kind": "ConfigMap", "metadata": {"name": "c"}})],
            seeds: Vec::new(),
        }
    }

    #[test]
    fn a_record_that_decompresses_past_the_cap_is_refused_naming_it() {
        let r = record(3, Status::Deployed);
        let s = r.to_secret().unwrap();
        let gz = base64::engine::general_purpose::STANDARD
            .decode(s["data"]["release"].as_str().unwrap())
            .unwrap();
        let e = Release::decompress(&gz, 64).unwrap_err();
        assert!(e.contains("more than"), "{e}");
        // A gzip bomb: 80 MiB of zeros compress to about 80 KiB.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&vec![b' '; 80 * 1024 * 1024]).unwrap();
        let bomb = base64::engine::general_purpose::STANDARD.encode(gz.finish().unwrap());
        let secret =
            json!({"metadata": {"name": "berth.release.shop.v9"}, "data": {"release": bomb}});
        let e = Release::from_secret(&secret).unwrap_err().to_string();
        assert!(e.contains("berth.release.shop.v9"), "{e}");
        assert!(e.contains("more than 64 MiB"), "{e}");
    }

    #[test]
    fn an_unreadable_record_is_skipped_and_is_not_a_first_install() {
        let good = record(1, Status::Deployed).to_secret().unwrap();
        let bad = json!({"metadata": {"name": "berth.release.shop.v2",
            "labels": {RECORD_REVISION_LABEL: "2"}}, "data": {"release": "!!"}});
        let h = History::from_secrets(&[good, bad.clone()]);
        assert_eq!(h.releases.len(), 1);
        assert_eq!(h.current().map(|r| r.revision), Some(1));
        assert_eq!(h.unreadable.len(), 1);
        assert!(h.unreadable[0].error.contains("berth.release.shop.v2"));
        assert_eq!(
            h.last_revision(),
            2,
            "the unreadable revision's number stays taken"
        );
        let only_bad = History::from_secrets(&[bad]);
        assert!(!only_bad.is_first_install());
        assert!(History::from_secrets(&[]).is_first_install());
    }

    #[test]
    fn a_kill_between_recording_and_superseding_leaves_the_newest_deployed_live() {
        let h = History::from_secrets(&[
            record(1, Status::Deployed).to_secret().unwrap(),
            record(2, Status::Deployed).to_secret().unwrap(),
        ]);
        assert_eq!(h.current().map(|r| r.revision), Some(2));
        assert_eq!(h.releases[0].status, Status::Superseded);
    }

    #[test]
    fn history_max_keeps_the_newest_and_always_the_live_one() {
        let mut secrets: Vec<Value> = (1..=5)
            .map(|n| record(n, Status::Failed).to_secret().unwrap())
            .collect();
        secrets[1] = record(2, Status::Deployed).to_secret().unwrap();
        let h = History::from_secrets(&secrets);
        assert_eq!(h.beyond(3, 5), vec![1, 3]);
        assert_eq!(h.beyond(0, 5), Vec::<u64>::new());
        assert_eq!(h.beyond(10, 5), Vec::<u64>::new());
        assert_eq!(h.beyond(1, 5), vec![1, 3, 4]);
    }

    #[test]
    fn a_corrupt_record_names_itself() {
        let s = json!({"metadata": {"name": "berth.release.x.v1"}, "data": {"release": "!!"}});
        let e = Release::from_secret(&s).unwrap_err().to_string();
        assert!(e.contains("berth.release.x.v1"), "{e}");
    }
}
