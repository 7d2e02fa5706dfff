//! The plan as berth.yaml text, with what init could not decide as comments where they apply.

use super::{InitPlan, ManifestsPlan, ServicePlan};

/// A scalar as YAML: plain when that reads back as the same string, else double-quoted (a JSON
/// string is a valid YAML double-quoted scalar).
fn scalar(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._/-:@".contains(c))
        && !s.starts_with(['-', ':', '@', '.'])
        || s == "."
        || s.starts_with("./");
    let special = matches!(
        s.to_ascii_lowercase().as_str(),
        "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "~" | "y" | "n"
    ) || s.parse::<f64>().is_ok()
        || s.ends_with(':')
        || s.contains(": ");
    if plain && !special {
        s.to_string()
    } else {
        serde_json::Value::String(s.to_string()).to_string()
    }
}

fn list(items: &[String]) -> String {
    format!(
        "[{}]",
        items
            .iter()
            .map(|s| scalar(s))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn comment(out: &mut String, indent: &str, text: &str) {
    for line in text.lines() {
        out.push_str(&format!("{indent}# {line}\n"));
    }
}

fn service(out: &mut String, s: &ServicePlan) {
    match &s.discover {
        Some(pattern) => out.push_str(&format!("  - discover: {}\n", scalar(pattern))),
        None => out.push_str(&format!("  - name: {}\n", scalar(&s.name))),
    }
    for c in &s.comments {
        comment(out, "    ", c);
    }
    if let Some(b) = &s.build {
        out.push_str("    build:\n");
        out.push_str(&format!("      context: {}\n", scalar(&b.context)));
        if let Some(d) = &b.dockerfile {
            out.push_str(&format!("      dockerfile: {}\n", scalar(d)));
        }
        if let Some(t) = &b.target {
            out.push_str(&format!("      target: {}\n", scalar(t)));
        }
        if !b.args.is_empty() {
            out.push_str("      args:\n");
            for (k, v) in &b.args {
                out.push_str(&format!(
                    "        {}: {}\n",
                    scalar(k),
                    serde_json::Value::String(v.clone())
                ));
            }
        }
    }
    if let Some(i) = &s.image {
        out.push_str(&format!("    image: {}\n", scalar(i)));
    }
    if !s.paths.is_empty() {
        out.push_str(&format!("    paths: {}\n", list(&s.paths)));
    }
    let Some(m) = &s.manifests else { return };
    out.push_str("    manifests:\n");
    match m {
        ManifestsPlan::Path(p) => out.push_str(&format!("      path: {}\n", list(p))),
        ManifestsPlan::Kustomize(k) => out.push_str(&format!("      kustomize: {}\n", scalar(k))),
        ManifestsPlan::Template {
            globs,
            vars,
            values,
        } => {
            out.push_str(&format!("      template: {}\n", list(globs)));
            if !vars.is_empty() {
                out.push_str(&format!(
                    "      vars: {{{}}}\n",
                    vars.iter()
                        .map(|(k, v)| format!("{}: {}", scalar(k), scalar(v)))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            if !values.is_empty() {
                out.push_str("      values:\n");
                for (k, v) in values {
                    out.push_str(&format!("        {}: {v}\n", scalar(k)));
                }
            }
        }
        ManifestsPlan::Helm(h) => {
            out.push_str("      helm:\n");
            out.push_str(&format!("        chart: {}\n", scalar(&h.chart)));
            if let Some(r) = &h.release {
                out.push_str(&format!("        release: {}\n", scalar(r)));
            }
            if !h.values.is_empty() {
                out.push_str(&format!("        values: {}\n", list(&h.values)));
            }
            if !h.set.is_empty() {
                out.push_str(&format!("        set: {}\n", list(&h.set)));
            }
            if !h.image_values.is_empty() {
                out.push_str(&format!(
                    "        image-values: {{{}}}\n",
                    h.image_values
                        .iter()
                        .map(|(k, v)| format!("{}: {}", scalar(k), scalar(v)))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
    }
}

pub(super) fn yaml(plan: &InitPlan) -> String {
    let mut out = String::new();
    let from = if plan.read.is_empty() {
        String::new()
    } else {
        format!(" from {}", plan.read.join(", "))
    };
    out.push_str(&format!(
        "# Written by `berth init`{from}; every choice is explained in its output. Check it, then\n# `berth run`.\n"
    ));
    for c in &plan.comments {
        comment(&mut out, "", c);
    }
    out.push_str(&format!(
        "registry:\n  prefix: {}\n",
        scalar(&plan.registry_prefix)
    ));
    if let Some(host) = plan.registry_prefix.split('/').next()
        && (host.starts_with("127.") || host.starts_with("localhost"))
    {
        out.push_str(&format!(
            "  # a loopback registry speaks plain HTTP\n  insecure: [{}]\n",
            scalar(host)
        ));
    }
    out.push_str("services:\n");
    for s in &plan.services {
        service(&mut out, s);
    }
    out.push_str(&format!(
        "environments:\n  - name: dev\n    namespace: {}\n",
        scalar(&plan.namespace)
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::scalar;

    #[test]
    fn scalars_that_yaml_would_read_otherwise_are_quoted() {
        assert_eq!(scalar("team/web"), "team/web");
        assert_eq!(scalar("127.0.0.1:15000/shop"), "127.0.0.1:15000/shop");
        assert_eq!(scalar("k8s/*.yml"), "\"k8s/*.yml\"");
        assert_eq!(scalar("{service}/x"), "\"{service}/x\"");
        assert_eq!(scalar("yes"), "\"yes\"");
        assert_eq!(scalar("1.0"), "\"1.0\"");
        assert_eq!(scalar("."), ".");
    }
}
