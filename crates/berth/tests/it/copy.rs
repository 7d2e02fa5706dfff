//! `berth data copy` against real PostgreSQL on loopback: pg_dump -> masker -> psql, checked
//! row by row. Each test makes its own databases on the test environment's server
//! (`BERTH_TEST_POSTGRES_URL`, a superuser URL) and drops them at the end.

use std::collections::BTreeMap;
use std::process::{Command, Output};

use serde_json::Value;

const KEY: &str = "integration-test-masking-key";

/// The superuser URL of the test PostgreSQL (the testkit's, which fails saying how to start
/// the environment when it has none).
pub(crate) fn admin_url() -> String {
    berth_testkit::Postgres::admin_url()
}

/// A fresh database on the test server, dropped when this goes away.
pub(crate) struct Db {
    admin: String,
    pub name: String,
    pub url: String,
}

impl Db {
    pub(crate) fn new(tag: &str) -> Db {
        let admin = admin_url();
        let name = format!(
            "berth_{tag}_{}",
            berth_testkit::unique_suffix().replace('-', "_")
        );
        psql(&admin, &format!("CREATE DATABASE {name}"));
        let (base, _) = admin.rsplit_once('/').expect("the URL names a database");
        Db {
            url: format!("{base}/{name}"),
            admin,
            name,
        }
    }

    pub(crate) fn sql(&self, sql: &str) -> String {
        psql(&self.url, sql)
    }

    /// `SELECT json_agg(...)` of a table, rows keyed by `id`.
    pub(crate) fn rows(&self, table: &str) -> BTreeMap<i64, Value> {
        let text = self.sql(&format!(
            "SELECT coalesce(json_agg(t ORDER BY id), '[]') FROM {table} t"
        ));
        let rows: Vec<Value> = serde_json::from_str(&text).unwrap();
        rows.into_iter()
            .map(|r| (r["id"].as_i64().unwrap(), r))
            .collect()
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args(["-X", "-q", "-c"])
            .arg(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .arg(&self.admin)
            .output();
    }
}

fn psql(url: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .arg(url)
        .output()
        .expect("psql runs (Debian: postgresql-client)");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .trim_end()
        .to_string()
}

/// A shop: users with personal columns, orders that reference users by id *and* by email,
/// and products with awkward text nobody masks.
pub(crate) fn seed(db: &Db, users: usize) {
    db.sql(
        "CREATE TABLE users (id int PRIMARY KEY, email text UNIQUE NOT NULL, name text, \
         phone text, note text, created date NOT NULL);
         CREATE TABLE orders (id int PRIMARY KEY, user_id int NOT NULL REFERENCES users(id), \
         customer_email text NOT NULL REFERENCES users(email), total numeric(10,2));
         CREATE TABLE products (id int PRIMARY KEY, title text, description text, tags text[]);",
    );
    db.sql(&format!(
        "INSERT INTO users SELECT i, 'Person' || i || '@Example.org', \
           CASE WHEN i % 7 = 0 THEN NULL ELSE 'Zacharias Q' || i END, \
           CASE WHEN i % 5 = 0 THEN NULL ELSE '+49 (30) ' || (1000000 + i) END, \
           CASE i % 4 WHEN 0 THEN NULL WHEN 1 THEN E'tab\\there\\nnew line \\\\ back' \
             WHEN 2 THEN 'Grüße aus Köln ✓ ' || i ELSE '' END, \
           date '2020-01-01' + i FROM generate_series(1, {users}) i;
         INSERT INTO orders SELECT i, u.id, u.email, i * 1.25 \
           FROM generate_series(1, {orders}) i JOIN users u ON u.id = 1 + (i * 7) % {users};
         INSERT INTO products VALUES \
           (1, E'back\\\\slash', E'a\\tb\\nc\\rd', ARRAY['x y', 'z\"q']), \
           (2, 'ünï©ødé 🚀', E'\\\\N is not null', ARRAY[]::text[]), \
           (3, NULL, '\\.', NULL);",
        orders = users * 2
    ));
}

/// `berth data copy` from `from` to `to` (URLs passed in the environment, as a user should),
/// masked with `key`, plus `extra` arguments.
pub(crate) fn copy_command(from: &str, to: &str, key: &str, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
    cmd.args([
        "data",
        "copy",
        "--from-url-env",
        "SRC",
        "--to-url-env",
        "DST",
    ])
    .args(extra)
    .env("SRC", from)
    .env("DST", to)
    .env("BERTH_MASK_KEY", key);
    cmd
}

fn berth_copy(source: &Db, target: &Db, extra: &[&str]) -> Output {
    copy_command(&source.url, &target.url, KEY, extra)
        .output()
        .expect("berth runs")
}

const RULES: &[&str] = &[
    "--mask",
    "users.email=email",
    "--mask",
    "orders.customer_email=email",
    "--mask",
    "users.name=name",
    "--mask",
    "public.users.phone=phone",
    "--mask",
    "users.note=text",
];

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "berth failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn masked_copy_hides_every_original_and_keeps_everything_else() {
    let source = Db::new("src");
    let target = Db::new("dst");
    seed(&source, 500);
    let stdout = ok(&berth_copy(&source, &target, RULES));
    assert!(
        stdout.contains("public.users") && stdout.contains("masked email=email"),
        "{stdout}"
    );

