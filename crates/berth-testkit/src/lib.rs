//! Test support for berth's integration tests.
//!
//! Integration tests run against the real parts of the test environment started by
//! `testenv/berth-testenv up`: a kube-apiserver with its controllers and kwok nodes, and the
//! CNCF registry. [`TestEnv::get`] finds it (or fails the test with the command that starts
//! it — tests never skip silently), and [`TestContext`] gives each test its own namespace and
//! registry repository, removed when the context is dropped.
#![allow(clippy::print_stderr)]

pub mod webdriver;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use berth_cluster::{Cluster, ConnectOptions, ObjectKey};
use berth_registry::{Registry, RegistryOptions};
use berth_types::ImageRef;

/// The command that starts the environment, for failure messages.
pub const START_HINT: &str = "testenv/berth-testenv up";

/// The label (and taint) of the environment's real node, as a node selector.
pub const REAL_NODE_SELECTOR: &str = "berth.dev/node=real";
/// The toleration of the real node's taint, in the form the namespace annotation takes.
pub const REAL_NODE_TOLERATIONS: &str =
    r#"[{"key":"berth.dev/node","operator":"Equal","value":"real","effect":"NoSchedule"}]"#;

/// Installs ring as the rustls provider once per test process, as the binary does in `main`.
pub fn init_crypto() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The running test environment, as described by the `env` file that `up` writes.
#[derive(Debug, Clone)]
pub struct TestEnv {
    /// KEY=VALUE pairs of the env file.
    pub vars: BTreeMap<String, String>,
    /// The env file itself.
    pub file: PathBuf,
}

fn env_file() -> PathBuf {
    if let Some(home) = std::env::var_os("BERTH_TESTENV_HOME") {
        return PathBuf::from(home).join("run/env");
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .expect("HOME is set");
    cache.join("berth-testenv/run/env")
}

impl TestEnv {
    /// The environment, read once per process. Panics — failing the test — with the command
    /// that starts it when it is not there.
    pub fn get() -> &'static TestEnv {
        static ENV: OnceLock<TestEnv> = OnceLock::new();
        ENV.get_or_init(|| {
            init_crypto();
            let file = env_file();
            let text = std::fs::read_to_string(&file).unwrap_or_else(|_| {
                panic!(
                    "berth's test environment is not running (no {}).\nstart it with: {START_HINT}",
                    file.display()
                )
            });
            let vars = text
                .lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            TestEnv { vars, file }
        })
    }

    fn var(&self, key: &str) -> &str {
        self.vars.get(key).unwrap_or_else(|| {
            panic!(
                "{} has no {key}; restart the environment: {START_HINT}",
                self.file.display()
            )
        })
    }

    /// Path of the admin kubeconfig.
    pub fn kubeconfig(&self) -> &Path {
        Path::new(self.var("KUBECONFIG"))
    }

    /// `host:port` of the registry.
    pub fn registry_host(&self) -> &str {
        self.var("BERTH_REGISTRY")
    }

    /// The registry that requires a login (htpasswd), which the real node pulls from over
    /// plain HTTP: `(host:port, user, password)`.
    pub fn private_registry(&self) -> (&str, &str, &str) {
        (
            self.var("BERTH_TEST_PRIVATE_REGISTRY"),
            self.var("BERTH_TEST_PRIVATE_REGISTRY_USER"),
            self.var("BERTH_TEST_PRIVATE_REGISTRY_PASSWORD"),
        )
    }

    /// Directory of the environment's kubectl, kustomize, helm.
    pub fn bin_dir(&self) -> &Path {
        Path::new(self.var("BERTH_TESTENV_BIN"))
    }

    /// PATH with the environment's tools first.
    pub fn path(&self) -> String {
        format!(
            "{}:{}",
            self.bin_dir().display(),
            std::env::var("PATH").unwrap_or_default()
        )
    }

    /// A connection to the environment's cluster.
    pub async fn cluster(&self) -> Cluster {
        let opts = ConnectOptions {
            kubeconfig: Some(self.kubeconfig().into()),
            context: None,
        };
        let cluster = Cluster::connect(&opts).await.unwrap_or_else(|e| {
            panic!("cannot connect to the test cluster: {e}\nstart it with: {START_HINT}")
        });
        if let Err(e) = cluster.server_version().await {
            panic!("the test cluster does not answer: {e}\nstart it with: {START_HINT}");
        }
        cluster
    }

    /// A registry client that speaks plain HTTP to the environment's registry.
    pub fn registry(&self) -> Registry {
        Registry::new(RegistryOptions {
            insecure: vec![self.registry_host().to_string()],
            docker_config: Some(PathBuf::from("/nonexistent/berth-testkit/config.json")),
            mirrors: self.mirrors(),
        })
        .expect("a registry client without a config file builds")
    }

    /// The environment's pull mirrors (`BERTH_REGISTRY_MIRROR`, e.g. docker.io -> the registry).
    pub fn mirrors(&self) -> Vec<(String, String)> {
        self.vars
            .get("BERTH_REGISTRY_MIRROR")
            .map(|s| RegistryOptions::parse_mirrors(s).expect("BERTH_REGISTRY_MIRROR is valid"))
            .unwrap_or_default()
    }

    /// A `berth` command with the environment's variables set (KUBECONFIG, BERTH_REGISTRY, ...).
    pub fn berth(&self, binary: &Path) -> Command {
        let mut cmd = Command::new(binary);
        for (k, v) in &self.vars {
            if k != "PATH" {
                cmd.env(k, v);
            }
        }
        cmd.env("PATH", self.path());
        cmd
    }
}

