//! Templates as teams write them (issue 14): values that use berth's variables, and rendered
//! output that is not YAML. Only the crate's long-standing API is used here, so these tests
//! also run (and fail) against the code before the fix.

use std::path::{Path, PathBuf};

use berth_render::RenderContext;
use berth_render::template::load_template;
use serde_json::json;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, text).unwrap();
    p
}

const DEPLOYMENT: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {{ name }}\nspec:\n  template:\n    spec:\n      containers:\n        - name: app\n          image: {{ image_ref }}\n";

#[test]
fn values_referencing_berth_variables_are_rendered_before_templates_see_them() {
    let d = tempfile::tempdir().unwrap();
    let p = write(d.path(), "deployment.yaml.j2", DEPLOYMENT);
    let image = "127.0.0.1:15000/shop/web@sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";
    let ctx = RenderContext::new(json!({
        "image_ref": "{{ image }}",
        "name": "{{ service }}-web",
        "labels": {"ns": "{{ env.namespace }}", "plain": "{not a template}"},
    }))
    .with_service("shop", image)
    .with_env("dev", "shop-dev");
    let objects = load_template(&p, &ctx).unwrap();
    let o = objects[0].value();
    assert_eq!(o["metadata"]["name"], "shop-web");
    assert_eq!(
        o["spec"]["template"]["spec"]["containers"][0]["image"],
        image
    );
    let text = berth_render::template::render_template(
        &write(d.path(), "l.yaml.j2", "{{ labels | tojson }}"),
        &ctx,
    )
    .unwrap();
    assert_eq!(text, r#"{"ns": "shop-dev", "plain": "{not a template}"}"#);
}

#[test]
fn an_undefined_variable_in_a_value_is_an_error_naming_the_value_not_left_as_text() {
    let d = tempfile::tempdir().unwrap();
    let p = write(d.path(), "deployment.yaml.j2", DEPLOYMENT);
    let ctx = RenderContext::new(json!({"image_ref": "{{ image_id }}", "name": "web"}))
        .with_service("web", "r.example.com/web@sha256:00");
    let e = load_template(&p, &ctx).unwrap_err().to_string();
    assert!(
        e.contains("value `image_ref`") && e.contains("undefined") && e.contains("{{ image_id }}"),
        "{e}"
    );
}

#[test]
fn a_rendered_template_that_is_not_yaml_names_the_template_and_the_rendered_line() {
    let d = tempfile::tempdir().unwrap();
    let p = write(
        d.path(),
        "roles/web/templates/job.yaml.j2",
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: {{ service }}\n  command: {{ cmd }}\n",
    );
    let ctx = RenderContext::new(json!({"cmd": "echo ready: yes"})).with_service_name("web");
    let e = load_template(&p, &ctx).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!(
            "{}: the rendered template is not YAML",
            p.display()
        )),
        "{e}"
    );
    assert!(
        e.contains("(line 5, column") && e.contains("  5 |   command: echo ready: yes"),
        "{e}"
    );
}

#[test]
fn a_templated_value_cannot_include_a_file() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "secret.txt", "SECRET-FILE\n");
    let p = write(d.path(), "cm.yaml.j2", "x: {{ stolen }}\n");
    for value in ["{% include 'secret.txt' %}", "{% include '/etc/passwd' %}"] {
        let ctx = RenderContext::new(json!({"stolen": value})).with_root(d.path());
        let e = berth_render::template::render_template(&p, &ctx)
            .unwrap_err()
            .to_string();
        assert!(e.contains("value `stolen`"), "{e}");
        assert!(!e.contains("SECRET-FILE") && !e.contains("root:"), "{e}");
    }
}