    let (src, dst) = (source.rows("users"), target.rows("users"));
    assert_eq!(src.len(), dst.len());
    let mut emails = std::collections::HashSet::new();
    for (id, s) in &src {
        let d = &dst[id];
        for col in ["email", "name", "phone", "note"] {
            if s[col].is_null() {
                assert!(
                    d[col].is_null(),
                    "user {id}: NULL {col} must stay NULL, got {}",
                    d[col]
                );
            } else if s[col] != "" {
                assert_ne!(s[col], d[col], "user {id}: {col} kept its original value");
            }
        }
        // No masked value contains the original anywhere (not even a substring of a fake).
        let dst_text = d.to_string();
        assert!(!dst_text.contains(&format!("Person{id}@")) && !dst_text.contains("Zacharias"));
        assert_eq!(s["created"], d["created"], "unmasked column identical");
        assert_eq!(s["id"], d["id"]);
        let e = d["email"].as_str().unwrap();
        assert!(e.starts_with("user-") && e.ends_with("@example.com"), "{e}");
        assert!(emails.insert(e.to_string()), "fake emails stay unique");
        if let (Some(sp), Some(dp)) = (s["phone"].as_str(), d["phone"].as_str()) {
            assert_eq!(sp.len(), dp.len());
            assert!(
                dp.starts_with("+") && dp.contains(" ("),
                "phone keeps its shape: {dp}"
            );
        }
        if let (Some(sn), Some(dn)) = (s["note"].as_str(), d["note"].as_str()) {
            assert_eq!(
                sn.chars().count(),
                dn.chars().count(),
                "text keeps its length"
            );
            assert_eq!(
                sn.contains('\t'),
                dn.contains('\t'),
                "tabs survive the masker"
            );
            assert_eq!(
                sn.contains('\n'),
                dn.contains('\n'),
                "newlines survive the masker"
            );
        }
    }

    // Orders: every row is there, the foreign keys hold (the target enforced them while
    // loading), and a join on the masked email still matches for every order.
    let so = source.rows("orders");
    let dorders = target.rows("orders");
    assert_eq!(so.len(), dorders.len());
    for (id, s) in &so {
        let d = &dorders[id];
        assert_eq!((&s["user_id"], &s["total"]), (&d["user_id"], &d["total"]));
        assert_ne!(s["customer_email"], d["customer_email"]);
    }
    let joined = "SELECT count(*) FROM orders o JOIN users u ON u.email = o.customer_email \
                  AND u.id = o.user_id";
    assert_eq!(target.sql(joined), so.len().to_string());
    let fks = "SELECT count(*) FROM pg_constraint WHERE contype = 'f'";
    assert_eq!(target.sql(fks), "2");

    // A table without rules is byte for byte the same, awkward values included.
    assert_eq!(source.rows("products"), target.rows("products"));
}

#[test]
fn masking_is_deterministic_per_key_and_a_rerun_refreshes_the_target() {
    let source = Db::new("src");
    let first = Db::new("dst");
    let second = Db::new("dst");
    seed(&source, 50);
    ok(&berth_copy(&source, &first, RULES));
    ok(&berth_copy(&source, &second, RULES));
    assert_eq!(
        first.rows("users"),
        second.rows("users"),
        "same key, same fakes"
    );

    // Copying again into a target that has the tables replaces them (refresh), and a change
    // of key changes every fake.
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args([
            "data",
            "copy",
            "--from-url-env",
            "SRC",
            "--to-url-env",
            "DST",
        ])
        .args(RULES)
        .env("SRC", &source.url)
        .env("DST", &second.url)
        .env("BERTH_MASK_KEY", "another-key-another-key")
        .output()
        .unwrap();
    ok(&out);
    let (a, b) = (first.rows("users"), second.rows("users"));
    assert_eq!(a.len(), b.len());
    for (id, row) in &a {
        assert_ne!(
            row["email"], b[id]["email"],
            "user {id}: a new key makes new fakes"
        );
    }
}

