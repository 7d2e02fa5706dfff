//! Image substitution: point every container at the image berth built, by digest.
//!
//! The walk is generic rather than a table of kinds: in any object, every sequence under a key
//! named `containers`, `initContainers` or `ephemeralContainers` is a list of containers, and
//! their `image` fields are candidates. That covers Pod, Deployment, StatefulSet, DaemonSet,
//! ReplicaSet, Job, CronJob (`spec.jobTemplate.spec.template`), Argo Rollouts
//! (`spec.template`), Knative Services (`spec.template.spec.containers`) and most operators'
//! custom resources without knowing them. `CustomResourceDefinition`s are skipped: their schemas
//! describe `containers` fields but hold no images.
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

/// One image reference that [`ObjectSet::substitute_images`] changed.
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

impl ObjectSet {
    /// Replaces every container image that `images` knows with its pinned reference and reports
    /// each change (see the [module docs](crate::images) for what is walked and matched).
    pub fn substitute_images(&mut self, images: &ImageMap) -> Vec<ImageRewrite> {
        let mut rewrites = Vec::new();
        if images.is_empty() {
            return rewrites;
        }
        self.modify_all(|o| {
            if o.key().group == "apiextensions.k8s.io" {
                return Ok(());
            }
            let key = o.key().clone();
            o.modify(|v| walk(v, &mut String::new(), images, &key, &mut rewrites));
            Ok(())
        })
        .expect("image substitution changes no key");
        rewrites
    }
}

fn walk(
    v: &mut Value,
    pointer: &mut String,
    images: &ImageMap,
    key: &ObjectKey,
    out: &mut Vec<ImageRewrite>,
) {
    let len = pointer.len();
    match v {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                pointer.push('/');
                pointer.push_str(&k.replace('~', "~0").replace('/', "~1"));
                if matches!(
                    k.as_str(),
                    "containers" | "initContainers" | "ephemeralContainers"
                ) && let Value::Array(containers) = child
                {
                    rewrite_containers(containers, pointer, images, key, out);
                }
                walk(child, pointer, images, key, out);
                pointer.truncate(len);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter_mut().enumerate() {
                pointer.push_str(&format!("/{i}"));
                walk(child, pointer, images, key, out);
                pointer.truncate(len);
            }
        }
        _ => {}
    }
}

fn rewrite_containers(
    containers: &mut [Value],
    pointer: &str,
    images: &ImageMap,
    key: &ObjectKey,
    out: &mut Vec<ImageRewrite>,
) {
    for (i, c) in containers.iter_mut().enumerate() {
        let Some(Value::String(image)) = c.get_mut("image") else {
            continue;
        };
        if let Some(pinned) = images.lookup(image) {
            out.push(ImageRewrite {
                object: key.clone(),
                pointer: format!("{pointer}/{i}/image"),
                from: image.clone(),
                to: pinned.to_string(),
            });
            *image = pinned.to_string();
        }
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

    #[test]
    fn normalises_docker_references() {
        let pinned = format!("registry.local/web@{D}");
        let m = ImageMap::from_pairs([("nginx", pinned.as_str())]).unwrap();
        for same in [
            "nginx",
            "nginx:latest",
            "nginx:1.27",
            "docker.io/library/nginx",
            "index.docker.io/library/nginx:latest",
        ] {
            assert_eq!(m.lookup(same), Some(pinned.as_str()), "{same}");
        }
        for other in ["nginxinc/nginx", "ghcr.io/nginx", &format!("nginx@{D}")] {
            assert_eq!(m.lookup(other), None, "{other}");
        }
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
}
