//! Release history, stored in the environment's namespace.
//!
//! Each deploy is a numbered revision kept as one Secret `berth.release.<release>.v<N>` of type
//! `berth.dev/release.v1`: its data is gzip-compressed JSON with the exact objects applied (so a
//! rollback re-applies bytes, not a re-render), image digests, commit, who, when and outcome.
//! Labels make the history listable without reading the payloads. A Secret, as Helm does,
//! because manifests may hold Secret values.

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
        let mut json = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut json)
            .map_err(|e| bad(e.to_string()))?;
        serde_json::from_slice(&json).map_err(|e| bad(e.to_string()))
    }
}

/// The history of one release in one namespace.
pub struct History {
    /// Every revision, oldest first.
    pub releases: Vec<Release>,
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
        let mut releases = secrets
            .iter()
            .map(Release::from_secret)
            .collect::<Result<Vec<_>, _>>()?;
        releases.sort_by_key(|r| r.revision);
        Ok(History { releases })
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
        self.releases.last().map(|r| r.revision).unwrap_or(0)
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

    #[test]
    fn a_corrupt_record_names_itself() {
        let s = json!({"metadata": {"name": "berth.release.x.v1"}, "data": {"release": "!!"}});
        let e = Release::from_secret(&s).unwrap_err().to_string();
        assert!(e.contains("berth.release.x.v1"), "{e}");
    }
}