#[test]
fn a_typo_in_a_rule_fails_naming_it_and_commits_nothing() {
    let source = Db::new("src");
    let target = Db::new("dst");
    seed(&source, 20);
    target.sql(
        "CREATE TABLE users (id int PRIMARY KEY, email text); INSERT INTO users VALUES (1, 'kept')",
    );
    let out = berth_copy(&source, &target, &["--mask", "users.emial=email"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        // The rule is checked against the source's catalog before anything streams: the
        // message lists the table's columns (in the catalog's order).
        err.contains("users.emial")
            && ["id", "email", "name"].iter().all(|c| err.contains(c))
            && err.contains("nothing was committed"),
        "{err}"
    );
    assert!(err.contains("nothing was committed"), "{err}");
    // The target is as it was: its table still there with its one row, nothing restored.
    assert_eq!(target.sql("SELECT email FROM users"), "kept");
    assert_eq!(
        target.sql("SELECT count(*) FROM pg_tables WHERE tablename = 'orders'"),
        "0"
    );

    // Strict mode: a personal-looking column without a rule is refused, the same way.
    let out = berth_copy(
        &source,
        &target,
        &["--strict", "--mask", "users.email=email"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("looks personal"),
        "{err}"
    );
    assert_eq!(target.sql("SELECT email FROM users"), "kept");
}

#[test]
fn failures_of_either_tool_report_its_stderr_without_the_password() {
    let source = Db::new("src");
    let target = Db::new("dst");
    seed(&source, 5);
    let admin = admin_url();
    let host_and_db = admin.rsplit_once('@').map_or(admin.as_str(), |(_, h)| h);
    let bad = format!("postgresql://nobody:S3cr3t-pw@{host_and_db}");
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args([
            "data",
            "copy",
            "--from-url-env",
            "SRC",
            "--to-url-env",
            "DST",
        ])
        .env("SRC", &bad)
        .env("DST", &target.url)
        .env("BERTH_MASK_KEY", KEY)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        // The first tool to reach the source is psql, reading its catalog for the rules.
        !out.status.success() && err.contains("`psql` of the source failed"),
        "{err}"
    );
    assert!(
        err.contains("nobody") && !err.contains("S3cr3t-pw"),
        "{err}"
    );

    // The restore fails on the target's own constraint: psql's message, rolled back.
    target.sql("CREATE TABLE guard (x int); CREATE VIEW users AS SELECT 1 AS id");
    let out = berth_copy(&source, &target, &["--mask", "users.email=email"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("`psql` into the target failed"),
        "{err}"
    );
    assert!(
        err.contains("rolled back") && err.contains("ERROR"),
        "{err}"
    );
    assert_eq!(
        target.sql("SELECT count(*) FROM pg_tables WHERE tablename = 'orders'"),
        "0"
    );

    // No key, no copy.
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args([
            "data",
            "copy",
            "--from-url-env",
            "SRC",
            "--to-url-env",
            "DST",
        ])
        .env("SRC", &source.url)
        .env("DST", &target.url)
        .env_remove("BERTH_MASK_KEY")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("BERTH_MASK_KEY"));
}

/// The Job form on the real API server: the Job berth makes is accepted, names its Secrets by
/// reference only, and its outcome is followed (kwok completes the pod, or fails it when
/// annotated `berth.dev/simulate: exit-nonzero`).
#[tokio::test]
async fn the_copy_job_is_accepted_holds_no_credential_and_is_followed_to_its_end() {
    use berth_cluster::ObjectKey;
    use berth_data::copy::job::{CopyJob, run_copy_job};

    let ctx = berth_testkit::TestContext::new("copy-job").await;
    for (name, key, value) in [
        (
            "prod-db",
            "url",
            "postgresql://app:Pr0d-pw@prod-db:5432/shop",
        ),
        (
            "staging-db",
            "url",
            "postgresql://app:st-pw@staging-db:5432/shop",
        ),
        ("masking", "key", "a-masking-key-from-a-secret"),
    ] {
        ctx.apply(serde_json::json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name}, "stringData": {key: value}}))
            .await;
    }
    let out = ctx
        .env
        .berth(env!("CARGO_BIN_EXE_berth").as_ref())
        .args([
            "data",
            "copy",
            "--job-image",
            "127.0.0.1:15000/library/busybox:latest",
        ])
        .args([
            "--namespace",
            &ctx.namespace,
            "--from-secret",
            "prod-db/url",
        ])
        .args([
            "--to-secret",
            "staging-db/url",
            "--key-secret",
            "masking/key",
        ])
        .args(["--mask", "users.email=email", "--strict", "--timeout", "2m"])
        .output()
        .unwrap();
    let stdout = ok(&out);
    assert!(
        stdout.contains("copy Job") && stdout.contains("complete"),
        "{stdout}"
    );
    let jobs = ctx
        .cluster
        .list(
            "batch/v1",
            "Job",
            &ctx.namespace,
            Some("berth.dev/data-role=copy"),
        )
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1);
    let job = &jobs[0];
    let text = job.to_string();
    assert!(!text.contains("Pr0d-pw") && !text.contains("st-pw") && !text.contains("a-masking"));
    let c = &job["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["env"][0]["valueFrom"]["secretKeyRef"]["name"], "prod-db");
    assert!(
        c["args"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "users.email=email")
    );
    assert_eq!(job["status"]["succeeded"], 1);

    // A failing copy pod fails the Job, and berth says so and keeps it for its logs.
    let spec = CopyJob {
        namespace: ctx.namespace.clone(),
        name: "copy-fails".into(),
        image: "127.0.0.1:15000/library/busybox:latest".into(),
        source_url: "prod-db/url".parse().unwrap(),
        target_url: "staging-db/url".parse().unwrap(),
        mask_key: "masking/key".parse().unwrap(),
        rules: vec![],
        strict: false,
        run_id: "0000000000f".into(),
        pod_annotations: [("berth.dev/simulate".to_string(), "exit-nonzero".to_string())].into(),
    };
    let events = std::sync::Mutex::new(Vec::new());
    let sink = |e: berth_types::Event| events.lock().unwrap().push(e);
    let err = run_copy_job(
        &ctx.cluster,
        &spec,
        std::time::Duration::from_secs(120),
        &sink,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("copy-fails") && err.contains("failed"),
        "{err}"
    );
    assert!(err.contains("kubectl -n"), "{err}");
    let key = ObjectKey::new("batch/v1", "Job", Some(&ctx.namespace), "copy-fails");
    assert!(
        ctx.cluster.get(&key).await.unwrap().is_some(),
        "the failed Job is kept"
    );
    let events = events.lock().unwrap();
    assert!(
        events.iter().any(
            |e| matches!(e, berth_types::Event::ObjectState { state, .. } if *state == berth_types::State::Failed)
        )
    );
}

