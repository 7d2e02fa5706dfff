//! Removed and deprecated Kubernetes APIs, 1.16 to 1.33: what replaced them and what changed.
//!
//! A table kept in the code, from the upstream deprecated-API migration guide
//! (<https://kubernetes.io/docs/reference/using-api/deprecation-guide/>), so that berth can say
//! what to write instead when a cluster does not serve an `apiVersion` — both before a deploy
//! (the preflight in `berth-deploy`, when discovery lacks a kind) and in `berth render`, which
//! warns about every object of a deprecated or removed API. `berth_render::convert` rewrites the
//! mechanical cases ([`Migration`]).
//!
//! Releases are Kubernetes minor versions of 1.x (`22` is 1.22). `deprecated` is the release
//! from which the API server warns about the old version (or the replacement was GA, for the
//! workload APIs removed in 1.16); `removed` the first release that no longer serves it.

use std::fmt;

/// How an old API version becomes its replacement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Migration {
    /// Same fields: only `apiVersion` changes.
    Rename,
    /// Deployment, DaemonSet, ReplicaSet, StatefulSet to `apps/v1`: `spec.selector` becomes
    /// required (taken from the pod template's labels when missing), removed fields go.
    Workload,
    /// Ingress to `networking.k8s.io/v1`: backend fields, `pathType`, the class annotation.
    Ingress,
    /// HorizontalPodAutoscaler `autoscaling/v2beta1` to `v2`: metric targets.
    HpaV2beta1,
    /// PodDisruptionBudget to `policy/v1`: same fields, but an empty selector changes meaning.
    Pdb,
    /// Not mechanical: berth names what to do, the user changes the manifest.
    Manual,
}

/// One removed or deprecated API version of one kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApiChange {
    /// The old `apiVersion` (`extensions/v1beta1`).
    pub api_version: &'static str,
    /// The kind.
    pub kind: &'static str,
    /// Release (1.x) from which it is deprecated.
    pub deprecated: u32,
    /// First release (1.x) that no longer serves it; `None`: deprecated, still served.
    pub removed: Option<u32>,
    /// The `apiVersion` to write instead (for [`Migration::Manual`] without a replacement
    /// API, what replaces it, in words).
    pub replacement: &'static str,
    /// The kind to write, when it differs (`Endpoints` -> `EndpointSlice`).
    pub replacement_kind: Option<&'static str>,
    /// The field changes, `old -> new; ...`; empty when none.
    pub changes: &'static str,
    /// How `berth_render::convert` handles it.
    pub migration: Migration,
}

impl ApiChange {
    /// Whether a cluster at minor version `minor` still serves this API version.
    pub fn served_in(&self, minor: u32) -> bool {
        self.removed.is_none_or(|r| minor < r)
    }

    /// `extensions/v1beta1 Ingress was removed in Kubernetes 1.22; use networking.k8s.io/v1 —
    /// <changes>`, or `... is deprecated since 1.x and removed in 1.y; ...`.
    pub fn advice(&self) -> String {
        let when = match self.removed {
            Some(r) => format!("was removed in Kubernetes 1.{r}"),
            None => format!("is deprecated since Kubernetes 1.{}", self.deprecated),
        };
        let to = match self.replacement_kind {
            Some(k) => format!("{} {k}", self.replacement),
            None => self.replacement.to_string(),
        };
        let mut out = format!("{} {} {when}; use {to}", self.api_version, self.kind);
        if !self.changes.is_empty() {
            out.push_str(" — ");
            out.push_str(self.changes);
        }
        out
    }

    /// `; \`berth render --convert\` rewrites it` when the migration is mechanical, else empty.
    pub fn convert_hint(&self) -> &'static str {
        if self.migration == Migration::Manual {
            ""
        } else {
            "; `berth render --convert` rewrites it"
        }
    }
}

impl fmt::Display for ApiChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.advice())
    }
}

const WORKLOAD_CHANGES: &str = "spec.selector is required (use the pod template's labels); \
     extensions/v1beta1 spec.rollbackTo and spec.templateGeneration are gone; DaemonSet \
     spec.updateStrategy.type now defaults to RollingUpdate (extensions/v1beta1: OnDelete)";
