//! Image substitution: point every container at the image berth built, by digest.
//!
//! The walk is generic rather than a table of kinds: in any object, every sequence under a key
//! named `containers`, `initContainers` or `ephemeralContainers` is a list of containers, and
//! their `image` fields are candidates. That covers Pod, Deployment, StatefulSet, DaemonSet,
//! ReplicaSet, Job, CronJob (`spec.jobTemplate.spec.template`), Argo Rollouts
//! (`spec.template`), Knative Services (`spec.template.spec.containers`) and most operators'
//! custom resources without knowing them. In custom resources (any API group that is not
//! Kubernetes' own) every string field named `image` is a candidate too: operators name their
//! workload's image `spec.image` and the like. `CustomResourceDefinition`s are skipped: their
//! schemas describe `containers` fields but hold no images.
//!
//! Matching normalises Docker references ([`berth_types::ImageRef`]): `nginx`,
//! `docker.io/library/nginx` and `index.docker.io/library/nginx:latest` are the same image. An
//! entry written with a tag (`web:dev`) only replaces that tag; an entry without one (`web`)
//! replaces the repository whatever its tag, so `web`, `web:latest` and `web:v3` in manifests
//! all become the built digest. Exact-tag entries win over repository entries. References that
//! already carry a digest are left alone: pinning an image by hand is the user's decision.

use std::collections::{BTreeMap, HashMap};

use berth_types::ImageRef;
use serde_json::Value;

use berth_objects::ObjectError;

use crate::{ObjectKey, ObjectSet, RenderError};

/// Images to substitute: image name as written in manifests (repository, with or without tag)
/// -> pinned reference `repo@sha256:...`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageMap {
    /// As given, for templates (`images` and `image()`).
    entries: BTreeMap<String, String>,
    /// `registry/repository:tag` -> pinned.
    exact: HashMap<String, String>,
    /// `registry/repository` -> pinned.
    by_repo: HashMap<String, String>,
}

/// One image reference that [`ImagesExt::substitute_images`] changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRewrite {
    /// The object.
    pub object: ObjectKey,
    /// JSON pointer of the `image` field, e.g. `/spec/template/spec/containers/0/image`.
    pub pointer: String,
    /// The reference before.
    pub from: String,
    /// The pinned reference after.
    pub to: String,
}

impl ImageMap {
    /// An empty map.
    pub fn new() -> ImageMap {
        ImageMap::default()
    }

    /// Adds `name -> pinned`. `name` must be an image name without digest; `pinned` must carry a
    /// digest (berth deploys by digest so that a rebuilt tag is never mistaken for the old one).
    pub fn insert(&mut self, name: &str, pinned: &str) -> Result<(), RenderError> {
        let entry = || format!("{name} -> {pinned}");
        let bad = |message: String| RenderError::ImageMap {
            entry: entry(),
            message,
        };
        let from: ImageRef = name
            .parse()
            .map_err(|e| bad(format!("`{name}` is not an image name: {e}")))?;
        if from.digest().is_some() {
            return Err(bad(format!(
                "`{name}` already has a digest; use the image name as written in the manifests"
            )));
        }
        let to: ImageRef = pinned
            .parse()
            .map_err(|e| bad(format!("`{pinned}` is not an image reference: {e}")))?;
        if to.digest().is_none() {
            return Err(bad(format!(
                "`{pinned}` has no digest; substitute images by `repo@sha256:...` only"
            )));
        }
        if has_explicit_tag(name) {
            self.exact.insert(from.to_string(), pinned.to_string());
        } else {
            self.by_repo.insert(from.name(), pinned.to_string());
        }
        self.entries.insert(name.to_string(), pinned.to_string());
        Ok(())
    }

    /// Builds a map from pairs; see [`ImageMap::insert`].
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<ImageMap, RenderError> {
        let mut m = ImageMap::new();
        for (name, pinned) in pairs {
            m.insert(name, pinned)?;
        }
        Ok(m)
    }

    /// The pinned reference that replaces `image`, if any.
    pub fn lookup(&self, image: &str) -> Option<&str> {
        let r: ImageRef = image.parse().ok()?;
        if r.digest().is_some() {
            return None;
        }
        self.exact
            .get(&r.to_string())
            .or_else(|| self.by_repo.get(&r.name()))
            .map(String::as_str)
    }

