//! Pull secrets, checked before anything is applied.
//!
//! A pod whose image lives on a registry that wants a login starts only if one of its
//! `imagePullSecrets` (or its ServiceAccount's) holds a login for that registry host that the
//! registry accepts. Otherwise the kubelet reports `ErrImagePull` after the objects are applied,
//! and the deploy fails and rolls back. berth knows better before it applies anything: it pushed
//! the image, and it can ask the registry.
//!
//! For every pod template of the rendered objects, each image on a registry berth has
//! credentials for (or pushed to in this run) is fetched anonymously (a manifest GET). If the
//! registry refuses that, the pod needs a pull secret:
//!
//! - a pull secret of the pod (or of its ServiceAccount, rendered or live) that holds the host
//!   is tried with the same manifest GET; a refusal fails the deploy naming the Secret;
//! - a named pull secret that is missing, of another type, or without the host fails naming it;
//! - with none that holds the host: if `deploy.pull-secret` (or `--pull-secret`) names a Secret,
//!   berth applies it (type `kubernetes.io/dockerconfigjson`, from the credentials it pushed
//!   with) and adds it to the pod template's `imagePullSecrets`; else the deploy fails saying how
//!   to give it one.
//!
//! berth adds its Secret to the pod templates, not to a ServiceAccount: the templates are
//! berth's own rendered objects, recorded with the release and rolled back with it, while a
//! ServiceAccount (often `default`) is shared with whatever else runs in the namespace. The
//! Secret itself is applied apart from the release (field manager `berth`, label
//! `app.kubernetes.io/managed-by: berth`), so the release records never hold the credentials.
//! Nothing here prints a credential.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use base64::Engine as _;
use berth_cluster::{Cluster, ObjectKey};
use berth_registry::{Credential, CredentialStore, Registry, RegistryError, docker_config_json};
use berth_render::{Object, ObjectSet};
use berth_types::ImageRef;
use serde_json::{Value, json};

/// Why a deploy stopped before applying anything.
#[derive(Debug, thiserror::Error)]
pub enum PullSecretError {
    /// A pod needs a login for a registry and nothing gives it one.
    #[error(
        "{object}: image {image} is on registry {host}, which refuses anonymous pulls, and no \
         pull secret of the pod holds a login for {host}; nothing was applied. Let berth create \
         one from the credentials it pushed with (berth.yaml `deploy: {{pull-secret: NAME}}` or \
         --pull-secret NAME), or create it yourself (`kubectl -n {namespace} create secret \
         docker-registry NAME --docker-server={host} --docker-username=... \
         --docker-password=...`) and name it in the pod's imagePullSecrets; if the cluster's \
         nodes pull with credentials of their own (EKS, GKE, AKS credential providers), say so \
         with `deploy: {{node-credentials: true}}`"
    )]
    Missing {
        /// `Kind/name (file:line)` of the workload.
        object: String,
        /// The image.
        image: String,
        /// Its registry host.
        host: String,
        /// The namespace deployed to.
        namespace: String,
    },
    /// A pull secret the pod names does not exist or is not a registry login.
    #[error(
        "{object}: pull secret {secret} {problem}; nothing was applied. Create it with \
         `kubectl -n {namespace} create secret docker-registry {secret} --docker-server={host} \
         --docker-username=... --docker-password=...`"
    )]
    BadSecret {
        /// `Kind/name (file:line)` of the workload.
        object: String,
        /// The Secret's name.
        secret: String,
        /// What is wrong with it.
        problem: String,
        /// The registry host the pod needs.
        host: String,
        /// The namespace deployed to.
        namespace: String,
    },
    /// A pull secret holds a login for the host that the registry refuses.
    #[error(
        "{object}: registry {host} refuses the login in pull secret {secret} (user {user}) for \
         image {image}; nothing was applied. Fix the Secret (`kubectl -n {namespace} create \
         secret docker-registry {secret} --docker-server={host} ... --dry-run=client -o yaml | \
         kubectl apply -f -`), or let berth manage it with berth.yaml `deploy: {{pull-secret: \
         NAME}}`"
    )]
    Refused {
        /// `Kind/name (file:line)` of the workload.
        object: String,
        /// The Secret's name.
        secret: String,
        /// The registry host.
        host: String,
        /// The user name in the Secret (never its password).
        user: String,
        /// The image.
        image: String,
        /// The namespace deployed to.
        namespace: String,
    },
    /// berth has no login of its own to put in the pull secret it was asked to create.
    #[error(
        "{object}: image {image} is on registry {host}, which refuses anonymous pulls, and berth \
         has no login for {host} to put in pull secret {secret}; nothing was applied. Run \
         `docker login {host}` (or pass --docker-config / --registry-secret)"
    )]
    NoCredential {
        /// `Kind/name (file:line)` of the workload.
        object: String,
        /// The image.
        image: String,
        /// The registry host.
        host: String,
        /// The Secret berth would create.
        secret: String,
    },
    /// The registry could not be asked.
    #[error("checking pull secrets for image {image}: {source}; nothing was applied")]
    Registry {
        /// The image.
        image: String,
        /// What failed.
        source: RegistryError,
    },
    /// The cluster could not be read or the Secret not applied.
    #[error("pull secret {secret} in namespace {namespace}: {message}; nothing was applied")]
    Cluster {
        /// The Secret.
        secret: String,
        /// The namespace.
        namespace: String,
        /// What the cluster said.
        message: String,
    },
}

