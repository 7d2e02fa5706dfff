//! `berth data copy` between MariaDB databases on loopback (the test environment's
//! `BERTH_TEST_MYSQL_URL`): mariadb-dump -> masker -> mariadb, checked row by row.

use std::collections::BTreeMap;
use std::process::{Command, Output};

const KEY: &str = "integration-test-masking-key";

fn admin_url() -> String {
    if let Ok(u) = std::env::var("BERTH_TEST_MYSQL_URL") {
        return u;
    }
    berth_testkit::TestEnv::get()
        .vars
        .get("BERTH_TEST_MYSQL_URL")
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "no MariaDB for the tests: start the test environment (testenv/berth-testenv up, \
                 which serves BERTH_TEST_MYSQL_URL) or set BERTH_TEST_MYSQL_URL"
            )
        })
}

struct Db {
    name: String,
    url: String,
}

/// `mysql://user:pw@host:port/db` -> mariadb client flags.
fn client(url: &str) -> Command {
    let rest = url.split_once("://").unwrap().1;
    let (auth, hostdb) = rest.rsplit_once('@').unwrap();
    let (user, pw) = auth.split_once(':').unwrap();
    let (hostport, db) = hostdb.split_once('/').unwrap();
    let (host, port) = hostport.split_once(':').unwrap();
    let mut c = Command::new("mariadb");
    c.args([
        "--no-defaults",
        "--protocol=TCP",
        "--batch",
        "--skip-column-names",
    ])
    .arg(format!("--host={host}"))
    .arg(format!("--port={port}"))
    .arg(format!("--user={user}"))
    .arg(format!("--database={db}"))
    .env("MYSQL_PWD", pw);
    c
}

fn sql(url: &str, q: &str) -> String {
    let out = client(url)
        .arg("-e")
        .arg(q)
        .output()
        .expect("mariadb runs (mariadb-client)");
    assert!(
        out.status.success(),
        "{q}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .trim_end()
        .to_string()
}

impl Db {
    fn new(tag: &str) -> Db {
        let admin = admin_url();
        let name = format!(
            "berth_{tag}_{}",
            berth_testkit::unique_suffix().replace('-', "_")
        );
        sql(
            &admin,
            &format!("CREATE DATABASE {name} CHARACTER SET utf8mb4"),
        );
        let base = admin.rsplit_once('/').unwrap().0;
        Db {
            url: format!("{base}/{name}"),
            name,
        }
    }

    fn sql(&self, q: &str) -> String {
        sql(&self.url, q)
    }

    /// Rows of `table` by id: each column hex-encoded (NULL as None), so tabs, newlines and
    /// backslashes cannot confuse the parsing.
    fn rows(&self, table: &str, cols: &[&str]) -> BTreeMap<i64, Vec<Option<Vec<u8>>>> {
        let select: Vec<String> = cols
            .iter()
            .map(|c| format!("IFNULL(HEX({c}), '-')"))
            .collect();
        let text = self.sql(&format!(
            "SELECT id, {} FROM {table} ORDER BY id",
            select.join(", ")
        ));
        text.lines()
            .map(|l| {
                let mut f = l.split('\t');
                let id = f.next().unwrap().parse().unwrap();
                let vals = f
                    .map(|h| {
                        (h != "-").then(|| {
                            (0..h.len() / 2)
                                .map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).unwrap())
                                .collect()
                        })
                    })
                    .collect();
                (id, vals)
            })
            .collect()
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let _ = client(&admin_url())
            .arg("-e")
            .arg(format!("DROP DATABASE IF EXISTS {}", self.name))
            .output();
    }
}