    /// The entries as given: name -> pinned.
    pub fn entries(&self) -> &BTreeMap<String, String> {
        &self.entries
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn has_explicit_tag(name: &str) -> bool {
    let last = name.rsplit('/').next().unwrap_or(name);
    last.contains(':')
}

/// What render does with the images of an [`ObjectSet`] (a trait because the set lives in
/// berth-objects): pin them, list them, find the unpinned ones.
pub trait ImagesExt {
    /// The image references that carry no digest ([`ImagesExt::image_references`]), each with
    /// the objects that use it, in name order: what the nodes pull by tag.
    fn unpinned_images(&self) -> Vec<Unpinned>;

    /// Replaces every container image that `images` knows with its pinned reference and reports
    /// each change (see the [module docs](crate::images) for what is walked and matched).
    fn substitute_images(&mut self, images: &ImageMap) -> Vec<ImageRewrite>;

    /// Every image reference in the set, where [`ImagesExt::substitute_images`] looks: the
    /// `image` of every container, init and ephemeral container, and in custom resources every
    /// string field named `image` (`spec.image` of many operators).
    fn image_references(&self) -> Vec<ImageUse>;

    /// Whether some image reference of the set ([`ImagesExt::image_references`]) is `pinned`:
    /// the same repository and digest (a tag beside the digest, `repo:v1@sha256:...`, is
    /// ignored by the container runtime and here).
    fn references(&self, pinned: &ImageRef) -> bool;
}

impl ImagesExt for ObjectSet {
    fn substitute_images(&mut self, images: &ImageMap) -> Vec<ImageRewrite> {
        let mut rewrites = Vec::new();
        if images.is_empty() {
            return rewrites;
        }
        self.modify_all(|o| -> Result<(), ObjectError> {
            if o.key().group == "apiextensions.k8s.io" {
                return Ok(());
            }
            let key = o.key().clone();
            let custom = !is_built_in_group(&key.group);
            o.modify(|v| {
                visit(
                    v,
                    &mut String::new(),
                    custom,
                    false,
                    &mut |pointer, image| {
                        if let Some(pinned) = images.lookup(image) {
                            rewrites.push(ImageRewrite {
                                object: key.clone(),
                                pointer: pointer.to_string(),
                                from: image.clone(),
                                to: pinned.to_string(),
                            });
                            *image = pinned.to_string();
                        }
                    },
                )
            });
            Ok(())
        })
        .expect("image substitution changes no key");
        rewrites
    }

    fn image_references(&self) -> Vec<ImageUse> {
        let mut out = Vec::new();
        for o in self.iter() {
            let key = o.key();
            if key.group == "apiextensions.k8s.io" {
                continue;
            }
            let mut v = o.value().clone();
            let custom = !is_built_in_group(&key.group);
            visit(
                &mut v,
                &mut String::new(),
                custom,
                false,
                &mut |pointer, image| {
                    out.push(ImageUse {
                        object: key.clone(),
                        pointer: pointer.to_string(),
                        image: image.clone(),
                    })
                },
            );
        }
        out
    }

    fn references(&self, pinned: &ImageRef) -> bool {
        self.image_references()
            .iter()
            .any(|u| is_same_pinned(&u.image, pinned))
    }

    fn unpinned_images(&self) -> Vec<Unpinned> {
        let mut by_image: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for u in self.image_references() {
            let pinned = u
                .image
                .parse::<ImageRef>()
                .is_ok_and(|r| r.digest().is_some());
            if !pinned {
                let objects = by_image.entry(u.image).or_default();
                let object = u.object.to_string();
                if !objects.contains(&object) {
                    objects.push(object);
                }
            }
        }
        by_image
            .into_iter()
            .map(|(image, objects)| Unpinned { image, objects })
            .collect()
    }
}

/// An image deployed by tag only (see [`ImagesExt::unpinned_images`]); its `Display` is the
/// warning: what it risks and how to pin it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unpinned {
    /// The reference as written.
    pub image: String,
    /// The objects whose containers or `image` fields name it.
    pub objects: Vec<String>,
}

impl std::fmt::Display for Unpinned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = self
            .image
            .parse::<ImageRef>()
            .map(|r| r.name())
            .unwrap_or_else(|_| self.image.clone());
        write!(
            f,
            "image `{}` ({}) is deployed by tag only: each node pulls whatever the tag points to \
             when it starts a pod, so a rebuild under the same tag is never rolled out and pods \
             may run different builds. Pin it with `--image {}={name}@sha256:<digest>` or write \
             the digest in the manifest (`berth run` pins the images it builds)",
            self.image,
            self.objects.join(", "),
            self.image
        )
    }
}