/// A pod template of a rendered object.
struct Template {
    /// Index in the object list.
    index: usize,
    /// JSON pointer to its pod spec.
    pointer: &'static str,
}

/// Where the pod spec of `kind` lives.
fn pod_spec_pointer(kind: &str) -> Option<&'static str> {
    match kind {
        "Pod" => Some("/spec"),
        "Deployment"
        | "ReplicaSet"
        | "StatefulSet"
        | "DaemonSet"
        | "Job"
        | "ReplicationController" => Some("/spec/template/spec"),
        "CronJob" => Some("/spec/jobTemplate/spec/template/spec"),
        _ => None,
    }
}

/// The images of a pod spec (init containers first).
fn images(spec: &Value) -> Vec<String> {
    ["initContainers", "containers"]
        .iter()
        .filter_map(|list| spec.get(*list).and_then(Value::as_array))
        .flatten()
        .filter_map(|c| c.get("image").and_then(Value::as_str).map(String::from))
        .collect()
}

/// The names in a pod spec's (or ServiceAccount's) `imagePullSecrets`.
fn secret_names(list: Option<&Value>) -> Vec<String> {
    list.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|s| s.get("name").and_then(Value::as_str).map(String::from))
        .collect()
}

fn label(o: &Object) -> String {
    let s = o.source();
    format!("{}/{} ({})", o.key().kind, o.key().name, s)
}

/// Checks and completes the pull secrets of `objects` (see the module docs); returns the
/// objects, with `pull_secret` added to the templates that needed it.
pub struct PullSecrets<'a> {
    /// The cluster deployed to.
    pub cluster: &'a Cluster,
    /// The registry client berth pushed with (its credentials and plain-HTTP hosts).
    pub registry: &'a Registry,
    /// The namespace deployed to.
    pub namespace: &'a str,
    /// Registry hosts berth pushed to in this run: checked even without credentials.
    pub pushed_hosts: BTreeSet<String>,
    /// `deploy.pull-secret` / `--pull-secret`.
    pub pull_secret: Option<&'a str>,
    /// `deploy.node-credentials`: the nodes pull with their own credentials; a pod with no
    /// pull secret for a registry that wants a login is let through (named ones are checked).
    pub node_credentials: bool,
}

/// What [`PullSecrets::ensure`] did.
#[derive(Debug, Default)]
pub struct Ensured {
    /// The Secret berth applied and the hosts it holds, if it applied one.
    pub applied: Option<(String, Vec<String>)>,
    /// The workloads it was added to.
    pub added_to: Vec<String>,
}

impl Ensured {
    /// One line for people when a Secret was applied: its name, whose login it holds
    /// (`login`: "berth's", "the docker config's") for which hosts, and where it was added.
    pub fn summary(&self, login: &str) -> Option<String> {
        self.applied.as_ref().map(|(name, hosts)| {
            format!(
                "pull secret {name}: applied with {login} login for {} and added to {}",
                hosts.join(", "),
                self.added_to.join(", ")
            )
        })
    }
}

/// The registry hosts of `images` (references such as `repo@sha256:...`), for
/// [`PullSecrets::pushed_hosts`].
pub fn hosts_of<'a>(images: impl IntoIterator<Item = &'a String>) -> BTreeSet<String> {
    images
        .into_iter()
        .filter_map(|i| i.parse::<ImageRef>().ok())
        .map(|i| i.registry().to_string())
        .collect()
}

