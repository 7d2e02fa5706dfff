//! docker-compose.yml / compose.yaml: each service with a `build` becomes a service, with the
//! build exactly as compose runs it (context, dockerfile relative to it, target, args) and its
//! `image:`, the name compose tags the build with — which is the name the manifests use.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{BuildPlan, InitError, Planner, ServicePlan, Svc, clean, scan, slug};

const FILES: &[&str] = &[
    "compose.yaml",
    "compose.yml",
    "docker-compose.yml",
    "docker-compose.yaml",
];

pub(super) fn read(p: &mut Planner<'_>) -> Result<(), InitError> {
    let Some(name) = FILES.iter().find(|f| p.root.join(f).is_file()) else {
        return Ok(());
    };
    let path = p.root.join(name);
    let text = p.read_text(&path)?;
    let doc: Value = serde_saphyr::from_str(&text).map_err(|e| InitError::Read {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    p.read.push(name.to_string());
    let Some(services) = doc.get("services").and_then(Value::as_object) else {
        return Ok(());
    };
    for (key, svc) in services {
        let subject = format!("service {}", slug(key));
        let Some(build) = svc.get("build") else {
            if let Some(image) = svc.get("image").and_then(Value::as_str) {
                p.choose(
                    format!("compose service {key}"),
                    "not a berth service",
                    format!(
                        "{name} runs the image {image} without building it; berth deploys what \
                         your Kubernetes manifests say about it"
                    ),
                );
            }
            continue;
        };
        let mut plan = BuildPlan::default();
        match build {
            Value::String(ctx) => plan.context = clean(ctx),
            Value::Object(b) => {
                plan.context = clean(b.get("context").and_then(Value::as_str).unwrap_or("."));
                plan.dockerfile = b
                    .get("dockerfile")
                    .and_then(Value::as_str)
                    .map(|d| d.trim_start_matches("./").to_string());
                plan.target = b.get("target").and_then(Value::as_str).map(String::from);
                plan.args = args(b.get("args"));
                if let Some(ps) = b.get("platforms").and_then(Value::as_array) {
                    plan.platforms = ps
                        .iter()
                        .filter_map(Value::as_str)
                        .map(String::from)
                        .collect();
                }
            }
            _ => continue,
        }
        if !super::inside(p.root, &p.root.join(&plan.context)) {
            p.comments.push(format!(
                "{name} builds {key} from {}, outside the repository (or missing): berth \
                 builds only inside the repository, so it is not a service here",
                plan.context
            ));
            continue;
        }
        let image = svc.get("image").and_then(Value::as_str).map(String::from);
        let service = slug(key);
        let mut how = format!("{name}: build.context {}", plan.context);
        if let Some(d) = &plan.dockerfile {
            how.push_str(&format!(", dockerfile {d}"));
        }
        if let Some(t) = &plan.target {
            how.push_str(&format!(", target {t}"));
        }
        p.choose(
            &subject,
            format!(
                "build context {}{}",
                plan.context,
                plan.dockerfile
                    .as_deref()
                    .map(|d| format!(", dockerfile {d}"))
                    .unwrap_or_default()
            ),
            how,
        );
        let mut comments = Vec::new();
        let dockerfile = p
            .root
            .join(&plan.context)
            .join(plan.dockerfile.as_deref().unwrap_or("Dockerfile"));
        if let Some(missing) = scan::missing_sources(p.root, &dockerfile, &plan.context) {
            comments.push(format!(
                "{name} builds from {}, where {missing} does not exist: check the context",
                plan.context
            ));
        }
        if let Some(ports) = svc.get("ports").and_then(Value::as_array) {
            let ports: Vec<String> = ports
                .iter()
                .map(|v| match v {
                    Value::Object(m) => format!(
                        "{}:{}",
                        m.get("published").map(plain).unwrap_or_default(),
                        m.get("target").map(plain).unwrap_or_default()
                    ),
                    other => plain(other),
                })
                .collect();
            p.choose(
                &subject,
                format!("ports {}", ports.join(", ")),
                format!(
                    "{name} publishes them; in Kubernetes the Service of your manifests does (berth changes no port)"
                ),
            );
        }
        let home = if plan.context == "." {
            plan.dockerfile
                .as_deref()
                .and_then(|d| std::path::Path::new(d).parent())
                .map(|d| clean(&d.to_string_lossy()))
                .unwrap_or_else(|| ".".into())
        } else {
            plan.context.clone()
        };
        p.services.push(Svc {
            plan: ServicePlan {
                name: service,
                discover: None,
                build: Some(plan),
                image: None,
                paths: Vec::new(),
                manifests: None,
                comments,
            },
            home,
            named: image.map(|i| (i, format!("{name} tags the build {key} with it"))),
        });
    }
    Ok(())
}

fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `args:` as a map or a `K=V` list.
fn args(v: Option<&Value>) -> BTreeMap<String, String> {
    match v {
        Some(Value::Object(m)) => m.iter().map(|(k, v)| (k.clone(), plain(v))).collect(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        _ => BTreeMap::new(),
    }
}