/// One image reference in a rendered object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageUse {
    /// The object.
    pub object: ObjectKey,
    /// JSON pointer of the field, e.g. `/spec/template/spec/containers/0/image`.
    pub pointer: String,
    /// The reference as rendered.
    pub image: String,
}

/// Whether `image` names `pinned`'s repository at `pinned`'s digest.
pub fn is_same_pinned(image: &str, pinned: &ImageRef) -> bool {
    image.parse::<ImageRef>().is_ok_and(|r| {
        r.digest().is_some() && r.digest() == pinned.digest() && r.name() == pinned.name()
    })
}

/// API groups of Kubernetes itself: the core group, the dot-less legacy ones (`apps`, `batch`,
/// ...) and `*.k8s.io`. A custom resource's group always has a dot.
fn is_built_in_group(group: &str) -> bool {
    !group.contains('.') || group.ends_with(".k8s.io")
}

/// Calls `f` with the JSON pointer and value of every image field: `image` strings of the
/// entries of `containers`, `initContainers` and `ephemeralContainers` lists anywhere, and with
/// `custom`, every string field named `image`.
fn visit(
    v: &mut Value,
    pointer: &mut String,
    custom: bool,
    container: bool,
    f: &mut dyn FnMut(&str, &mut String),
) {
    let len = pointer.len();
    match v {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                pointer.push('/');
                pointer.push_str(&k.replace('~', "~0").replace('/', "~1"));
                match child {
                    Value::String(image) if k == "image" && (custom || container) => {
                        f(pointer, image)
                    }
                    Value::Array(items)
                        if matches!(
                            k.as_str(),
                            "containers" | "initContainers" | "ephemeralContainers"
                        ) =>
                    {
                        let at = pointer.len();
                        for (i, c) in items.iter_mut().enumerate() {
                            pointer.push_str(&format!("/{i}"));
                            visit(c, pointer, custom, true, f);
                            pointer.truncate(at);
                        }
                    }
                    _ => visit(child, pointer, custom, false, f),
                }
                pointer.truncate(len);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter_mut().enumerate() {
                pointer.push_str(&format!("/{i}"));
                visit(child, pointer, custom, false, f);
                pointer.truncate(len);
            }
        }
        _ => {}
    }
}

/// Which chart values compose an image (each a dotted path into the chart's values), as
/// `helm.image-values` maps them or [`ImageValuePaths::detect`] finds them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageValuePaths {
    /// The whole reference.
    pub image: Option<String>,
    /// The registry host.
    pub registry: Option<String>,
    /// The repository: with `registry`, the path on the host; without, host and path.
    pub repository: Option<String>,
    /// The tag.
    pub tag: Option<String>,
    /// The digest.
    pub digest: Option<String>,
}

/// The tag berth gives a Helm chart that composes `repository:tag` (`pinned@sha256:...`): the
/// same for every digest, so that a service whose digest did not change renders the same pod
/// template (no restart); container runtimes pull by the digest and ignore it.
pub const HELM_TAG: &str = "pinned";

impl ImageValuePaths {
    /// The common layouts of a chart's values.yaml: `image.repository`/`image.tag` (with
    /// `image.registry` and `image.digest` where present), else top-level
    /// `repository`/`tag` (with `registry`, `digest`). `None` when neither is there.
    pub fn detect(values: &Value) -> Option<ImageValuePaths> {
        let from = |m: &serde_json::Map<String, Value>, prefix: &str| {
            let path = |k: &str| m.contains_key(k).then(|| format!("{prefix}{k}"));
            m.get("repository")
                .is_some_and(|r| r.is_string() || r.is_null())
                .then(|| ImageValuePaths {
                    image: None,
                    registry: path("registry"),
                    repository: path("repository"),
                    tag: path("tag"),
                    digest: path("digest"),
                })
        };
        let top = values.as_object()?;
        if let Some(Value::Object(image)) = top.get("image")
            && let Some(found) = from(image, "image.")
        {
            return Some(found);
        }
        from(top, "")
    }

