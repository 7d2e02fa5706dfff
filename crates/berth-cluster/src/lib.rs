//! The one door from berth to the Kubernetes API.
//!
//! No other berth crate links `kube`: everything above this crate speaks in plain JSON objects
//! (`serde_json::Value`, as rendered from manifests) and the small types here. That keeps the
//! planner, readiness rules and renderer testable on inline data, and puts every network call
//! to the cluster in one place where deadlines and error messages are decided.
//!
//! Objects are addressed by `apiVersion` + `kind` and mapped to REST resources through discovery,
//! so CRDs work like built-in kinds. Writes are server-side apply with an explicit field
//! manager.

mod error;

use std::time::Duration;

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::GroupVersionKind;
use kube::discovery::{ApiCapabilities, ApiResource, Scope};
use serde_json::Value;

pub use error::ClusterError;

use futures::StreamExt;
use futures::stream::BoxStream;

/// One change seen by [`Cluster::watch`].
#[derive(Debug, Clone)]
pub enum Watched {
    /// The object exists in this state (listed at start, created or changed).
    Applied(Value),
    /// The object was deleted; its last state.
    Deleted(Value),
}

/// Which cluster to talk to.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// kubeconfig file; `None` reads `$KUBECONFIG` or `~/.kube/config`.
    pub kubeconfig: Option<std::path::PathBuf>,
    /// kubeconfig context; `None` uses the current context (or in-cluster config).
    pub context: Option<String>,
}

/// A connection to one cluster.
#[derive(Clone)]
pub struct Cluster {
    client: kube::Client,
    context: String,
    server: String,
    namespace: String,
}

/// Where objects of a served kind live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KindScope {
    /// In a namespace.
    Namespaced,
    /// Cluster-wide.
    Cluster,
}

/// The answer of a SelfSubjectAccessReview.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// Whether the current identity may do it.
    pub allowed: bool,
    /// The authorizer's reason, when it gave one.
    pub reason: String,
}

impl Cluster {
    /// Connects using the kubeconfig (`$KUBECONFIG` or `~/.kube/config`) and the named or
    /// current context, falling back to in-cluster configuration when there is no kubeconfig.
    pub async fn connect(options: &ConnectOptions) -> Result<Self, ClusterError> {
        let read = match &options.kubeconfig {
            Some(path) => Kubeconfig::read_from(path),
            None => Kubeconfig::read(),
        };
        let (config, context) = match read {
            Ok(kubeconfig) => {
                let context = options
                    .context
                    .clone()
                    .or_else(|| kubeconfig.current_context.clone())
                    .ok_or(ClusterError::NoContext)?;
                if !kubeconfig.contexts.iter().any(|c| c.name == context) {
                    return Err(ClusterError::UnknownContext {
                        context,
                        known: kubeconfig.contexts.iter().map(|c| c.name.clone()).collect(),
                    });
                }
                let opts = KubeConfigOptions {
                    context: Some(context.clone()),
                    ..Default::default()
                };
                let config = kube::Config::from_custom_kubeconfig(kubeconfig, &opts)
                    .await
                    .map_err(|e| ClusterError::Config(e.to_string()))?;
                (config, context)
            }
            Err(read_err) => match kube::Config::incluster() {
                Ok(c) => (c, "in-cluster".to_string()),
                Err(_) => return Err(ClusterError::NoKubeconfig(read_err.to_string())),
            },
        };
        let server = config.cluster_url.to_string();
        let namespace = config.default_namespace.clone();
        let client =
            kube::Client::try_from(config).map_err(|e| ClusterError::Config(e.to_string()))?;
        Ok(Cluster {
            client,
            context,
            server,
            namespace,
        })
    }

    /// The kubeconfig context in use.
    pub fn context(&self) -> &str {
        &self.context
    }

    /// The API server URL.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The context's default namespace.
    pub fn default_namespace(&self) -> &str {
        &self.namespace
    }

    /// The API server's version (`v1.33.13`), which also proves it is reachable and that our
    /// credentials are accepted.
    pub async fn server_version(&self) -> Result<String, ClusterError> {
        let info = self
            .client
            .apiserver_version()
            .await
            .map_err(|e| ClusterError::from_kube(e, &self.server))?;
        Ok(info.git_version)
    }

