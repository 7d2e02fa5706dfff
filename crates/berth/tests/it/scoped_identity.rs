//! berth with the identity most teams give their CI: a ServiceAccount that owns one namespace
//! (a Role with every verb on every resource there) and may neither read nor create
//! namespaces. The token comes from the real API server's TokenRequest (`kubectl create token`).

use std::path::{Path, PathBuf};
use std::process::Command;

use berth_testkit::{TestContext, unique_suffix};
use serde_json::Value;

use crate::common::{Dir, berth, deployment_yaml};

fn kubectl(ctx: &TestContext, args: &[&str], stdin: Option<&str>) -> String {
    use std::io::Write;
    let mut cmd = Command::new(ctx.env.bin_dir().join("kubectl"));
    cmd.arg("--kubeconfig")
        .arg(ctx.env.kubeconfig())
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("kubectl");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A kubeconfig for ServiceAccount `ci` of the test's namespace, owner of that namespace only.
fn namespace_owner(ctx: &TestContext, dir: &Path) -> PathBuf {
    let ns = &ctx.namespace;
    kubectl(
        ctx,
        &["apply", "-f", "-"],
        Some(&format!(
            "apiVersion: v1
kind: ServiceAccount
metadata: {{name: ci, namespace: {ns}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: owner, namespace: {ns}}}
rules:
- apiGroups: ['*']
  resources: ['*']
  verbs: ['*']
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: ci-owner, namespace: {ns}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: owner}}
subjects:
- {{kind: ServiceAccount, name: ci, namespace: {ns}}}
"
        )),
    );
    let token = kubectl(
        ctx,
        &["create", "token", "ci", "-n", ns, "--duration", "1h"],
        None,
    );
    let view: Value = serde_json::from_str(&kubectl(
        ctx,
        &[
            "config",
            "view",
            "--raw",
            "--minify",
            "--flatten",
            "-o",
            "json",
        ],
        None,
    ))
    .unwrap();
    let cluster = &view["clusters"][0]["cluster"];
    let file = dir.join("ci.kubeconfig");
    std::fs::write(
        &file,
        serde_json::to_string(&serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "c", "cluster": {
                "server": cluster["server"],
                "certificate-authority-data": cluster["certificate-authority-data"],
            }}],
            "users": [{"name": "ci", "user": {"token": token.trim()}}],
            "contexts": [{"name": "ci", "context": {"cluster": "c", "user": "ci", "namespace": ns}}],
            "current-context": "ci",
        }))
        .unwrap(),
    )
    .unwrap();
    file
}

struct Ran {
    code: i32,
    out: String,
}

fn as_ci(ctx: &TestContext, kubeconfig: &Path, namespace: &str, args: &[&str]) -> Ran {
    let out = berth(ctx.env)
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env_remove("BERTH_CONTEXT")
        .env("BERTH_NAMESPACE", namespace)
        .output()
        .unwrap();
    Ran {
        code: out.status.code().unwrap_or(-1),
        out: String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr),
    }
}

fn rbac_check(ran: &Ran) -> Value {
    let doc: Value = serde_json::from_str(ran.out.lines().next().unwrap_or(""))
        .or_else(|_| serde_json::from_str(&ran.out))
        .unwrap_or_else(|e| panic!("{e}: {}", ran.out));
    doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "rbac")
        .cloned()
        .unwrap_or_else(|| panic!("no rbac check: {}", ran.out))
}

#[tokio::test]
async fn a_namespace_owner_deploys_there_and_is_told_it_cannot_make_another_namespace() {
    let ctx = TestContext::new("scoped").await;
    let dir = Dir::new();
    let kubeconfig = namespace_owner(&ctx, Path::new(&dir.path()));
    dir.write(
        "web.yaml",
        &deployment_yaml("web", "docker.io/library/busybox:latest", 1, None),
    );
    let files = dir.path();

    let first = as_ci(
        &ctx,
        &kubeconfig,
        &ctx.namespace,
        &["deploy", "-r", "shop", "-f", &files],
    );
    assert_eq!(
        first.code, 0,
        "the namespace's owner deploys into it: {}",
        first.out
    );
    assert!(first.out.contains("revision 1 deployed"), "{}", first.out);

    let doctor = as_ci(
        &ctx,
        &kubeconfig,
        &ctx.namespace,
        &["doctor", "--output", "json"],
    );
    let rbac = rbac_check(&doctor);
    assert_eq!(rbac["status"], "ok", "{rbac}");

    // A namespace it may not even read: doctor and deploy say what is missing; nothing is made.
    let absent = format!("scoped-absent-{}", unique_suffix());
    let doctor = as_ci(&ctx, &kubeconfig, &absent, &["doctor", "--output", "json"]);
    let rbac = rbac_check(&doctor);
    assert_eq!(rbac["status"], "fail", "{rbac}");
    let detail = rbac["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!("may not read namespace `{absent}`"))
            && detail.contains("may not create namespaces"),
        "{rbac}"
    );
    let other = as_ci(
        &ctx,
        &kubeconfig,
        &absent,
        &["deploy", "-r", "shop", "-f", &files],
    );
    assert_ne!(other.code, 0, "{}", other.out);
    assert!(
        other.out.contains(&absent) && other.out.contains("forbidden"),
        "the API server's refusal, naming the namespace: {}",
        other.out
    );
    assert_eq!(
        ctx.cluster.namespace_exists(&absent).await.unwrap(),
        Some(false),
        "no namespace was made"
    );

    // Allowed to read namespaces cluster-wide (as many CI identities are): both now know it
    // is absent and say so, with what to do.
    let reader = format!("scoped-reader-{}", unique_suffix());
    kubectl(
        &ctx,
        &["apply", "-f", "-"],
        Some(&format!(
            "apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: {reader}}}
rules:
- apiGroups: ['']
  resources: [namespaces]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: {reader}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {reader}}}
subjects:
- {{kind: ServiceAccount, name: ci, namespace: {ns}}}
",
            ns = ctx.namespace
        )),
    );
    let doctor = as_ci(&ctx, &kubeconfig, &absent, &["doctor", "--output", "json"]);
    let other = as_ci(
        &ctx,
        &kubeconfig,
        &absent,
        &["deploy", "-r", "shop", "-f", &files],
    );
    kubectl(
        &ctx,
        &["delete", "clusterrolebinding,clusterrole", &reader],
        None,
    );
    let rbac = rbac_check(&doctor);
    assert_eq!(rbac["status"], "fail", "{rbac}");
    assert_eq!(
        rbac["detail"],
        format!("namespace `{absent}` does not exist and this identity may not create namespaces"),
        "{rbac}"
    );
    assert!(
        rbac["hint"]
            .as_str()
            .unwrap()
            .contains(&format!("kubectl create namespace {absent}")),
        "{rbac}"
    );
    assert_ne!(other.code, 0, "{}", other.out);
    assert!(
        other.out.contains(&format!(
            "namespace `{absent}` does not exist and this identity may not create namespaces"
        )) && other.out.contains("kubectl create namespace"),
        "{}",
        other.out
    );
    assert_eq!(
        ctx.cluster.namespace_exists(&absent).await.unwrap(),
        Some(false),
        "no namespace was made"
    );
}