/// A unique, DNS-safe suffix: time, process and a counter.
pub fn unique_suffix() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .subsec_nanos();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{:x}{:x}{n}", std::process::id() % 0xfff, nanos % 0xfffff)
}

/// One test's share of the environment: its own namespace and registry repository.
pub struct TestContext {
    /// The environment.
    pub env: &'static TestEnv,
    /// A connection to the cluster.
    pub cluster: Cluster,
    /// The test's namespace (created, deleted on drop).
    pub namespace: String,
    /// The test's repository prefix in the registry, e.g. `127.0.0.1:15000/t/name-1a2b`.
    pub repository: String,
    keep: bool,
}

impl TestContext {
    /// Creates a namespace `t-<name>-<suffix>` and waits for its default ServiceAccount, so
    /// pods can be created at once.
    pub async fn new(name: &str) -> TestContext {
        let env = TestEnv::get();
        let cluster = env.cluster().await;
        let slug: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .take(30)
            .collect();
        let suffix = unique_suffix();
        let namespace = format!("t-{}-{suffix}", slug.trim_matches('-'));
        cluster
            .ensure_namespace(&namespace)
            .await
            .expect("create the test namespace");
        let sa = ObjectKey::new("v1", "ServiceAccount", Some(&namespace), "default");
        cluster
            .wait_until(&sa, Duration::from_secs(30), |_| true)
            .await
            .expect("the controller manager creates the default ServiceAccount");
        let repository = format!(
            "{}/t/{}-{suffix}",
            env.registry_host(),
            slug.trim_matches('-')
        );
        TestContext {
            env,
            cluster,
            namespace,
            repository,
            keep: std::env::var_os("BERTH_TEST_KEEP").is_some(),
        }
    }

    /// A [`TestContext::new`] whose pods all run on the environment's real node (containerd,
    /// kubelet, kube-proxy): the namespace carries the annotations the API server's
    /// PodNodeSelector and PodTolerationRestriction plugins read, so no manifest changes.
    /// Panics with how to start the node when it is not Ready.
    pub async fn on_real_node(name: &str) -> TestContext {
        let ctx = TestContext::new(name).await;
        let node = ctx.env.var("BERTH_TESTENV_NODE").to_string();
        let ready = ctx
            .cluster
            .get(&ObjectKey::new("v1", "Node", None, &node))
            .await
            .ok()
            .flatten()
            .and_then(|n| {
                n["status"]["conditions"].as_array().map(|cs| {
                    cs.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
            })
            .unwrap_or(false);
        assert!(
            ready,
            "the test environment's real node {node} is not Ready; see its kubelet log under \
             $BERTH_TESTENV_HOME/run/logs/ and restart it with: {START_HINT}"
        );
        let namespace = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": ctx.namespace,
                "annotations": {
                    "scheduler.alpha.kubernetes.io/node-selector": REAL_NODE_SELECTOR,
                    "scheduler.alpha.kubernetes.io/defaultTolerations": REAL_NODE_TOLERATIONS,
                },
            },
        });
        ctx.cluster
            .apply(&namespace, "berth-test", false)
            .await
            .unwrap_or_else(|e| panic!("annotate {} for the real node: {e}", ctx.namespace));
        ctx
    }

    /// `GET path` of Service `service` (port `port`) through its ClusterIP, from this host —
    /// kube-proxy forwards it to a pod on the real node. Returns status and body; retries
    /// connection errors for up to 20 s (kube-proxy syncs its rules about once a second).
    pub async fn get_through_service(&self, service: &str, port: u16, path: &str) -> (u16, String) {
        let svc = self
            .cluster
            .get(&ObjectKey::new(
                "v1",
                "Service",
                Some(&self.namespace),
                service,
            ))
            .await
            .unwrap_or_else(|e| panic!("get Service {service}: {e}"))
            .unwrap_or_else(|| panic!("Service {service} exists in {}", self.namespace));
        let ip = svc["spec"]["clusterIP"]
            .as_str()
            .unwrap_or_else(|| panic!("Service {service} has a clusterIP: {svc}"))
            .to_string();
        let url = format!("http://{ip}:{port}{path}");
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .no_proxy()
            .build()
            .expect("a plain http client builds");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match client.get(&url).send().await {
                Ok(r) => {
                    let status = r.status().as_u16();
                    return (status, r.text().await.unwrap_or_default());
                }
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                Err(e) => panic!("GET {url} (Service {service}) failed for 20 s: {e}"),
            }
        }
    }

    /// An image reference in this test's repository.
    pub fn image(&self, name: &str, tag: &str) -> ImageRef {
        format!("{}/{name}:{tag}", self.repository)
            .parse()
            .expect("test image references are valid")
    }

    /// Applies a manifest (YAML-free: JSON built with `serde_json::json!`) into the test's
    /// namespace, as field manager `berth-test`.
    pub async fn apply(&self, mut object: serde_json::Value) -> serde_json::Value {
        object["metadata"]["namespace"] = serde_json::Value::String(self.namespace.clone());
        self.cluster
            .apply(&object, "berth-test", false)
            .await
            .unwrap_or_else(|e| panic!("apply: {e}"))
    }
}