    /// Asks the API server whether the current identity may `verb` the `resource` of `group`
    /// in `namespace` (SelfSubjectAccessReview).
    pub async fn can_i(
        &self,
        verb: &str,
        group: &str,
        resource: &str,
        namespace: &str,
    ) -> Result<Access, ClusterError> {
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(verb.into()),
                    group: Some(group.into()),
                    resource: Some(resource.into()),
                    namespace: Some(namespace.into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let api: Api<SelfSubjectAccessReview> = Api::all(self.client.clone());
        let answer = api
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| ClusterError::from_kube(e, &self.server))?;
        let status = answer.status.unwrap_or_default();
        Ok(Access {
            allowed: status.allowed,
            reason: status.reason.unwrap_or_default(),
        })
    }

    /// Creates the namespace if it does not exist.
    ///
    /// It is read first, so an identity that owns its namespace but may not create namespaces
    /// (the usual CI ServiceAccount) deploys there; when it is absent and may not be made, the
    /// error says so ([`ClusterError::NamespaceForbidden`]). An identity that may neither read
    /// nor create it goes on: the namespace's own objects then say whether it is there.
    pub async fn ensure_namespace(&self, name: &str) -> Result<(), ClusterError> {
        let exists = self.namespace_exists(name).await?;
        if exists == Some(true) {
            return Ok(());
        }
        let api: Api<Namespace> = Api::all(self.client.clone());
        let ns = Namespace {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            ..Default::default()
        };
        match api.create(&PostParams::default(), &ns).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 403 && exists == Some(false) => {
                Err(ClusterError::NamespaceForbidden {
                    namespace: name.into(),
                    message: s.message,
                })
            }
            Err(kube::Error::Api(s)) if s.code == 403 => Ok(()),
            Err(e) => Err(ClusterError::from_kube(e, &self.server)),
        }
    }

    /// Whether namespace `name` exists; `None` when this identity may not read it.
    pub async fn namespace_exists(&self, name: &str) -> Result<Option<bool>, ClusterError> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        match api.get_opt(name).await {
            Ok(found) => Ok(Some(found.is_some())),
            Err(kube::Error::Api(s)) if s.code == 403 => Ok(None),
            Err(e) => Err(ClusterError::from_kube(e, &self.server)),
        }
    }

    /// Deletes a namespace (and so everything in it); absent is fine.
    pub async fn delete_namespace(&self, name: &str) -> Result<(), ClusterError> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        match api.delete(name, &DeleteParams::background()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(ClusterError::from_kube(e, &self.server)),
        }
    }

    async fn resource(
        &self,
        api_version: &str,
        kind: &str,
    ) -> Result<(ApiResource, ApiCapabilities), ClusterError> {
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version),
        };
        let gvk = GroupVersionKind::gvk(group, version, kind);
        kube::discovery::pinned_kind(&self.client, &gvk)
            .await
            .map_err(|e| match e {
                kube::Error::Discovery(_) | kube::Error::Api(_) => ClusterError::UnknownKind {
                    api_version: api_version.into(),
                    kind: kind.into(),
                },
                e => ClusterError::from_kube(e, &self.server),
            })
    }

    /// Whether the cluster serves `kind` in `api_version` (discovery), and if so whether it
    /// is namespaced: `Ok(None)` when it does not (a removed API version, a CRD not installed,
    /// a typo). Unlike the other calls, a missing group or version is an answer, not an error.
    pub async fn serves(
        &self,
        api_version: &str,
        kind: &str,
    ) -> Result<Option<KindScope>, ClusterError> {
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version),
        };
        let gvk = GroupVersionKind::gvk(group, version, kind);
        match kube::discovery::pinned_kind(&self.client, &gvk).await {
            Ok((_, caps)) => Ok(Some(match caps.scope {
                Scope::Namespaced => KindScope::Namespaced,
                Scope::Cluster => KindScope::Cluster,
            })),
            Err(kube::Error::Discovery(_)) => Ok(None),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
            Err(e) => Err(ClusterError::from_kube(e, &self.server)),
        }
    }

    /// The `apiVersion`s in which the cluster serves `kind` of `group` (`""` is the core
    /// group), newest first as the server prefers them; empty when none does. For messages
    /// about a kind that is not served in the version asked for.
    pub async fn versions_serving(
        &self,
        group: &str,
        kind: &str,
    ) -> Result<Vec<String>, ClusterError> {
        let g = match kube::discovery::group(&self.client, group).await {
            Ok(g) => g,
            Err(kube::Error::Discovery(_)) => return Ok(Vec::new()),
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(Vec::new()),
            Err(e) => return Err(ClusterError::from_kube(e, &self.server)),
        };
        let versions: Vec<String> = g.versions().map(String::from).collect();
        Ok(versions
            .iter()
            .filter(|v| {
                g.versioned_resources(v)
                    .iter()
                    .any(|(ar, _)| ar.kind == kind)
            })
            .map(|v| {
                if group.is_empty() {
                    v.clone()
                } else {
                    format!("{group}/{v}")
                }
            })
            .collect())
    }

    async fn api_for(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
    ) -> Result<Api<DynamicObject>, ClusterError> {
        let (ar, caps) = self.resource(api_version, kind).await?;
        Ok(match (caps.scope, namespace) {
            (Scope::Namespaced, Some(ns)) => Api::namespaced_with(self.client.clone(), ns, &ar),
            (Scope::Namespaced, None) => Api::default_namespaced_with(self.client.clone(), &ar),
            (Scope::Cluster, _) => Api::all_with(self.client.clone(), &ar),
        })
    }

    /// Server-side applies one object (JSON with apiVersion, kind, metadata.name) as
    /// `field_manager`; returns the object as the server stored it.
    pub async fn apply(
        &self,
        object: &Value,
        field_manager: &str,
        force: bool,
    ) -> Result<Value, ClusterError> {
        self.server_side_apply(object, field_manager, force, false)
            .await
    }

    /// Server-side apply as a dry run: what the server would store, without storing it.
    pub async fn dry_run_apply(
        &self,
        object: &Value,
        field_manager: &str,
        force: bool,
    ) -> Result<Value, ClusterError> {
        self.server_side_apply(object, field_manager, force, true)
            .await
    }

    async fn server_side_apply(
        &self,
        object: &Value,
        field_manager: &str,
        force: bool,
        dry_run: bool,
    ) -> Result<Value, ClusterError> {
        let key = ObjectKey::of(object)?;
        let api = self
            .api_for(&key.api_version, &key.kind, key.namespace.as_deref())
            .await?;
        let mut params = PatchParams::apply(field_manager);
        params.force = force;
        if dry_run {
            params = params.dry_run();
        }
        let stored = api
            .patch(&key.name, &params, &Patch::Apply(object))
            .await
            .map_err(|e| match e {
                kube::Error::Api(s) if s.code == 409 => ClusterError::ApplyConflict {
                    object: key.to_string(),
                    message: s.message,
                },
                e => ClusterError::from_kube(e, &self.server).for_object(&key),
            })?;
        serde_json::to_value(stored).map_err(|e| ClusterError::Config(e.to_string()))
    }

    /// Creates an object; fails with a conflict (HTTP 409, [`ClusterError::is_conflict`]) when
    /// it exists.
    pub async fn create(&self, object: &Value) -> Result<Value, ClusterError> {
        self.write(object, false).await
    }

    /// Replaces an object. With `metadata.resourceVersion` set this is a compare-and-swap: a
    /// concurrent change makes it fail with a conflict.
    pub async fn replace(&self, object: &Value) -> Result<Value, ClusterError> {
        self.write(object, true).await
    }

    async fn write(&self, object: &Value, replace: bool) -> Result<Value, ClusterError> {
        let key = ObjectKey::of(object)?;
        let api = self
            .api_for(&key.api_version, &key.kind, key.namespace.as_deref())
            .await?;
        let obj: DynamicObject = serde_json::from_value(object.clone())
            .map_err(|e| ClusterError::InvalidObject(e.to_string()))?;
        let pp = PostParams::default();
        let stored = if replace {
            api.replace(&key.name, &pp, &obj).await
        } else {
            api.create(&pp, &obj).await
        }
        .map_err(|e| ClusterError::from_kube(e, &self.server).for_object(&key))?;
        serde_json::to_value(stored).map_err(|e| ClusterError::Config(e.to_string()))
    }

    /// Deletes an object with background propagation (its dependents are collected by the
    /// garbage collector). Returns false if it did not exist.
    pub async fn delete(&self, key: &ObjectKey) -> Result<bool, ClusterError> {
        let api = self
            .api_for(&key.api_version, &key.kind, key.namespace.as_deref())
            .await?;
        match api.delete(&key.name, &DeleteParams::background()).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
            Err(e) => Err(ClusterError::from_kube(e, &self.server).for_object(key)),
        }
    }

    /// Watches the objects of one kind in a namespace (or cluster-wide for cluster-scoped
    /// kinds), filtered by label selector and/or `metadata.name`. The stream starts with every
    /// existing object as [`Watched::Applied`] and restarts itself with backoff when the
    /// connection drops; it ends only when dropped.
    pub async fn watch(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: Option<&str>,
        label_selector: Option<&str>,
    ) -> Result<BoxStream<'static, Result<Watched, ClusterError>>, ClusterError> {
        use kube::runtime::WatchStreamExt;
        use kube::runtime::watcher;
        let api = self.api_for(api_version, kind, namespace).await?;
        let mut config = watcher::Config::default();
        if let Some(name) = name {
            config = config.fields(&format!("metadata.name={name}"));
        }
        if let Some(sel) = label_selector {
            config = config.labels(sel);
        }
        let what = format!("{kind} objects");
        let (av, k) = (api_version.to_string(), kind.to_string());
        let stream = watcher(api, config)
            .default_backoff()
            .filter_map(move |ev| {
                let what = what.clone();
                let typed = |o| typed(o, &av, &k);
                let out = match ev {
                    Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
                        Some(Ok(Watched::Applied(typed(o))))
                    }
                    Ok(watcher::Event::Delete(o)) => Some(Ok(Watched::Deleted(typed(o)))),
                    Ok(watcher::Event::Init | watcher::Event::InitDone) => None,
                    Err(e) => Some(Err(ClusterError::Watch {
                        object: what,
                        reason: e.to_string(),
                    })),
                };
                async move { out }
            });
        Ok(stream.boxed())
    }

    /// The last `tail_lines` lines of a container's log (the previous instance's with
    /// `previous`, as after a crash).
    pub async fn pod_logs(
        &self,
        namespace: &str,
        pod: &str,
        container: Option<&str>,
        tail_lines: i64,
        previous: bool,
    ) -> Result<String, ClusterError> {
        let api: Api<k8s_openapi::api::core::v1::Pod> =
            Api::namespaced(self.client.clone(), namespace);
        let params = kube::api::LogParams {
            container: container.map(String::from),
            tail_lines: Some(tail_lines),
            previous,
            ..Default::default()
        };
        api.logs(pod, &params)
            .await
            .map_err(|e| ClusterError::from_kube(e, &self.server))
    }

    /// A container's log lines of the last `since_seconds` (whole lines, as the API server
    /// returns them).
    pub async fn pod_logs_since(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        since_seconds: i64,
    ) -> Result<String, ClusterError> {
        let api: Api<k8s_openapi::api::core::v1::Pod> =
            Api::namespaced(self.client.clone(), namespace);
        let params = kube::api::LogParams {
            container: Some(container.to_string()),
            since_seconds: Some(since_seconds),
            ..Default::default()
        };
        api.logs(pod, &params)
            .await
            .map_err(|e| ClusterError::from_kube(e, &self.server))
    }

    /// Follows a container's log, line by line, each prefixed by the API server's RFC 3339
    /// timestamp and a space (`timestamps=true`), so that a caller who reconnects can skip
    /// what it already saw. Starts `since_seconds` back (`None`: from the container's start).
    /// The stream ends when the container stops or the connection drops; reconnecting is the
    /// caller's decision.
    pub async fn follow_pod_logs(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        since_seconds: Option<i64>,
    ) -> Result<BoxStream<'static, Result<String, ClusterError>>, ClusterError> {
        use futures::AsyncBufReadExt;
        let api: Api<k8s_openapi::api::core::v1::Pod> =
            Api::namespaced(self.client.clone(), namespace);
        let params = kube::api::LogParams {
            container: Some(container.to_string()),
            follow: true,
            timestamps: true,
            since_seconds,
            ..Default::default()
        };
        let server = self.server.clone();
        let reader = api
            .log_stream(pod, &params)
            .await
            .map_err(|e| ClusterError::from_kube(e, &server))?;
        let what = format!("the log of {pod}/{container}");
        Ok(reader
            .lines()
            .map(move |line| {
                line.map_err(|e| ClusterError::Watch {
                    object: what.clone(),
                    reason: e.to_string(),
                })
            })
            .boxed())
    }

    /// Reads one object; `None` if it does not exist.
    pub async fn get(&self, key: &ObjectKey) -> Result<Option<Value>, ClusterError> {
        let api = self
            .api_for(&key.api_version, &key.kind, key.namespace.as_deref())
            .await?;
        match api.get_opt(&key.name).await {
            Ok(o) => Ok(o.map(|o| serde_json::to_value(o).expect("objects serialize"))),
            Err(e) => Err(ClusterError::from_kube(e, &self.server).for_object(key)),
        }
    }

    /// Watches one object until `done` returns true for it, or `timeout` passes.
    pub async fn wait_until(
        &self,
        key: &ObjectKey,
        timeout: Duration,
        done: impl Fn(&Value) -> bool + Send + 'static,
    ) -> Result<Value, ClusterError> {
        let api = self
            .api_for(&key.api_version, &key.kind, key.namespace.as_deref())
            .await?;
        let cond = move |o: Option<&DynamicObject>| {
            o.map(|o| done(&serde_json::to_value(o).expect("objects serialize")))
                .unwrap_or(false)
        };
        let waited = tokio::time::timeout(
            timeout,
            kube::runtime::wait::await_condition(api, &key.name, cond),
        )
        .await;
        match waited {
            Err(_) => Err(ClusterError::Timeout {
                object: key.to_string(),
                seconds: timeout.as_secs(),
            }),
            Ok(Err(e)) => Err(ClusterError::Watch {
                object: key.to_string(),
                reason: e.to_string(),
            }),
            Ok(Ok(Some(o))) => Ok(serde_json::to_value(o).expect("objects serialize")),
            Ok(Ok(None)) => Err(ClusterError::Watch {
                object: key.to_string(),
                reason: "object was deleted".into(),
            }),
        }
    }

    /// Lists objects of a kind in a namespace, optionally filtered by a label selector.
    pub async fn list(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        label_selector: Option<&str>,
    ) -> Result<Vec<Value>, ClusterError> {
        let api = self.api_for(api_version, kind, Some(namespace)).await?;
        let mut lp = kube::api::ListParams::default();
        if let Some(sel) = label_selector {
            lp = lp.labels(sel);
        }
        let list = api
            .list(&lp)
            .await
            .map_err(|e| ClusterError::from_kube(e, &self.server))?;
        Ok(list
            .items
            .into_iter()
            .map(|o| typed(o, api_version, kind))
            .collect())
    }
}