#[test]
fn mask_config_takes_rules_and_url_variables_from_berth_yaml() {
    let source = Db::new("src");
    let target = Db::new("dst");
    seed(&source, 20);
    let dir =
        std::env::temp_dir().join(format!("berth-maskcfg-{}", berth_testkit::unique_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("berth.yaml");
    std::fs::write(
        &file,
        "services:\n  - name: web\n    image: registry.example.com/web:1\n\
         environments:\n  - name: production\n    namespace: prod\n  - name: staging\n    namespace: staging\n\
         \x20   data:\n      copy:\n        from: production\n        source-url-env: PROD_DB_URL\n\
         \x20       target-url-env: STAGING_DB_URL\n\
         \x20       mask: { users.email: email, orders.customer_email: email }\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["data", "copy", "--mask-config"])
        .arg(&file)
        .args(["--env", "staging", "-o", "json"])
        .env("PROD_DB_URL", &source.url)
        .env("STAGING_DB_URL", &target.url)
        .env("BERTH_MASK_KEY", KEY)
        .output()
        .unwrap();
    let stdout = ok(&out);
    let doc: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(
        doc["tables"]["public.users"]["masked"],
        serde_json::json!(["email=email"])
    );
    let (s, t) = (source.rows("users"), target.rows("users"));
    for (id, row) in &s {
        assert_ne!(row["email"], t[id]["email"]);
        assert_eq!(row["name"], t[id]["name"], "no rule for name here");
    }
    // A misspelt rule in berth.yaml is a config error with its place, before any copy.
    std::fs::write(
        &file,
        std::fs::read_to_string(&file)
            .unwrap()
            .replace("users.email: email", "users.email: emial"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["data", "copy", "--mask-config"])
        .arg(&file)
        .args(["--env", "staging"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("berth.yaml:14:")
            && err.contains("did you mean `email`?"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A child berth that is killed when the test fails (a paused copy never ends by itself).
pub(crate) struct Killed(pub std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends `signal` (`TERM`, `KILL`) to a process.
pub(crate) fn send_signal(pid: u32, signal: &str) {
    let st = Command::new("kill")
        .args(["-s", signal, &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(st.success(), "kill -s {signal} {pid}");
}

/// Polls `check` every 100 ms until it holds, for at most `secs` seconds; fails saying `what`
/// and (when `child` has already exited) its stderr.
pub(crate) fn wait_for(
    secs: u64,
    what: &str,
    child: Option<&mut std::process::Child>,
    mut check: impl FnMut() -> bool,
) {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    let mut child = child;
    while !check() {
        if let Some(c) = child.as_deref_mut()
            && let Ok(Some(status)) = c.try_wait()
        {
            let mut err = String::new();
            if let Some(mut e) = c.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            panic!("berth exited ({status}) before {what}: {err}");
        }
        assert!(
            std::time::Instant::now() < end,
            "{what} did not happen within {secs}s"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// A masked copy killed mid-stream (`signal`), after psql already ran the dump's `DROP TABLE`s
/// inside berth's transaction and got one table's rows: the server rolls the transaction
/// back, the target keeps its old tables and rows, and nothing of the source (unmasked or not)
/// is committed; the next copy converges.
fn a_copy_killed_mid_stream_keeps_the_target(signal: &str) {
    let source = Db::new("ksrc");
    let target = Db::new("kdst");
    seed(&source, 2000);
    target.sql(
        "CREATE TABLE users (id int PRIMARY KEY, email text); \
         INSERT INTO users VALUES (1, 'old@target.example'), (2, 'second@target.example'); \
         CREATE TABLE orders (id int PRIMARY KEY, note text); \
         INSERT INTO orders VALUES (7, 'an old order');",
    );
    let tables = || {
        target.sql("SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'public'")
    };
    let (users, orders, before) = (target.rows("users"), target.rows("orders"), tables());

    let mut child = Killed(
        copy_command(&source.url, &target.url, KEY, RULES)
            .env("BERTH_TEST_PAUSE_AT", "copy-mid-stream")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("berth runs"),
    );
    // The stream is past `--clean`: psql's session holds the DROP's exclusive lock on the
    // target's old tables, in a transaction that is not committed.
    let dropped = || {
        target.sql(
            "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation \
             WHERE l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
             AND c.relname IN ('users', 'orders') AND l.mode = 'AccessExclusiveLock' AND l.granted",
        ) == "2"
    };
    wait_for(
        60,
        "psql dropped the old tables",
        Some(&mut child.0),
        dropped,
    );
    // Give the paused berth's flushed COPY block time to reach psql, then kill berth.
    let idle = || {
        target.sql(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND state = 'idle in transaction'",
        ) == "1"
    };
    wait_for(30, "psql waited for more input", Some(&mut child.0), idle);
    send_signal(child.0.id(), signal);
    let status = child.0.wait().unwrap();
    assert_eq!(status.code(), None, "berth died of the signal: {status}");

    // psql reads the end of its input without a COMMIT and exits; the server rolls back.
    wait_for(30, "the restore session ended", None, || !dropped());
    assert_eq!(
        target.rows("users"),
        users,
        "the old users are back, untouched"
    );
    assert_eq!(target.rows("orders"), orders);
    assert_eq!(tables(), before, "no table of the source was committed");

    // The next copy converges.
    ok(&berth_copy(&source, &target, RULES));
    assert_eq!(target.rows("users").len(), 2000);
    assert_eq!(target.rows("orders").len(), 4000);
    assert_eq!(tables(), "orders,products,users");
}

#[test]
fn a_copy_killed_by_sigterm_mid_stream_commits_nothing() {
    a_copy_killed_mid_stream_keeps_the_target("TERM");
}

#[test]
fn a_copy_killed_by_sigkill_mid_stream_commits_nothing() {
    a_copy_killed_mid_stream_keeps_the_target("KILL");
}