impl Drop for TestContext {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("BERTH_TEST_KEEP: leaving namespace {}", self.namespace);
            return;
        }
        let ns = self.namespace.clone();
        let kubeconfig = self.env.kubeconfig().to_path_buf();
        // Drop cannot await, and the test's own runtime is blocked while we wait here — the
        // client of `self.cluster` lives on that runtime and would deadlock. So delete from a
        // thread with its own runtime and its own connection.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt {
                rt.block_on(async {
                    let opts = ConnectOptions {
                        kubeconfig: Some(kubeconfig),
                        context: None,
                    };
                    match Cluster::connect(&opts).await {
                        Ok(cluster) => {
                            if let Err(e) = cluster.delete_namespace(&ns).await {
                                eprintln!("warning: could not delete test namespace {ns}: {e}");
                            }
                        }
                        Err(e) => eprintln!("warning: could not delete test namespace {ns}: {e}"),
                    }
                });
            }
        })
        .join();
    }
}

/// A registry of a test's own: a separate `docker-registry` process on a free port, so a test
/// can stop it without disturbing others. Killed on drop.
pub struct OwnRegistry {
    /// `127.0.0.1:<port>`.
    pub host: String,
    child: Option<Child>,
    _dir: Arc<TempDir>,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl OwnRegistry {
    /// Starts it and waits until `/v2/` answers.
    pub fn start() -> OwnRegistry {
        Self::start_inner(None)
    }

    /// Starts one that requires basic auth (htpasswd, bcrypt) for `user` / `password`: any
    /// request without them gets 401.
    pub fn start_with_auth(user: &str, password: &str) -> OwnRegistry {
        Self::start_inner(Some((user, password)))
    }

    fn start_inner(auth: Option<(&str, &str)>) -> OwnRegistry {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let dir = std::env::temp_dir().join(format!("berth-registry-{}", unique_suffix()));
        std::fs::create_dir_all(dir.join("data")).expect("temp dir");
        let host = format!("127.0.0.1:{port}");
        let mut config = format!(
            "version: 0.1\nlog: {{level: error}}\nstorage:\n  filesystem: {{rootdirectory: {}}}\n  delete: {{enabled: true}}\nhttp:\n  addr: {host}\n",
            dir.join("data").display()
        );
        if let Some((user, password)) = auth {
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, password])
                .output()
                .unwrap_or_else(|e| {
                    panic!("cannot run htpasswd ({e}); it comes with the environment (apache2-utils): {START_HINT}")
                });
            assert!(out.status.success(), "htpasswd failed");
            std::fs::write(dir.join("htpasswd"), &out.stdout).expect("write htpasswd");
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
                dir.join("htpasswd").display()
            ));
        }
        std::fs::write(dir.join("config.yml"), config).expect("write registry config");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.join("config.yml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start docker-registry ({e}); it comes with the environment: {START_HINT}")
            });
        let reg = OwnRegistry {
            host,
            child: Some(child),
            _dir: Arc::new(TempDir(dir)),
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(&reg.host).is_err() {
            assert!(
                Instant::now() < deadline,
                "docker-registry on {} did not start in 15s",
                reg.host
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        reg
    }

    /// Stops it (SIGKILL) and waits until it is gone.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for OwnRegistry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The environment's PostgreSQL server (`BERTH_TEST_POSTGRES_URL`, a superuser URL ending in
/// `/postgres`), from which each test gets a database of its own.
pub struct Postgres;

/// A fresh database on the environment's PostgreSQL, dropped (with its connections) when this
/// value is dropped, unless `BERTH_TEST_KEEP=1`.
pub struct PgDatabase {
    /// `postgres://berth:berth@127.0.0.1:15432/t_<name>_<suffix>`.
    pub url: String,
    /// The database's name.
    pub name: String,
    admin_url: String,
    keep: bool,
}

impl Postgres {
    /// The superuser URL of the environment's server: `BERTH_TEST_POSTGRES_URL` from the
    /// process environment, else from the environment's env file.
    pub fn admin_url() -> String {
        if let Ok(url) = std::env::var("BERTH_TEST_POSTGRES_URL") {
            return url;
        }
        let env = TestEnv::get();
        env.vars
            .get("BERTH_TEST_POSTGRES_URL")
            .cloned()
            .unwrap_or_else(|| {
                panic!(
                    "{} has no BERTH_TEST_POSTGRES_URL: the test environment was started without PostgreSQL.\nstart it with: {START_HINT}",
                    env.file.display()
                )
            })
    }

    /// The CA certificate that signed the server's TLS certificate
    /// (`BERTH_TEST_POSTGRES_CA`), for `sslmode=verify-full&sslrootcert=...`.
    pub fn ca_file() -> PathBuf {
        if let Ok(path) = std::env::var("BERTH_TEST_POSTGRES_CA") {
            return PathBuf::from(path);
        }
        let env = TestEnv::get();
        PathBuf::from(env.var("BERTH_TEST_POSTGRES_CA"))
    }

    /// Creates a database `t_<name>_<suffix>` and returns its URL.
    pub async fn fresh(name: &str) -> PgDatabase {
        let admin_url = Postgres::admin_url();
        let slug: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .take(40)
            .collect();
        let db = format!("t_{}_{}", slug.trim_matches('_'), unique_suffix());
        let (base, _) = admin_url.rsplit_once('/').unwrap_or_else(|| {
            panic!("BERTH_TEST_POSTGRES_URL has no /DATABASE part; restart: {START_HINT}")
        });
        let url = format!("{base}/{db}");
        let admin = admin_url.clone();
        let sql = format!("CREATE DATABASE \"{db}\"");
        tokio::task::spawn_blocking(move || psql(&admin, &sql))
            .await
            .expect("psql task")
            .unwrap_or_else(|e| {
                panic!("PostgreSQL of the test environment does not answer: {e}\nstart it with: {START_HINT}")
            });
        PgDatabase {
            url,
            name: db,
            admin_url,
            keep: std::env::var_os("BERTH_TEST_KEEP").is_some(),
        }
    }
}

/// Runs one SQL command with `psql` against `url`; the error carries psql's stderr.
pub fn psql(url: &str, sql: &str) -> Result<String, String> {
    let out = Command::new(psql_binary())
        .args([
            "-X",
            "-q",
            "-t",
            "-A",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            url,
            "-c",
            sql,
        ])
        .output()
        .map_err(|e| format!("cannot run psql ({e}); it comes with Debian's postgresql package"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "psql failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn psql_binary() -> PathBuf {
    postgres_tool("psql")
}

/// A PostgreSQL client program (`psql`, `pg_dump`, ...) of the environment's server version:
/// from `BERTH_TEST_POSTGRES_BIN` (process or env file), else from PATH.
pub fn postgres_tool(name: &str) -> PathBuf {
    // The env file names the server's own bin directory; /usr/bin/psql is Debian's wrapper.
    let from_env = std::env::var("BERTH_TEST_POSTGRES_BIN").ok().or_else(|| {
        env_file()
            .exists()
            .then(|| TestEnv::get().vars.get("BERTH_TEST_POSTGRES_BIN").cloned())
            .flatten()
    });
    match from_env {
        Some(dir) => Path::new(&dir).join(name),
        None => PathBuf::from(name),
    }
}

impl PgDatabase {
    /// The whole database as `pg_dump` prints it (schema and data, plain SQL): what a test
    /// scans for values that must never be stored.
    pub fn dump(&self) -> String {
        let out = Command::new(postgres_tool("pg_dump"))
            .args(["--no-owner", "-d", &self.url])
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run pg_dump ({e}); it comes with Debian's postgresql package")
            });
        assert!(
            out.status.success(),
            "pg_dump {} failed: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("BERTH_TEST_KEEP: leaving database {}", self.name);
            return;
        }
        // FORCE ends connections a test's pool still holds (PostgreSQL 13 and later).
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        if let Err(e) = psql(&self.admin_url, &sql) {
            eprintln!("warning: could not drop test database {}: {e}", self.name);
        }
    }
}
