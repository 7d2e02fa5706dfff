use crate::ObjectKey;

/// Everything that can go wrong between berth and the Kubernetes API.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// Neither a kubeconfig nor in-cluster configuration was found.
    #[error(
        "no Kubernetes configuration found ({0}); set KUBECONFIG or create ~/.kube/config \
         (for berth's test environment: eval \"$(testenv/berth-testenv env)\")"
    )]
    NoKubeconfig(String),
    /// The kubeconfig has no current context and none was named.
    #[error("the kubeconfig has no current context; pass --context NAME")]
    NoContext,
    /// The named context is not in the kubeconfig.
    #[error("kube context `{context}` is not in the kubeconfig; known contexts: {}", known.join(", "))]
    UnknownContext {
        /// The context asked for.
        context: String,
        /// The contexts that exist.
        known: Vec<String>,
    },
    /// The kubeconfig could not be turned into a client.
    #[error("invalid Kubernetes client configuration: {0}")]
    Config(String),
    /// The API server could not be reached.
    #[error("cannot reach the Kubernetes API server at {server}: {reason}")]
    Unreachable {
        /// The server URL.
        server: String,
        /// Transport error.
        reason: String,
    },
    /// The API server refused our credentials.
    #[error("the Kubernetes API server at {server} refused the credentials: {message}")]
    Unauthorized {
        /// Server URL.
        server: String,
        /// What it said.
        message: String,
    },
    /// The server answered with an error status.
    #[error("Kubernetes API error{object}: {message} ({reason}, HTTP {code})")]
    Api {
        /// ` for Kind/name in ns`, or empty.
        object: String,
        /// Status message.
        message: String,
        /// Status reason (`Conflict`, `Forbidden`, ...).
        reason: String,
        /// HTTP code.
        code: u16,
    },
    /// No resource of that apiVersion/kind is served (a CRD missing, a typo).
    #[error(
        "the cluster does not serve kind `{kind}` in `{api_version}`; check the apiVersion, or \
         install the CRD that defines it first"
    )]
    UnknownKind {
        /// apiVersion asked for.
        api_version: String,
        /// Kind asked for.
        kind: String,
    },
    /// A manifest object lacks apiVersion, kind or name.
    #[error("invalid object: {0}")]
    InvalidObject(String),
    /// A wait ran out of time.
    #[error("timed out after {seconds}s waiting for {object}")]
    Timeout {
        /// The object waited for.
        object: String,
        /// The deadline.
        seconds: u64,
    },
    /// Server-side apply found fields owned by another field manager.
    #[error(
        "{object}: {message}. Another tool manages these fields; change them there, or pass \
         --force-conflicts to take them over"
    )]
    ApplyConflict {
        /// The object.
        object: String,
        /// The API server's message, naming the other manager and the fields.
        message: String,
    },
    /// The namespace is not there and this identity may not make it.
    #[error(
        "namespace `{namespace}` does not exist and this identity may not create namespaces \
         ({message}); ask a cluster admin to create it (kubectl create namespace {namespace}) \
         and bind you to a Role there, or deploy into a namespace you own with --namespace"
    )]
    NamespaceForbidden {
        /// The namespace.
        namespace: String,
        /// The API server's refusal.
        message: String,
    },
    /// A watch failed.
    #[error("watching {object} failed: {reason}")]
    Watch {
        /// The object.
        object: String,
        /// Why.
        reason: String,
    },
}

impl ClusterError {
    /// The HTTP status code, when the API server answered with an error status.
    pub fn code(&self) -> Option<u16> {
        match self {
            ClusterError::Api { code, .. } => Some(*code),
            ClusterError::ApplyConflict { .. } => Some(409),
            _ => None,
        }
    }

    /// Whether the object was not found (HTTP 404).
    pub fn is_not_found(&self) -> bool {
        self.code() == Some(404)
    }

    /// Whether the write lost a race or the object already exists (HTTP 409).
    pub fn is_conflict(&self) -> bool {
        self.code() == Some(409)
    }

    pub(crate) fn from_kube(e: kube::Error, server: &str) -> Self {
        match e {
            kube::Error::Api(s) if s.code == 401 => ClusterError::Unauthorized {
                server: server.into(),
                message: s.message,
            },
            kube::Error::Api(s) => ClusterError::Api {
                object: String::new(),
                message: s.message,
                reason: s.reason,
                code: s.code,
            },
            kube::Error::HyperError(_) | kube::Error::Service(_) => {
                let mut reason = e.to_string();
                let mut src = std::error::Error::source(&e);
                while let Some(s) = src {
                    reason = format!("{reason}: {s}");
                    src = s.source();
                }
                ClusterError::Unreachable {
                    server: server.into(),
                    reason,
                }
            }
            other => ClusterError::Config(other.to_string()),
        }
    }

    pub(crate) fn for_object(self, key: &ObjectKey) -> Self {
        match self {
            ClusterError::Api {
                message,
                reason,
                code,
                ..
            } => ClusterError::Api {
                object: format!(" for {key}"),
                message,
                reason,
                code,
            },
            other => other,
        }
    }
}