const INGRESS_CHANGES: &str = "spec.backend -> spec.defaultBackend; backend.serviceName -> \
     backend.service.name; backend.servicePort -> backend.service.port.number (a number) or \
     backend.service.port.name (a name); pathType is required (ImplementationSpecific keeps the \
     old behaviour); annotation kubernetes.io/ingress.class -> spec.ingressClassName";
const HPA_CHANGES: &str = "metrics[].resource.targetAverageUtilization -> \
     metrics[].resource.target {type: Utilization, averageUtilization}; targetAverageValue -> \
     target {type: AverageValue, averageValue}; targetValue -> target {type: Value, value}; \
     metricName -> metric.name; metricSelector -> metric.selector; object.target -> \
     object.describedObject";
const PDB_CHANGES: &str = "an empty spec.selector ({}) selects every pod of the namespace in \
     policy/v1 (none in policy/v1beta1); an unset selector still selects none";
const CRD_CHANGES: &str = "spec.scope is required; spec.validation -> \
     spec.versions[].schema (a structural openAPIV3Schema is required); spec.subresources and \
     spec.additionalPrinterColumns move into spec.versions[] (JSONPath -> jsonPath); \
     spec.preserveUnknownFields: true is not allowed; spec.conversion.webhookClientConfig -> \
     spec.conversion.webhook.clientConfig, conversionReviewVersions is required";
const WEBHOOK_CHANGES: &str = "webhooks[].admissionReviewVersions and webhooks[].sideEffects \
     (None or NoneOnDryRun) are required; defaults change: failurePolicy Ignore -> Fail, \
     matchPolicy Exact -> Equivalent, timeoutSeconds 30 -> 10";

macro_rules! change {
    ($av:literal, $kind:literal, $dep:literal, $rem:expr, $to:literal, $changes:expr, $m:ident) => {
        ApiChange {
            api_version: $av,
            kind: $kind,
            deprecated: $dep,
            removed: $rem,
            replacement: $to,
            replacement_kind: None,
            changes: $changes,
            migration: Migration::$m,
        }
    };
}