fn seed(db: &Db, users: usize) {
    db.sql(&format!(
        "CREATE TABLE users (id INT PRIMARY KEY, email VARCHAR(200) NOT NULL UNIQUE, name TEXT, \
           phone VARCHAR(40), note TEXT, created DATE NOT NULL) ENGINE=InnoDB;
         CREATE TABLE orders (id INT PRIMARY KEY, user_id INT NOT NULL, \
           customer_email VARCHAR(200) NOT NULL, total DECIMAL(10,2), raw BLOB, \
           FOREIGN KEY (user_id) REFERENCES users(id), \
           FOREIGN KEY (customer_email) REFERENCES users(email)) ENGINE=InnoDB;
         INSERT INTO users SELECT seq, CONCAT('Person', seq, '@Example.org'), \
           IF(seq % 7 = 0, NULL, CONCAT('Zacharias Q', seq)), \
           IF(seq % 5 = 0, NULL, CONCAT('+49 (30) ', 1000000 + seq)), \
           ELT(1 + seq % 4, NULL, 'tab\there\nnew line \\\\ back \\'quote\\' \"dq\"', \
             CONCAT('Grüße aus Köln ✓ ', seq), ''), \
           DATE('2020-01-01') + INTERVAL seq DAY FROM seq_1_to_{users};
         INSERT INTO orders SELECT s.seq, u.id, u.email, s.seq * 1.25, UNHEX('00FF0A5C27') \
           FROM seq_1_to_{orders} s JOIN users u ON u.id = 1 + (s.seq * 7) % {users};",
        orders = users * 2
    ));
}

fn berth_copy(source: &Db, target: &Db, extra: &[&str]) -> Output {
    crate::copy::copy_command(&source.url, &target.url, KEY, extra)
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
    "users.phone=phone",
    "--mask",
    "users.note=text",
];

#[test]
fn mysql_masked_copy_hides_every_original_and_keeps_everything_else() {
    let source = Db::new("mysrc");
    let target = Db::new("mydst");
    seed(&source, 300);
    let out = berth_copy(&source, &target, RULES);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let cols = ["email", "name", "phone", "note", "created"];
    let (src, dst) = (source.rows("users", &cols), target.rows("users", &cols));
    assert_eq!(src.len(), dst.len());
    for (id, s) in &src {
        let d = &dst[id];
        for (i, col) in cols.iter().enumerate().take(4) {
            match (&s[i], &d[i]) {
                (None, d) => assert!(d.is_none(), "user {id}: NULL {col} must stay NULL"),
                (Some(s), Some(d)) if !s.is_empty() => {
                    assert_ne!(s, d, "user {id}: {col} kept its original value");
                    if *col == "note" {
                        let (s, d) = (String::from_utf8_lossy(s), String::from_utf8_lossy(d));
                        assert_eq!(s.chars().count(), d.chars().count());
                        assert_eq!(s.contains('\n'), d.contains('\n'));
                        assert_eq!(s.contains('\''), d.contains('\''));
                    }
                }
                (Some(_), Some(_)) => {}
                (Some(_), None) => panic!("user {id}: {col} became NULL"),
            }
        }
        assert_eq!(s[4], d[4], "unmasked column identical");
    }
    let ocols = ["user_id", "customer_email", "total", "raw"];
    let (so, dorders) = (source.rows("orders", &ocols), target.rows("orders", &ocols));
    assert_eq!(so.len(), dorders.len());
    for (id, s) in &so {
        let d = &dorders[id];
        assert_eq!(
            (&s[0], &s[2], &s[3]),
            (&d[0], &d[2], &d[3]),
            "order {id}: unmasked"
        );
        assert_ne!(s[1], d[1]);
    }
    let joined = "SELECT COUNT(*) FROM orders o JOIN users u ON u.email = o.customer_email \
                  AND u.id = o.user_id";
    assert_eq!(
        target.sql(joined),
        so.len().to_string(),
        "joins on masked emails match"
    );
    let fks = format!(
        "SELECT COUNT(*) FROM information_schema.REFERENTIAL_CONSTRAINTS \
         WHERE CONSTRAINT_SCHEMA = '{}'",
        target.name
    );
    assert_eq!(target.sql(&fks), "2", "foreign keys intact");

    // A rerun refreshes the target and masks alike.
    let before = target.rows("users", &cols);
    let out = berth_copy(&source, &target, RULES);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(target.rows("users", &cols), before);
}

#[test]
fn mysql_typos_and_strict_columns_fail_before_anything_is_written() {
    let source = Db::new("mysrc");
    let target = Db::new("mydst");
    seed(&source, 10);
    target.sql(
        "CREATE TABLE users (id INT PRIMARY KEY, email TEXT); INSERT INTO users VALUES (1, 'kept')",
    );
    let out = berth_copy(&source, &target, &["--mask", "users.emial=email"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("users.emial"),
        "{err}"
    );
    assert!(err.contains("id, email, name"), "{err}");
    assert_eq!(target.sql("SELECT email FROM users"), "kept");
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

    // A refused login is the tool's own message, without the password.
    let bad = source.url.replacen("berth:berth@", "berth:Wr0ng-pw@", 1);
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
        !out.status.success() && err.contains("Access denied"),
        "{err}"
    );
    assert!(!err.contains("Wr0ng-pw"), "{err}");
}