    /// The `--set` overrides that make the chart compose `pinned` (`repo@sha256:...`). With
    /// `digest` mapped the tag is left alone (charts that have a digest value use it instead
    /// of the tag); otherwise the tag becomes `pinned@sha256:...` ([`HELM_TAG`]).
    pub fn overrides(&self, pinned: &ImageRef) -> Vec<String> {
        let Some(digest) = pinned.digest() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        if let Some(p) = &self.image {
            out.push(format!("{p}={}@{digest}", pinned.name()));
        }
        match (&self.registry, &self.repository) {
            (Some(reg), Some(repo)) => {
                out.push(format!("{reg}={}", pinned.registry()));
                out.push(format!("{repo}={}", pinned.repository()));
            }
            (None, Some(repo)) => out.push(format!("{repo}={}", pinned.name())),
            (Some(reg), None) => out.push(format!("{reg}={}", pinned.registry())),
            (None, None) => {}
        }
        match (&self.digest, &self.tag) {
            (Some(d), _) => out.push(format!("{d}={digest}")),
            (None, Some(t)) => out.push(format!("{t}={HELM_TAG}@{digest}")),
            (None, None) => {}
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Object, Source};
    use serde_json::json;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn set(docs: Vec<Value>) -> ObjectSet {
        let mut s = ObjectSet::new();
        for d in docs {
            let src = Source {
                origin: "t".into(),
                line: 1,
            };
            s.insert(Object::new(d, src).unwrap()).unwrap();
        }
        s
    }

    /// `m` finds `pinned` for each spelling of `same` and nothing for each of `other`.
    fn assert_lookups(m: &ImageMap, pinned: &str, same: &[&str], other: &[&str]) {
        for same in same {
            assert_eq!(m.lookup(same), Some(pinned), "{same}");
        }
        for other in other {
            assert_eq!(m.lookup(other), None, "{other}");
        }
    }

    #[test]
    fn normalises_docker_references() {
        let pinned = format!("registry.local/web@{D}");
        let m = ImageMap::from_pairs([("nginx", pinned.as_str())]).unwrap();
        assert_lookups(
            &m,
            &pinned,
            &[
                "nginx",
                "nginx:latest",
                "nginx:1.27",
                "docker.io/library/nginx",
                "index.docker.io/library/nginx:latest",
            ],
            &["nginxinc/nginx", "ghcr.io/nginx", &format!("nginx@{D}")],
        );
    }

    #[test]
    fn tagged_entries_match_only_their_tag_and_win() {
        let a = format!("r.io/a@{D}");
        let b = format!("r.io/b@{D}");
        let m = ImageMap::from_pairs([
            ("docker.io/library/web:latest", a.as_str()),
            ("web", b.as_str()),
        ])
        .unwrap();
        assert_eq!(m.lookup("web"), Some(a.as_str()));
        assert_eq!(m.lookup("web:v2"), Some(b.as_str()));
    }

    #[test]
    fn entries_must_be_pinned_names() {
        let e = ImageMap::from_pairs([("web", "web:v1")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("has no digest"), "{e}");
        let pinned = format!("web@{D}");
        let e = ImageMap::from_pairs([(pinned.as_str(), pinned.as_str())])
            .unwrap_err()
            .to_string();
        assert!(e.contains("already has a digest"), "{e}");
    }

    #[test]
    fn rewrites_every_container_list_of_every_workload_shape() {
        let pinned = format!("127.0.0.1:5000/shop/home@{D}");
        let m = ImageMap::from_pairs([("home", pinned.as_str())]).unwrap();
        let pod_spec = json!({
            "initContainers": [{"name": "init", "image": "home:dev"}],
            "containers": [{"name": "app", "image": "home"}, {"name": "side", "image": "busybox"}],
            "ephemeralContainers": [{"name": "dbg", "image": "docker.io/library/home:latest"}]
        });
        let mut s = set(vec![
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": pod_spec}),
            json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c"},
                "spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "home"}]}}}}}}),
            json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "metadata": {"name": "r"},
                "spec": {"template": {"spec": {"containers": [{"name": "a", "image": "home"}]}}}}),
            json!({"apiVersion": "serving.knative.dev/v1", "kind": "Service", "metadata": {"name": "k"},
                "spec": {"template": {"spec": {"containers": [{"image": "home"}]}}}}),
            json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": "x"},
                "spec": {"containers": [{"image": "home"}]}}),
        ]);
        let rewrites = s.substitute_images(&m);
        let shown: Vec<String> = rewrites
            .iter()
            .map(|r| format!("{} {} {}", r.object, r.pointer, r.from))
            .collect();
        insta::assert_snapshot!(shown.join("\n"), @r"
        Pod p /spec/containers/0/image home
        Pod p /spec/ephemeralContainers/0/image docker.io/library/home:latest
        Pod p /spec/initContainers/0/image home:dev
        CronJob.batch c /spec/jobTemplate/spec/template/spec/containers/0/image home
        Rollout.argoproj.io r /spec/template/spec/containers/0/image home
        Service.serving.knative.dev k /spec/template/spec/containers/0/image home
        ");
        let pod = s.iter().next().unwrap().value();
        assert_eq!(pod["spec"]["containers"][0]["image"], json!(pinned));
        assert_eq!(pod["spec"]["containers"][1]["image"], json!("busybox"));
        let crd = s.iter().last().unwrap().value();
        assert_eq!(crd["spec"]["containers"][0]["image"], json!("home"));
    }

    #[test]
    fn manifest_name_without_registry_matches_every_spelling_of_it() {
        let pinned = format!("127.0.0.1:15000/shop/team/web@{D}");
        let m = ImageMap::from_pairs([("team/web", pinned.as_str())]).unwrap();
        assert_lookups(
            &m,
            &pinned,
            &[
                "team/web",
                "team/web:latest",
                "team/web:v1.2",
                "docker.io/team/web:dev",
                "index.docker.io/team/web",
            ],
            &[
                "other/web",
                "team/web2",
                "ghcr.io/team/web",
                "127.0.0.1:15000/team/web",
                &format!("team/web@{D}"),
            ],
        );
        let one = ImageMap::from_pairs([("web", pinned.as_str())]).unwrap();
        assert_lookups(
            &one,
            &pinned,
            &["web:1", "library/web", "docker.io/library/web:2"],
            &[],
        );
    }

    #[test]
    fn custom_resources_image_fields_are_pinned_but_not_built_in_kinds_strings() {
        let pinned = format!("127.0.0.1:15000/shop/team/web@{D}");
        let m = ImageMap::from_pairs([("team/web", pinned.as_str())]).unwrap();
        let mut s = set(vec![
            json!({"apiVersion": "example.com/v1", "kind": "App", "metadata": {"name": "a"},
                "spec": {"image": "team/web:v1", "sidecar": {"image": "busybox"},
                         "versions": [{"image": "docker.io/team/web"}], "imageName": "team/web"}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
                "data": {"image": "team/web"}}),
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
                "spec": {"image": "team/web", "template": {"spec": {
                    "containers": [{"name": "w", "image": "team/web:dev"}]}}}}),
        ]);
        let rewrites = s.substitute_images(&m);
        let shown: Vec<String> = rewrites
            .iter()
            .map(|r| format!("{} {} {}", r.object, r.pointer, r.from))
            .collect();
        insta::assert_snapshot!(shown.join("\n"), @r"
        App.example.com a /spec/image team/web:v1
        App.example.com a /spec/versions/0/image docker.io/team/web
        Deployment.apps d /spec/template/spec/containers/0/image team/web:dev
        ");
        let refs: Vec<String> = s
            .image_references()
            .iter()
            .map(|u| format!("{} {} {}", u.object, u.pointer, u.image))
            .collect();
        assert_eq!(refs.len(), 4, "{refs:#?}");
        assert!(
            refs[1].ends_with("/spec/sidecar/image busybox"),
            "{refs:#?}"
        );
        let want: ImageRef = pinned.parse().unwrap();
        assert!(s.references(&want));
        let other: ImageRef = format!("127.0.0.1:15000/shop/other@{D}").parse().unwrap();
        assert!(!s.references(&other));
    }

    #[test]
    fn a_tag_beside_the_digest_still_references_the_pinned_image() {
        let want: ImageRef = format!("r.io/shop/web@{D}").parse().unwrap();
        assert!(is_same_pinned(&format!("r.io/shop/web:pinned@{D}"), &want));
        assert!(!is_same_pinned("r.io/shop/web:pinned", &want));
        let other = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
        assert!(!is_same_pinned(&format!("r.io/shop/web@{other}"), &want));
    }

    #[test]
    fn helm_image_layouts_are_detected_and_set_to_the_digest() {
        let pinned: ImageRef = format!("127.0.0.1:15000/shop/web@{D}").parse().unwrap();
        let nested =
            ImageValuePaths::detect(&json!({"image": {"repository": "nginx", "tag": ""}})).unwrap();
        assert_eq!(
            nested.overrides(&pinned),
            [
                "image.repository=127.0.0.1:15000/shop/web".to_string(),
                format!("image.tag=pinned@{D}")
            ]
        );
        let registry = ImageValuePaths::detect(&json!({"image": {
            "registry": "docker.io", "repository": "team/web", "tag": "1", "pullPolicy": "Always"}}))
        .unwrap();
        assert_eq!(
            registry.overrides(&pinned),
            [
                "image.registry=127.0.0.1:15000".to_string(),
                "image.repository=shop/web".to_string(),
                format!("image.tag=pinned@{D}")
            ]
        );
        let digest = ImageValuePaths::detect(&json!({"image": {
            "repository": "team/web", "tag": "1", "digest": ""}}))
        .unwrap();
        assert_eq!(
            digest.overrides(&pinned),
            [
                "image.repository=127.0.0.1:15000/shop/web".to_string(),
                format!("image.digest={D}")
            ]
        );
        let top = ImageValuePaths::detect(&json!({"registry": "r", "repository": "w", "tag": "t"}))
            .unwrap();
        assert_eq!(
            top.overrides(&pinned),
            [
                "registry=127.0.0.1:15000".to_string(),
                "repository=shop/web".to_string(),
                format!("tag=pinned@{D}")
            ]
        );
        for none in [
            json!({"image": "team/web"}),
            json!({"replicas": 2}),
            json!({"image": {"name": "x"}}),
        ] {
            assert_eq!(ImageValuePaths::detect(&none), None, "{none}");
        }
        let whole = ImageValuePaths {
            image: Some("app.image".into()),
            ..ImageValuePaths::default()
        };
        assert_eq!(
            whole.overrides(&pinned),
            [format!("app.image=127.0.0.1:15000/shop/web@{D}")]
        );
    }

    #[test]
    fn images_deployed_by_tag_only_are_listed_with_their_objects_and_how_to_pin_them() {
        let s = set(vec![
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
                "spec": {"template": {"spec": {"containers": [
                    {"name": "a", "image": "docker.io/library/busybox:latest"},
                    {"name": "b", "image": format!("r.io/web@{D}")},
                    {"name": "c", "image": "docker.io/library/busybox:latest"}]}}}}),
            json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"},
                "spec": {"template": {"spec": {"containers": [{"name": "a", "image": "busybox"},
                    {"name": "b", "image": "docker.io/library/busybox:latest"}]}}}}),
        ]);
        let unpinned = s.unpinned_images();
        let shown: Vec<String> = unpinned
            .iter()
            .map(|u| format!("{} <- {}", u.image, u.objects.join(", ")))
            .collect();
        assert_eq!(
            shown,
            [
                "busybox <- Job.batch j",
                "docker.io/library/busybox:latest <- Deployment.apps d, Job.batch j"
            ]
        );
        let text = unpinned[1].to_string();
        assert!(
            text.contains("is deployed by tag only")
                && text.contains("`--image docker.io/library/busybox:latest=docker.io/library/busybox@sha256:<digest>`"),
            "{text}"
        );
    }
}