/// Every API version of Kubernetes' built-in kinds removed or deprecated from 1.16 to 1.33.
pub const API_CHANGES: &[ApiChange] = &[
    // 1.16
    change!(
        "extensions/v1beta1",
        "Deployment",
        9,
        Some(16),
        "apps/v1",
        WORKLOAD_CHANGES,
        Workload
    ),
    change!(
        "apps/v1beta1",
        "Deployment",
        9,
        Some(16),
        "apps/v1",
        WORKLOAD_CHANGES,
        Workload
    ),
    change!(
        "apps/v1beta2",
        "Deployment",
        9,
        Some(16),
        "apps/v1",
        WORKLOAD_CHANGES,
        Workload
    ),
    change!(
        "extensions/v1beta1",
        "DaemonSet",
        9,
        Some(16),
        "apps/v1",
        WORKLOAD_CHANGES,
        Workload
    ),
    change!(
        "apps/v1beta2",
        "DaemonSet",
        9,
        Some(16),
        "apps/v1",
        WORKLOAD_CHANGES,
        Workload
    ),
    change!(
        "extensions/v1beta1",
        "ReplicaSet",
        9,
        Some(16),
        "apps/v1",
        WORKLOAD_CHANGES,
        Workload
    ),
    change!(
        "apps/v1beta2",
        "ReplicaSet",
        9,
        Some(16),
        "apps/v1",
        WORKLOAD_CHANGES,
        Workload
    ),
    change!(
        "apps/v1beta1",
        "StatefulSet",
        9,
        Some(16),
        "apps/v1",
        WORKLOAD_CHANGES,
        Workload
    ),
    change!(
        "apps/v1beta2",
        "StatefulSet",
        9,
        Some(16),
        "apps/v1",
        WORKLOAD_CHANGES,
        Workload
    ),
    change!(
        "extensions/v1beta1",
        "NetworkPolicy",
        9,
        Some(16),
        "networking.k8s.io/v1",
        "",
        Rename
    ),
    change!(
        "extensions/v1beta1",
        "PodSecurityPolicy",
        10,
        Some(16),
        "Pod Security Admission (PodSecurityPolicy itself was removed in 1.25)",
        "label the namespace pod-security.kubernetes.io/enforce: baseline or restricted, or use \
         a policy engine (Kyverno, Gatekeeper); delete the PodSecurityPolicy",
        Manual
    ),
    // 1.22
    change!(
        "extensions/v1beta1",
        "Ingress",
        14,
        Some(22),
        "networking.k8s.io/v1",
        INGRESS_CHANGES,
        Ingress
    ),
    change!(
        "networking.k8s.io/v1beta1",
        "Ingress",
        19,
        Some(22),
        "networking.k8s.io/v1",
        INGRESS_CHANGES,
        Ingress
    ),
    change!(
        "networking.k8s.io/v1beta1",
        "IngressClass",
        19,
        Some(22),
        "networking.k8s.io/v1",
        "",
        Rename
    ),
    change!(
        "rbac.authorization.k8s.io/v1beta1",
        "ClusterRole",
        17,
        Some(22),
        "rbac.authorization.k8s.io/v1",
        "",
        Rename
    ),
    change!(
        "rbac.authorization.k8s.io/v1beta1",
        "ClusterRoleBinding",
        17,
        Some(22),
        "rbac.authorization.k8s.io/v1",
        "",
        Rename
    ),
    change!(
        "rbac.authorization.k8s.io/v1beta1",
        "Role",
        17,
        Some(22),
        "rbac.authorization.k8s.io/v1",
        "",
        Rename
    ),
    change!(
        "rbac.authorization.k8s.io/v1beta1",
        "RoleBinding",
        17,
        Some(22),
        "rbac.authorization.k8s.io/v1",
        "",
        Rename
    ),
    change!(
        "apiextensions.k8s.io/v1beta1",
        "CustomResourceDefinition",
        16,
        Some(22),
        "apiextensions.k8s.io/v1",
        CRD_CHANGES,
        Manual
    ),
    change!(
        "admissionregistration.k8s.io/v1beta1",
        "MutatingWebhookConfiguration",
        16,
        Some(22),
        "admissionregistration.k8s.io/v1",
        WEBHOOK_CHANGES,
        Manual
    ),
    change!(
        "admissionregistration.k8s.io/v1beta1",
        "ValidatingWebhookConfiguration",
        16,
        Some(22),
        "admissionregistration.k8s.io/v1",
        WEBHOOK_CHANGES,
        Manual
    ),
    change!(
        "apiregistration.k8s.io/v1beta1",
        "APIService",
        19,
        Some(22),
        "apiregistration.k8s.io/v1",
        "",
        Rename
    ),
    change!(
        "authentication.k8s.io/v1beta1",
        "TokenReview",
        19,
        Some(22),
        "authentication.k8s.io/v1",
        "",
        Rename
    ),
    change!(
        "authorization.k8s.io/v1beta1",
        "SubjectAccessReview",
        19,
        Some(22),
        "authorization.k8s.io/v1",
        "spec.group -> spec.groups",
        Manual
    ),
    change!(
        "authorization.k8s.io/v1beta1",
        "LocalSubjectAccessReview",
        19,
        Some(22),
        "authorization.k8s.io/v1",
        "spec.group -> spec.groups",
        Manual
    ),
    change!(
        "authorization.k8s.io/v1beta1",
        "SelfSubjectAccessReview",
        19,
        Some(22),
        "authorization.k8s.io/v1",
        "spec.group -> spec.groups",
        Manual
    ),
    change!(
        "certificates.k8s.io/v1beta1",
        "CertificateSigningRequest",
        19,
        Some(22),
        "certificates.k8s.io/v1",
        "spec.signerName is required (kubernetes.io/legacy-unknown cannot be requested); \
         spec.usages is required, without duplicates; status.conditions may not repeat a type",
        Manual
    ),
    change!(
        "coordination.k8s.io/v1beta1",
        "Lease",
        14,
        Some(22),
        "coordination.k8s.io/v1",
        "",
        Rename
    ),
    change!(
        "scheduling.k8s.io/v1beta1",
        "PriorityClass",
        14,
        Some(22),
        "scheduling.k8s.io/v1",
        "",
        Rename
    ),
    change!(
        "storage.k8s.io/v1beta1",
        "CSIDriver",
        19,
        Some(22),
        "storage.k8s.io/v1",
        "",
        Rename
    ),
    change!(
        "storage.k8s.io/v1beta1",
        "CSINode",
        17,
        Some(22),
        "storage.k8s.io/v1",
        "",
        Rename
    ),
    change!(
        "storage.k8s.io/v1beta1",
        "StorageClass",
        19,
        Some(22),
        "storage.k8s.io/v1",
        "",
        Rename
    ),
    change!(
        "storage.k8s.io/v1beta1",
        "VolumeAttachment",
        19,
        Some(22),
        "storage.k8s.io/v1",
        "",
        Rename
    ),
    // 1.25
    change!(
        "batch/v1beta1",
        "CronJob",
        21,
        Some(25),
        "batch/v1",
        "",
        Rename
    ),
    change!(
        "discovery.k8s.io/v1beta1",
        "EndpointSlice",
        21,
        Some(25),
        "discovery.k8s.io/v1",
        "endpoints[].topology[\"kubernetes.io/hostname\"] -> endpoints[].nodeName; \
         endpoints[].topology[\"topology.kubernetes.io/zone\"] -> endpoints[].zone; \
         endpoints[].topology -> endpoints[].deprecatedTopology (not writable)",
        Manual
    ),
    change!(
        "events.k8s.io/v1beta1",
        "Event",
        19,
        Some(25),
        "events.k8s.io/v1",
        "type is Normal or Warning; involvedObject -> regarding; action, reason, \
         reportingController and reportingInstance are required on create; use eventTime, not \
         firstTimestamp; lastTimestamp -> series.lastObservedTime; count -> series.count; \
         source.component -> reportingController; source.host -> deprecatedSource.host",
        Manual
    ),
    change!(
        "autoscaling/v2beta1",
        "HorizontalPodAutoscaler",
        22,
        Some(25),
        "autoscaling/v2",
        HPA_CHANGES,
        HpaV2beta1
    ),
    change!(
        "policy/v1beta1",
        "PodDisruptionBudget",
        21,
        Some(25),
        "policy/v1",
        PDB_CHANGES,
        Pdb
    ),
    change!(
        "policy/v1beta1",
        "PodSecurityPolicy",
        21,
        Some(25),
        "Pod Security Admission",
        "there is no replacement object: label the namespace \
         pod-security.kubernetes.io/enforce: baseline or restricted (Pod Security Admission), \
         or use a policy engine (Kyverno, Gatekeeper); delete the PodSecurityPolicy and the \
         RBAC rules that `use` it",
        Manual
    ),
    change!(
        "node.k8s.io/v1beta1",
        "RuntimeClass",
        20,
        Some(25),
        "node.k8s.io/v1",
        "",
        Rename
    ),
    // 1.26
    change!(
        "autoscaling/v2beta2",
        "HorizontalPodAutoscaler",
        23,
        Some(26),
        "autoscaling/v2",
        "",
        Rename
    ),
    change!(
        "flowcontrol.apiserver.k8s.io/v1beta1",
        "FlowSchema",
        23,
        Some(26),
        "flowcontrol.apiserver.k8s.io/v1",
        "",
        Rename
    ),
    change!(
        "flowcontrol.apiserver.k8s.io/v1beta1",
        "PriorityLevelConfiguration",
        23,
        Some(26),
        "flowcontrol.apiserver.k8s.io/v1",
        "spec.limited.assuredConcurrencyShares -> spec.limited.nominalConcurrencyShares",
        Manual
    ),
    // 1.27
    change!(
        "storage.k8s.io/v1beta1",
        "CSIStorageCapacity",
        24,
        Some(27),
        "storage.k8s.io/v1",
        "",
        Rename
    ),
    // 1.29
    change!(
        "flowcontrol.apiserver.k8s.io/v1beta2",
        "FlowSchema",
        26,
        Some(29),
        "flowcontrol.apiserver.k8s.io/v1",
        "",
        Rename
    ),
    change!(
        "flowcontrol.apiserver.k8s.io/v1beta2",
        "PriorityLevelConfiguration",
        26,
        Some(29),
        "flowcontrol.apiserver.k8s.io/v1",
        "spec.limited.assuredConcurrencyShares -> spec.limited.nominalConcurrencyShares",
        Manual
    ),
    // 1.32
    change!(
        "flowcontrol.apiserver.k8s.io/v1beta3",
        "FlowSchema",
        29,
        Some(32),
        "flowcontrol.apiserver.k8s.io/v1",
        "",
        Rename
    ),
    change!(
        "flowcontrol.apiserver.k8s.io/v1beta3",
        "PriorityLevelConfiguration",
        29,
        Some(32),
        "flowcontrol.apiserver.k8s.io/v1",
        "spec.limited.nominalConcurrencyShares defaults to 30 only when unset; an explicit 0 \
         stays 0",
        Rename
    ),
    // 1.33: deprecated, still served.
    ApiChange {
        api_version: "v1",
        kind: "Endpoints",
        deprecated: 33,
        removed: None,
        replacement: "discovery.k8s.io/v1",
        replacement_kind: Some("EndpointSlice"),
        changes: "a Service with a selector gets EndpointSlices by itself; write EndpointSlices \
                  (label kubernetes.io/service-name) only for a Service without a selector",
        migration: Migration::Manual,
    },
];