impl PullSecrets<'_> {
    /// Checks every pod template; see the module docs. Applies the managed Secret only when
    /// every check passed.
    pub async fn ensure(
        &self,
        objects: ObjectSet,
    ) -> Result<(ObjectSet, Ensured), PullSecretError> {
        let mut objects = objects.into_objects();
        let anonymous = Registry::with_credentials(
            CredentialStore::default(),
            self.registry.insecure_hosts().to_vec(),
        );
        // host -> needs a login (asked once per image, answered per host).
        let mut private: BTreeMap<String, bool> = BTreeMap::new();
        // (secret, host) -> Ok(user) or the error to give.
        let mut checked: BTreeMap<(String, String), Result<(), String>> = BTreeMap::new();
        let mut secrets: BTreeMap<String, Option<Value>> = BTreeMap::new();
        let mut accounts: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut managed_hosts: BTreeMap<String, Credential> = BTreeMap::new();
        let mut add_to: Vec<usize> = Vec::new();
        let mut ensured = Ensured::default();

        let templates: Vec<Template> = objects
            .iter()
            .enumerate()
            .filter_map(|(index, o)| {
                pod_spec_pointer(&o.key().kind).map(|pointer| Template { index, pointer })
            })
            .collect();
        for t in &templates {
            let object = &objects[t.index];
            let Some(spec) = object.value().pointer(t.pointer) else {
                continue;
            };
            let what = label(object);
            let mut names = secret_names(spec.get("imagePullSecrets"));
            let account = spec
                .get("serviceAccountName")
                .and_then(Value::as_str)
                .unwrap_or("default")
                .to_string();
            // The ServiceAccount is read only for a pod that needs a login.
            let mut account_read = false;
            let mut needs_managed = false;
            for image in images(spec) {
                let Ok(reference) = ImageRef::from_str(&image) else {
                    continue;
                };
                let host = reference.registry().to_string();
                let has_login =
                    self.registry
                        .credential(&host)
                        .map_err(|e| PullSecretError::Registry {
                            image: image.clone(),
                            source: e.into(),
                        })?;
                if has_login.is_none() && !self.pushed_hosts.contains(&host) {
                    continue;
                }
                if !private.contains_key(&host) {
                    let needs = match anonymous.pull_manifest(&reference).await {
                        Ok(_) => false,
                        Err(RegistryError::Unauthorized { .. }) => true,
                        // Not found, unreachable...: the rollout says what is wrong with it.
                        Err(_) => false,
                    };
                    private.insert(host.clone(), needs);
                }
                if !private[&host] {
                    continue;
                }
                // The pod's own pull secrets, in order: the first that holds the host decides,
                // as the kubelet tries them.
                let mut covered = false;
                if !account_read {
                    if !accounts.contains_key(&account) {
                        let found = self.account_secrets(&objects, &account).await?;
                        accounts.insert(account.clone(), found);
                    }
                    names.extend(accounts[&account].iter().cloned());
                    account_read = true;
                }
                for name in &names {
                    if !secrets.contains_key(name) {
                        let s = self.secret(&objects, name).await?;
                        secrets.insert(name.clone(), s);
                    }
                    let bad = |problem: String| PullSecretError::BadSecret {
                        object: what.clone(),
                        secret: name.clone(),
                        problem,
                        host: host.clone(),
                        namespace: self.namespace.to_string(),
                    };
                    if Some(name.as_str()) == self.pull_secret {
                        // berth's own: (re)written below with berth's login.
                        covered = true;
                        needs_managed = true;
                        break;
                    }
                    let Some(secret) = &secrets[name] else {
                        return Err(bad(format!(
                            "does not exist in namespace {}",
                            self.namespace
                        )));
                    };
                    let store = CredentialStore::from_kubernetes_secret(
                        secret,
                        &format!("{}/{name}", self.namespace),
                    )
                    .map_err(|e| bad(format!("is not a registry login ({e})")))?;
                    let Some(cred) = store.get(&host).ok().flatten() else {
                        continue;
                    };
                    let key = (name.clone(), host.clone());
                    if !checked.contains_key(&key) {
                        let client = Registry::with_credentials(
                            store,
                            self.registry.insecure_hosts().to_vec(),
                        );
                        let verdict = match client.pull_manifest(&reference).await {
                            Err(RegistryError::Unauthorized { .. }) => Err(cred.username.clone()),
                            _ => Ok(()),
                        };
                        checked.insert(key.clone(), verdict);
                    }
                    if let Err(user) = &checked[&key] {
                        return Err(PullSecretError::Refused {
                            object: what,
                            secret: name.clone(),
                            host,
                            user: user.clone(),
                            image,
                            namespace: self.namespace.to_string(),
                        });
                    }
                    covered = true;
                    break;
                }
                if covered && !needs_managed {
                    continue;
                }
                let Some(managed) = self.pull_secret else {
                    if self.node_credentials && !covered {
                        continue;
                    }
                    return Err(PullSecretError::Missing {
                        object: what,
                        image,
                        host,
                        namespace: self.namespace.to_string(),
                    });
                };
                let Some(cred) = has_login else {
                    return Err(PullSecretError::NoCredential {
                        object: what,
                        image,
                        host,
                        secret: managed.to_string(),
                    });
                };
                managed_hosts.insert(host, cred);
                needs_managed = true;
            }
            if needs_managed {
                add_to.push(t.index);
                ensured.added_to.push(format!(
                    "{}/{}",
                    objects[t.index].key().kind,
                    objects[t.index].key().name
                ));
            }
        }

        if let (Some(name), false) = (self.pull_secret, managed_hosts.is_empty()) {
            self.apply_secret(name, &managed_hosts).await?;
            ensured.applied = Some((name.to_string(), managed_hosts.keys().cloned().collect()));
        }
        if let Some(name) = self.pull_secret {
            for i in add_to {
                let pointer = templates
                    .iter()
                    .find(|t| t.index == i)
                    .expect("a template")
                    .pointer;
                let o = &objects[i];
                let source = o.source().clone();
                let mut value = o.value().clone();
                let spec = value.pointer_mut(pointer).expect("checked above");
                let list = spec
                    .as_object_mut()
                    .expect("a pod spec is a mapping")
                    .entry("imagePullSecrets")
                    .or_insert_with(|| json!([]));
                if let Some(list) = list.as_array_mut()
                    && !list.iter().any(|s| s["name"] == name)
                {
                    list.push(json!({ "name": name }));
                }
                objects[i] = Object::new(value, source).expect("still the same object");
            }
        }
        let mut set = ObjectSet::new();
        for o in objects {
            set.insert(o).expect("the same objects as before");
        }
        Ok((set, ensured))
    }

    /// The `imagePullSecrets` of ServiceAccount `name`: the rendered one, else the live one.
    async fn account_secrets(
        &self,
        objects: &[Object],
        name: &str,
    ) -> Result<Vec<String>, PullSecretError> {
        if let Some(o) = objects
            .iter()
            .find(|o| o.key().kind == "ServiceAccount" && o.key().name == name)
        {
            return Ok(secret_names(o.value().get("imagePullSecrets")));
        }
        let key = ObjectKey::new("v1", "ServiceAccount", Some(self.namespace), name);
        let live = self
            .cluster
            .get(&key)
            .await
            .map_err(|e| PullSecretError::Cluster {
                secret: format!("(of ServiceAccount {name})"),
                namespace: self.namespace.to_string(),
                message: e.to_string(),
            })?;
        Ok(secret_names(
            live.as_ref().and_then(|a| a.get("imagePullSecrets")),
        ))
    }

    /// Secret `name`: the rendered one (its `stringData` folded into `data`), else the live one.
    async fn secret(
        &self,
        objects: &[Object],
        name: &str,
    ) -> Result<Option<Value>, PullSecretError> {
        if let Some(o) = objects
            .iter()
            .find(|o| o.key().kind == "Secret" && o.key().name == name)
        {
            let mut v = o.value().clone();
            if let Some(Value::Object(plain)) = v.get("stringData").cloned() {
                for (k, text) in plain {
                    if let Some(t) = text.as_str() {
                        v["data"][k] = json!(base64::engine::general_purpose::STANDARD.encode(t));
                    }
                }
            }
            return Ok(Some(v));
        }
        let key = ObjectKey::new("v1", "Secret", Some(self.namespace), name);
        self.cluster
            .get(&key)
            .await
            .map_err(|e| PullSecretError::Cluster {
                secret: name.to_string(),
                namespace: self.namespace.to_string(),
                message: e.to_string(),
            })
    }

    async fn apply_secret(
        &self,
        name: &str,
        logins: &BTreeMap<String, Credential>,
    ) -> Result<(), PullSecretError> {
        let config = docker_config_json(logins.iter().map(|(h, c)| (h.as_str(), c)));
        let secret = json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/dockerconfigjson",
            "metadata": {
                "name": name,
                "namespace": self.namespace,
                "labels": {"app.kubernetes.io/managed-by": "berth"},
            },
            "data": {".dockerconfigjson": base64::engine::general_purpose::STANDARD.encode(config)},
        });
        self.cluster
            .apply(&secret, berth_deploy::FIELD_MANAGER, true)
            .await
            .map(|_| ())
            .map_err(|e| PullSecretError::Cluster {
                secret: name.to_string(),
                namespace: self.namespace.to_string(),
                message: e.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_specs_of_every_workload_kind_are_found() {
        assert_eq!(pod_spec_pointer("Deployment"), Some("/spec/template/spec"));
        assert_eq!(
            pod_spec_pointer("CronJob"),
            Some("/spec/jobTemplate/spec/template/spec")
        );
        assert_eq!(pod_spec_pointer("Pod"), Some("/spec"));
        assert_eq!(pod_spec_pointer("Service"), None);
        let spec = json!({
            "initContainers": [{"name": "i", "image": "r.example/init:1"}],
            "containers": [{"name": "a", "image": "r.example/app:1"}],
            "imagePullSecrets": [{"name": "one"}, {"name": "two"}],
        });
        assert_eq!(images(&spec), ["r.example/init:1", "r.example/app:1"]);
        assert_eq!(secret_names(spec.get("imagePullSecrets")), ["one", "two"]);
        assert!(secret_names(None).is_empty());
    }
}
