//! Manifest sources -> [`ObjectSet`]: the render step of berth's pipeline.
//!
//! ```text
//!  ManifestSource::Path       *.yaml *.yml *.json ──────────────► parse ─┐
//!                             *.yaml.j2 ── minijinja(values) ────► parse ─┤
//!  ManifestSource::Template   any file ─── minijinja(values) ────► parse ─┤
//!  ManifestSource::Kustomize  `kustomize build <dir>` ───────────► parse ─┼─► ObjectSet
//!  ManifestSource::Helm       `helm template <release> <chart>` ─► parse ─┘      │
//!                                                    substitute_images(ImageMap) │
//!                                                  apply_ownership(Ownership)    │
//!                            to_yaml() / redacted() / deploy_order() ◄───────────┘
//! ```
//!
//! Design:
//! - **Objects stay JSON.** An [`Object`] is a `serde_json::Value` plus its [`ObjectKey`]
//!   (group, kind, namespace, name) and [`Source`] (file:line of the document). berth never
//!   needs typed Kubernetes structs to render, and a custom resource is as good as a Deployment.
//!   No Kubernetes client is linked here.
//! - **One parser for every source.** Plain files, rendered templates and the output of
//!   kustomize and helm all go through the same YAML reader ([`yaml`]): serde-saphyr with
//!   legacy octal numbers, so `0644` means what it means to kubectl. Errors carry file:line:column.
//! - **External tools are processes.** kustomize and helm are run as binaries ([`Tools`]),
//!   never re-implemented; a missing binary is an error that says how to get it.
//! - **Confined to the repository.** With [`RenderContext::root`] set (the pipeline sets it to
//!   the directory of berth.yaml), every source is checked right before it is read: no link
//!   inside a manifests directory, kustomization or chart, no kustomization reference and no
//!   values file may lead outside ([`confine`]).
//! - **Pure transformations after loading.** Image substitution ([`images`]), ownership labels
//!   and the namespace rule ([`ownership`]) and the apply order ([`order`]) are functions of the
//!   set alone, unit-tested on inline data.
//! - **Stable output.** [`ObjectSet::to_yaml`] sorts by phase, kind, namespace and name and
//!   sorts mapping keys, so two renders of the same input are byte-identical and diff well.
//!
//! [`render`] runs the whole step; [`load`] and the `ObjectSet` methods are the parts.

pub mod confine;
pub mod convert;
pub mod error;
pub mod images;
pub mod sources;
pub mod template;
pub mod values;
pub mod yaml;

// The objects this crate renders live in berth-objects (below render and deploy); re-exported
// so that callers of the render step keep their paths.
pub use berth_objects::{
    ApplyPhase, Object, ObjectError, ObjectKey, ObjectSet, Ownership, Phase, Source, apis,
    deploy_order, object, order, ownership,
};
pub use error::RenderError;
pub use images::{ImageMap, ImageRewrite, ImageUse, ImageValuePaths, ImagesExt, Unpinned};
pub use sources::{
    HelmChart, ManifestSource, Rendered, Tools, helm_template, kustomize_build, load, load_path,
    load_templates, render,
};
pub use template::RenderContext;