/// The table entry for an object's `apiVersion` and `kind`, if that API version is removed or
/// deprecated.
pub fn lookup(api_version: &str, kind: &str) -> Option<&'static ApiChange> {
    API_CHANGES
        .iter()
        .find(|c| c.api_version == api_version && c.kind == kind)
}

/// The minor version of a Kubernetes version string (`v1.33.13`, `1.25`, `v1.29.0-gke.1`).
pub fn minor_version(version: &str) -> Option<u32> {
    let v = version.trim().trim_start_matches('v');
    let mut parts = v.split('.');
    if parts.next()? != "1" {
        return None;
    }
    let minor: String = parts
        .next()?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    minor.parse().ok()
}

/// What to tell the user about an object of `api_version`/`kind` on a cluster at `cluster`
/// (its version string, when known). `None` when the API is neither deprecated nor removed.
pub fn warning(api_version: &str, kind: &str, cluster: Option<&str>) -> Option<String> {
    let change = lookup(api_version, kind)?;
    let advice = change.advice();
    let hint = change.convert_hint();
    let state = match cluster.and_then(|v| minor_version(v).map(|m| (v, m))) {
        Some((v, minor)) if !change.served_in(minor) => {
            format!(". The cluster runs {v}: it refuses this object")
        }
        Some((v, _)) => format!(
            ". The cluster runs {v}, which still serves it{}",
            match change.removed {
                Some(r) => format!(
                    ", but 1.{r} will not (deprecated since 1.{})",
                    change.deprecated
                ),
                None => String::new(),
            }
        ),
        None => " (cluster version unknown)".to_string(),
    };
    Some(format!("{advice}{state}{hint}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_ingress_names_release_replacement_and_fields() {
        let c = lookup("extensions/v1beta1", "Ingress").unwrap();
        let advice = c.advice();
        assert!(
            advice.starts_with(
                "extensions/v1beta1 Ingress was removed in Kubernetes 1.22; use networking.k8s.io/v1 — \
                 spec.backend -> spec.defaultBackend; backend.serviceName -> backend.service.name; \
                 backend.servicePort -> backend.service.port.number"
            ),
            "{advice}"
        );
        assert!(advice.contains("pathType is required"), "{advice}");
        assert_eq!(c.convert_hint(), "; `berth render --convert` rewrites it");
    }

    #[test]
    fn every_upstream_removal_from_1_16_to_1_32_is_in_the_table() {
        for (av, kind, removed) in [
            ("extensions/v1beta1", "Deployment", 16),
            ("apps/v1beta1", "Deployment", 16),
            ("apps/v1beta2", "DaemonSet", 16),
            ("extensions/v1beta1", "ReplicaSet", 16),
            ("apps/v1beta1", "StatefulSet", 16),
            ("extensions/v1beta1", "NetworkPolicy", 16),
            ("extensions/v1beta1", "PodSecurityPolicy", 16),
            ("networking.k8s.io/v1beta1", "Ingress", 22),
            ("networking.k8s.io/v1beta1", "IngressClass", 22),
            (
                "rbac.authorization.k8s.io/v1beta1",
                "ClusterRoleBinding",
                22,
            ),
            (
                "apiextensions.k8s.io/v1beta1",
                "CustomResourceDefinition",
                22,
            ),
            (
                "admissionregistration.k8s.io/v1beta1",
                "ValidatingWebhookConfiguration",
                22,
            ),
            ("apiregistration.k8s.io/v1beta1", "APIService", 22),
            ("authentication.k8s.io/v1beta1", "TokenReview", 22),
            ("authorization.k8s.io/v1beta1", "SubjectAccessReview", 22),
            (
                "certificates.k8s.io/v1beta1",
                "CertificateSigningRequest",
                22,
            ),
            ("coordination.k8s.io/v1beta1", "Lease", 22),
            ("scheduling.k8s.io/v1beta1", "PriorityClass", 22),
            ("storage.k8s.io/v1beta1", "VolumeAttachment", 22),
            ("batch/v1beta1", "CronJob", 25),
            ("discovery.k8s.io/v1beta1", "EndpointSlice", 25),
            ("events.k8s.io/v1beta1", "Event", 25),
            ("autoscaling/v2beta1", "HorizontalPodAutoscaler", 25),
            ("policy/v1beta1", "PodDisruptionBudget", 25),
            ("policy/v1beta1", "PodSecurityPolicy", 25),
            ("node.k8s.io/v1beta1", "RuntimeClass", 25),
            ("autoscaling/v2beta2", "HorizontalPodAutoscaler", 26),
            ("flowcontrol.apiserver.k8s.io/v1beta1", "FlowSchema", 26),
            ("storage.k8s.io/v1beta1", "CSIStorageCapacity", 27),
            (
                "flowcontrol.apiserver.k8s.io/v1beta2",
                "PriorityLevelConfiguration",
                29,
            ),
            ("flowcontrol.apiserver.k8s.io/v1beta3", "FlowSchema", 32),
        ] {
            let c = lookup(av, kind).unwrap_or_else(|| panic!("{av} {kind} missing"));
            assert_eq!(c.removed, Some(removed), "{av} {kind}");
            assert!(c.deprecated < removed, "{av} {kind}");
        }
    }

    #[test]
    fn table_is_consistent() {
        for c in API_CHANGES {
            assert!(
                (16..=33).contains(&c.removed.unwrap_or(c.deprecated)),
                "{c:?} outside 1.16-1.33"
            );
            if c.migration != Migration::Manual {
                assert!(
                    lookup(c.replacement, c.kind).is_none(),
                    "{c:?}: its replacement is itself deprecated"
                );
                assert!(
                    c.replacement.contains('/'),
                    "{c:?}: replacement is an apiVersion"
                );
            }
            let twice = API_CHANGES
                .iter()
                .filter(|d| d.api_version == c.api_version && d.kind == c.kind)
                .count();
            assert_eq!(twice, 1, "{c:?} listed twice");
        }
        assert!(lookup("apps/v1", "Deployment").is_none());
        assert!(lookup("networking.k8s.io/v1", "Ingress").is_none());
    }

    #[test]
    fn versions_parse_like_servers_report_them() {
        assert_eq!(minor_version("v1.33.13"), Some(33));
        assert_eq!(minor_version("1.25"), Some(25));
        assert_eq!(minor_version("v1.29.0-gke.1200"), Some(29));
        assert_eq!(minor_version("v1.27+"), Some(27));
        assert_eq!(minor_version("2.0"), None);
        assert_eq!(minor_version("garbage"), None);
    }

    #[test]
    fn warning_says_whether_the_cluster_still_serves_it() {
        let w = warning("batch/v1beta1", "CronJob", Some("v1.24.3")).unwrap();
        assert!(
            w.contains("The cluster runs v1.24.3, which still serves it, but 1.25 will not"),
            "{w}"
        );
        let w = warning("batch/v1beta1", "CronJob", Some("v1.33.13")).unwrap();
        assert!(
            w.ends_with(
                "The cluster runs v1.33.13: it refuses this object; `berth render --convert` \
                 rewrites it"
            ),
            "{w}"
        );
        let w = warning("batch/v1beta1", "CronJob", None).unwrap();
        assert!(w.contains("(cluster version unknown)"), "{w}");
        let w = warning("v1", "Endpoints", Some("v1.33.1")).unwrap();
        assert!(
            w.contains("deprecated since Kubernetes 1.33; use discovery.k8s.io/v1 EndpointSlice"),
            "{w}"
        );
        assert!(w.ends_with("which still serves it"), "{w}");
        assert!(warning("apps/v1", "Deployment", Some("v1.33.1")).is_none());
    }
}