/// A MySQL copy killed mid-stream (`signal`), after the client created the first table and
/// ran one INSERT: everything went to the staging database, so the target keeps its old
/// tables and rows; the next copy drops the leftover stage and converges.
fn a_mysql_copy_killed_mid_stream_keeps_the_target(signal: &str) {
    let source = Db::new("mksrc");
    let target = Db::new("mkdst");
    seed(&source, 2000);
    target.sql(
        // Compatible with the source's foreign keys, so that a restore straight into the
        // target (what berth must not do) would get as far as replacing `orders`.
        "CREATE TABLE users (id INT PRIMARY KEY, email VARCHAR(200) NOT NULL UNIQUE); \
         INSERT INTO users VALUES (1, 'old@target.example'), (2, 'second@target.example'); \
         CREATE TABLE orders (id INT PRIMARY KEY, note TEXT); \
         INSERT INTO orders VALUES (7, 'an old order');",
    );
    let tables = |db: &str| {
        sql(
            &admin_url(),
            &format!(
                "SELECT IFNULL(GROUP_CONCAT(TABLE_NAME ORDER BY TABLE_NAME), '') \
                 FROM information_schema.TABLES WHERE TABLE_SCHEMA = '{db}'"
            ),
        )
    };
    let (users, orders) = (
        target.rows("users", &["email"]),
        target.rows("orders", &["note"]),
    );
    let before = tables(&target.name);
    let (stage, _) = berth_data::copy::mysql::staging_databases(&target.name);

    let mut child = crate::copy::Killed(
        crate::copy::copy_command(&source.url, &target.url, KEY, RULES)
            .env("BERTH_TEST_PAUSE_AT", "copy-mid-stream")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("berth runs"),
    );
    // Mid-stream: the source's `orders` was created (in the stage) and got its first INSERT,
    // and the client waits for more input.
    let dbs = format!("'{stage}', '{}'", target.name);
    let staged = || {
        sql(
            &admin_url(),
            &format!(
                "SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA IN ({dbs}) \
                 AND TABLE_NAME = 'orders' AND COLUMN_NAME = 'customer_email'"
            ),
        ) == "1"
            && sql(
                &admin_url(),
                &format!(
                    "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
                     WHERE DB IN ({dbs}) AND COMMAND = 'Sleep'"
                ),
            ) == "1"
    };
    crate::copy::wait_for(
        60,
        "the first table was restored",
        Some(&mut child.0),
        staged,
    );
    crate::copy::send_signal(child.0.id(), signal);
    let status = child.0.wait().unwrap();
    assert_eq!(status.code(), None, "berth died of the signal: {status}");

    let gone = || {
        sql(
            &admin_url(),
            &format!("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB IN ({dbs})"),
        ) == "0"
    };
    crate::copy::wait_for(30, "the restore session ended", None, gone);
    assert_eq!(
        target.rows("users", &["email"]),
        users,
        "old users untouched"
    );
    assert_eq!(target.rows("orders", &["note"]), orders);
    assert_eq!(
        tables(&target.name),
        before,
        "nothing swapped into the target"
    );

    // The next copy drops the leftover stage and converges.
    let out = berth_copy(&source, &target, RULES);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(target.rows("users", &["email"]).len(), 2000);
    assert_eq!(target.rows("orders", &["total"]).len(), 4000);
    assert_eq!(tables(&stage), "", "no stage left behind");
}

#[test]
fn a_mysql_copy_killed_by_sigterm_mid_stream_leaves_the_target_as_it_was() {
    a_mysql_copy_killed_mid_stream_keeps_the_target("TERM");
}

#[test]
fn a_mysql_copy_killed_by_sigkill_mid_stream_leaves_the_target_as_it_was() {
    a_mysql_copy_killed_mid_stream_keeps_the_target("KILL");
}