impl Cluster {
    /// The core/v1 Events about one object (`involvedObject` kind and name), oldest first as
    /// the API server returns them.
    pub async fn events_about(
        &self,
        namespace: &str,
        kind: &str,
        name: &str,
    ) -> Result<Vec<Value>, ClusterError> {
        let api = self.api_for("v1", "Event", Some(namespace)).await?;
        let lp = kube::api::ListParams::default()
            .fields(&format!(
                "involvedObject.kind={kind},involvedObject.name={name}"
            ))
            .limit(200);
        let list = api
            .list(&lp)
            .await
            .map_err(|e| ClusterError::from_kube(e, &self.server))?;
        Ok(list
            .items
            .into_iter()
            .map(|o| typed(o, "v1", "Event"))
            .collect())
    }
}

/// An object as JSON with apiVersion and kind filled in: list responses and a watcher's initial
/// list leave them out of items, and readiness rules dispatch on them.
fn typed(o: DynamicObject, api_version: &str, kind: &str) -> Value {
    let mut v = serde_json::to_value(o).expect("objects serialize");
    if let Some(m) = v.as_object_mut() {
        m.insert("apiVersion".into(), api_version.into());
        m.insert("kind".into(), kind.into());
    }
    v
}

/// Identifies one object: apiVersion, kind, namespace (for namespaced kinds) and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    /// `apps/v1`, `v1`, ...
    pub api_version: String,
    /// `Deployment`, ...
    pub kind: String,
    /// Namespace, if any.
    pub namespace: Option<String>,
    /// metadata.name.
    pub name: String,
}

