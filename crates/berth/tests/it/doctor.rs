//! `berth doctor` against the real environment, and against a registry that stops.

use berth_testkit::{OwnRegistry, TestEnv};
use serde_json::Value;

fn doctor(args: &[&str], registry: Option<&str>) -> (i32, String) {
    let env = TestEnv::get();
    let mut cmd = env.berth(env!("CARGO_BIN_EXE_berth").as_ref());
    cmd.arg("doctor").args(args);
    if let Some(r) = registry {
        cmd.env("BERTH_REGISTRY", r)
            .env("BERTH_INSECURE_REGISTRIES", r);
    }
    cmd.env("BERTH_DOCKER_CONFIG", "/nonexistent/berth-test/config.json");
    let out = cmd.output().expect("run berth doctor");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

fn check<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {name} check in {doc}"))
}

#[test]
fn doctor_passes_against_the_test_environment() {
    let (code, out) = doctor(&["--output", "json", "--namespace", "default"], None);
    assert_eq!(code, 0, "{out}");
    let doc: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(doc["ok"], true);
    for name in [
        "kube",
        "rbac",
        "registry",
        "oci-runtime",
        "slirp4netns",
        "qemu-user",
        "git",
        "kustomize",
        "helm",
    ] {
        assert_eq!(
            check(&doc, name)["status"],
            "ok",
            "{name}: {}",
            check(&doc, name)
        );
    }
    assert!(
        check(&doc, "kube")["detail"]
            .as_str()
            .unwrap()
            .contains("v1.33."),
        "{out}"
    );
    assert!(
        check(&doc, "kustomize")["detail"]
            .as_str()
            .unwrap()
            .contains("v5."),
        "{out}"
    );
}

#[test]
fn doctor_table_has_a_verdict_per_line() {
    let (code, out) = doctor(&["--namespace", "default"], None);
    assert_eq!(code, 0, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("CHECK"), "{out}");
    for name in [
        "kube",
        "rbac",
        "registry",
        "oci-runtime",
        "kustomize",
        "helm",
    ] {
        let line = lines
            .iter()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} row: {out}"));
        assert!(line.split_whitespace().nth(1) == Some("ok"), "{line}");
    }
    assert!(out.contains("verdict: ready"), "{out}");
}

#[test]
fn doctor_fails_with_a_clear_line_when_the_registry_is_stopped() {
    let mut registry = OwnRegistry::start();
    let (code, out) = doctor(&["--output", "json"], Some(&registry.host));
    assert_eq!(code, 0, "registry up: {out}");

    registry.stop();
    let (code, out) = doctor(&["--output", "json"], Some(&registry.host));
    assert_eq!(code, 1, "{out}");
    let doc: Value = serde_json::from_str(&out).unwrap();
    let reg = check(&doc, "registry");
    assert_eq!(reg["status"], "fail");
    let detail = reg["detail"].as_str().unwrap();
    assert!(
        detail.contains(&registry.host) && detail.contains("not reachable"),
        "{detail}"
    );
    assert_eq!(
        check(&doc, "kube")["status"],
        "ok",
        "only the registry line fails"
    );

    let (code, table) = doctor(&[], Some(&registry.host));
    assert_eq!(code, 1);
    assert!(
        table.contains("verdict: NOT ready — failed: registry"),
        "{table}"
    );
}

#[test]
fn doctor_fails_clearly_without_a_cluster() {
    let env = TestEnv::get();
    let mut cmd = env.berth(env!("CARGO_BIN_EXE_berth").as_ref());
    let out = cmd
        .args([
            "doctor",
            "--output",
            "json",
            "--kubeconfig",
            "/nonexistent/kubeconfig",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(check(&doc, "kube")["status"], "fail");
    assert!(
        check(&doc, "kube")["hint"]
            .as_str()
            .unwrap()
            .contains("KUBECONFIG")
    );
}

#[test]
fn version_and_help() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("--version")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("berth {}", env!("CARGO_PKG_VERSION"))
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("doctor"));
}
