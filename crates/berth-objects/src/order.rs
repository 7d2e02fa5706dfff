//! Deploy order: which objects must exist before which.
//!
//! The order is by kind only, and coarse on purpose: a phase is applied with server-side apply
//! as a batch and the next phase starts once the batch was accepted (readiness is the deploy
//! layer's concern). Within a phase objects do not depend on each other.

use crate::{ObjectKey, ObjectSet};

/// An apply phase. Variants are in apply order (`Ord` follows it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// `Namespace`.
    Namespaces,
    /// `CustomResourceDefinition`, so that custom resources can be applied later.
    Definitions,
    /// Identities, RBAC and cluster-wide settings later objects refer to: ServiceAccount, Role,
    /// RoleBinding, ClusterRole, ClusterRoleBinding, ResourceQuota, LimitRange, PriorityClass,
    /// StorageClass, IngressClass, RuntimeClass.
    Access,
    /// ConfigMap and Secret.
    Config,
    /// PersistentVolume and PersistentVolumeClaim.
    Storage,
    /// Service (core group only; a Knative `Service` is a custom resource).
    Services,
    /// Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob, Pod.
    Workloads,
    /// What routes to or guards running workloads: Ingress, HorizontalPodAutoscaler,
    /// PodDisruptionBudget, NetworkPolicy, Gateway API routes, and admission webhooks and
    /// APIServices (which need their backing pods).
    Exposure,
    /// Everything else: custom resources and kinds berth does not know.
    Custom,
}

impl Phase {
    /// The phase of a kind in an API group (`""` is the core group).
    pub fn of(group: &str, kind: &str) -> Phase {
        match (group, kind) {
            ("", "Namespace") => Phase::Namespaces,
            ("apiextensions.k8s.io", "CustomResourceDefinition") => Phase::Definitions,
            ("", "ServiceAccount" | "ResourceQuota" | "LimitRange")
            | (
                "rbac.authorization.k8s.io",
                "Role" | "RoleBinding" | "ClusterRole" | "ClusterRoleBinding",
            )
            | ("scheduling.k8s.io", "PriorityClass")
            | ("storage.k8s.io", "StorageClass")
            | ("networking.k8s.io", "IngressClass")
            | ("node.k8s.io", "RuntimeClass") => Phase::Access,
            ("", "ConfigMap" | "Secret") => Phase::Config,
            ("", "PersistentVolume" | "PersistentVolumeClaim") => Phase::Storage,
            ("", "Service") => Phase::Services,
            ("apps", "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet")
            | ("batch", "Job" | "CronJob")
            | ("", "Pod" | "ReplicationController") => Phase::Workloads,
            ("networking.k8s.io", "Ingress" | "NetworkPolicy")
            | ("autoscaling", "HorizontalPodAutoscaler")
            | ("policy", "PodDisruptionBudget")
            | ("gateway.networking.k8s.io", "Gateway" | "HTTPRoute" | "GRPCRoute")
            | (
                "admissionregistration.k8s.io",
                "ValidatingWebhookConfiguration" | "MutatingWebhookConfiguration",
            )
            | ("apiregistration.k8s.io", "APIService") => Phase::Exposure,
            _ => Phase::Custom,
        }
    }
}

/// One batch of objects to apply together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApplyPhase {
    /// Which phase.
    pub phase: Phase,
    /// Its objects, in the stable order of [`ObjectSet::sorted`].
    pub objects: Vec<ObjectKey>,
}

/// The apply phases of a set, in order; phases without objects are left out.
pub fn deploy_order(set: &ObjectSet) -> Vec<ApplyPhase> {
    let mut phases: Vec<ApplyPhase> = Vec::new();
    for o in set.sorted() {
        let phase = o.phase();
        match phases.last_mut() {
            Some(p) if p.phase == phase => p.objects.push(o.key().clone()),
            _ => phases.push(ApplyPhase {
                phase,
                objects: vec![o.key().clone()],
            }),
        }
    }
    phases
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Object, Source};
    use serde_json::json;

    #[test]
    fn phases_follow_dependencies() {
        let mut set = ObjectSet::new();
        for (api, kind, name) in [
            ("mongodbcommunity.mongodb.com/v1", "MongoDBCommunity", "db"),
            ("serving.knative.dev/v1", "Service", "fn"),
            ("networking.k8s.io/v1", "Ingress", "shop"),
            ("apps/v1", "Deployment", "web"),
            ("batch/v1", "Job", "load"),
            ("v1", "Service", "web"),
            ("v1", "PersistentVolumeClaim", "data"),
            ("v1", "Secret", "creds"),
            ("v1", "ConfigMap", "cfg"),
            ("rbac.authorization.k8s.io/v1", "Role", "r"),
            ("v1", "ServiceAccount", "sa"),
            (
                "apiextensions.k8s.io/v1",
                "CustomResourceDefinition",
                "x.example.com",
            ),
            ("v1", "Namespace", "dev"),
        ] {
            let v = json!({"apiVersion": api, "kind": kind, "metadata": {"name": name}});
            let src = Source {
                origin: "t".into(),
                line: 1,
            };
            set.insert(Object::new(v, src).unwrap()).unwrap();
        }
        let order: Vec<String> = deploy_order(&set)
            .iter()
            .map(|p| {
                let names: Vec<String> = p.objects.iter().map(|k| k.to_string()).collect();
                format!("{:?}: {}", p.phase, names.join(", "))
            })
            .collect();
        insta::assert_snapshot!(order.join("\n"), @r"
        Namespaces: Namespace dev
        Definitions: CustomResourceDefinition.apiextensions.k8s.io x.example.com
        Access: Role.rbac.authorization.k8s.io r, ServiceAccount sa
        Config: ConfigMap cfg, Secret creds
        Storage: PersistentVolumeClaim data
        Services: Service web
        Workloads: Deployment.apps web, Job.batch load
        Exposure: Ingress.networking.k8s.io shop
        Custom: MongoDBCommunity.mongodbcommunity.mongodb.com db, Service.serving.knative.dev fn
        ");
    }
}