impl ObjectKey {
    /// A key from its parts.
    pub fn new(api_version: &str, kind: &str, namespace: Option<&str>, name: &str) -> Self {
        ObjectKey {
            api_version: api_version.into(),
            kind: kind.into(),
            namespace: namespace.map(String::from),
            name: name.into(),
        }
    }

    /// The key of a manifest object.
    pub fn of(object: &Value) -> Result<Self, ClusterError> {
        let field = |path: &[&str]| {
            let mut v = object;
            for p in path {
                v = v.get(p)?;
            }
            v.as_str().map(String::from)
        };
        let missing = |what: &str| ClusterError::InvalidObject(format!("object has no {what}"));
        Ok(ObjectKey {
            api_version: field(&["apiVersion"]).ok_or_else(|| missing("apiVersion"))?,
            kind: field(&["kind"]).ok_or_else(|| missing("kind"))?,
            namespace: field(&["metadata", "namespace"]),
            name: field(&["metadata", "name"]).ok_or_else(|| missing("metadata.name"))?,
        })
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{}/{} in {ns}", self.kind, self.name),
            None => write!(f, "{}/{}", self.kind, self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_key_from_manifest() {
        let v = serde_json::json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"t"}});
        let k = ObjectKey::of(&v).unwrap();
        assert_eq!(k.to_string(), "Deployment/web in t");
        let bad = serde_json::json!({"kind":"Deployment","metadata":{"name":"web"}});
        assert_eq!(
            ObjectKey::of(&bad).unwrap_err().to_string(),
            "invalid object: object has no apiVersion"
        );
    }
}
