//! Installing berth: shell completions, man pages, and the release tarball of scripts/release
//! run on a clean Debian machine.

use std::path::{Path, PathBuf};
use std::process::Command;

use berth_testkit::TestEnv;

fn bin() -> &'static Path {
    env!("CARGO_BIN_EXE_berth").as_ref()
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What bash offers after `berth WORDS...` with the completion script of `berth completions
/// bash` loaded, as a user's shell would after sourcing it.
fn bash_completes(script: &Path, words: &[&str]) -> Vec<String> {
    let line = words.join(" ");
    let program = format!(
        "source {script}\nCOMP_WORDS=({line})\nCOMP_CWORD={}\nCOMP_LINE='{line}'\nCOMP_POINT=${{#COMP_LINE}}\n_berth berth \"${{COMP_WORDS[-1]}}\" \"${{COMP_WORDS[-2]}}\"\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        words.len() - 1,
        script = script.display()
    );
    run_ok(Command::new("bash").arg("-c").arg(program))
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn bash_completion_offers_subcommands_and_their_flags() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("berth.bash");
    std::fs::write(
        &script,
        run_ok(Command::new(bin()).args(["completions", "bash"])),
    )
    .unwrap();

    let offered = bash_completes(&script, &["berth", "de"]);
    for expected in ["deploy", "dev"] {
        assert!(
            offered.iter().any(|o| o == expected),
            "`berth de<TAB>` offered {offered:?}"
        );
    }
    assert!(!offered.iter().any(|o| o == "serve"), "{offered:?}");
    let flags = bash_completes(&script, &["berth", "run", "--na"]);
    assert!(
        flags.iter().any(|o| o == "--namespace"),
        "`berth run --na<TAB>` offered {flags:?}"
    );
}

#[test]
fn zsh_and_fish_completions_name_every_subcommand() {
    let help = run_ok(Command::new(bin()).arg("--help"));
    // The subcommands as `berth --help` lists them (two spaces, a name, spaces, a summary).
    let subcommands: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter(|l| !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(subcommands.len() > 10, "{help}");
    for shell in ["zsh", "fish"] {
        let script = run_ok(Command::new(bin()).args(["completions", shell]));
        for c in &subcommands {
            assert!(script.contains(c), "the {shell} completion has no `{c}`");
        }
    }
    let wrong = Command::new(bin())
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert!(!wrong.status.success());
    let text = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        text.contains("possible values") && text.contains("bash"),
        "{text}"
    );
}

#[test]
fn man_pages_render_for_berth_and_each_subcommand() {
    let page = run_ok(Command::new(bin()).arg("man"));
    assert!(
        page.starts_with(".ie") || page.contains(".TH berth"),
        "{}",
        &page[..page.len().min(300)]
    );
    let dir = tempfile::tempdir().unwrap();
    run_ok(
        Command::new(bin())
            .args(["man", "--out-dir"])
            .arg(dir.path()),
    );
    for name in [
        "berth.1",
        "berth-run.1",
        "berth-deploy.1",
        "berth-serve.1",
        "berth-doctor.1",
    ] {
        let path = dir.path().join(name);
        assert!(
            path.is_file(),
            "no {name} in {:?}",
            std::fs::read_dir(dir.path()).unwrap().collect::<Vec<_>>()
        );
        // groff reads it as a man page, as `man` would.
        let text = run_ok(Command::new("groff").args(["-man", "-Tutf8"]).arg(&path));
        assert!(
            text.contains("SYNOPSIS") || text.contains("S\u{8}SY"),
            "{name}:\n{text}"
        );
    }
    let text = run_ok(
        Command::new("groff")
            .args(["-man", "-Tascii", "-P", "-c", "-P", "-b", "-P", "-u"])
            .arg(dir.path().join("berth-run.1")),
    );
    assert!(text.contains("--namespace"), "{text}");
}

#[test]
fn release_tarball_runs_berth_doctor_on_a_clean_debian_against_the_cluster() {
    let env = TestEnv::get();
    let work = tempfile::tempdir().unwrap();
    let dist = work.path().join("dist");
    // The test packages the binary cargo built for the tests (`--binary`): building a release
    // binary here would take the suite's time twice over; the packaging, the checksum and the
    // clean machine are what is under test, and a release build goes through the same steps.
    let said = run_ok(
        Command::new(repo_root().join("scripts/release"))
            .arg("--binary")
            .arg(bin())
            .arg("--out")
            .arg(&dist),
    );
    assert!(said.contains("needs glibc >= 2."), "{said}");
    let version = env!("CARGO_PKG_VERSION");
    let name = format!("berth-{version}-linux-amd64");
    let tarball = dist.join(format!("{name}.tar.gz"));
    assert!(tarball.is_file(), "{said}");
    run_ok(
        Command::new("sha256sum")
            .arg("-c")
            .arg(format!("{name}.tar.gz.sha256"))
            .current_dir(&dist),
    );

    // Same binary, same tarball, byte for byte.
    let again = work.path().join("again");
    run_ok(
        Command::new(repo_root().join("scripts/release"))
            .arg("--binary")
            .arg(bin())
            .arg("--out")
            .arg(&again),
    );
    assert_eq!(
        std::fs::read(&tarball).unwrap(),
        std::fs::read(again.join(format!("{name}.tar.gz"))).unwrap(),
        "the tarball is not reproducible"
    );

    // A clean machine: the Debian bookworm-slim root file system the environment built, with
    // nothing of berth's (no runc, kubectl, helm, git), the tarball unpacked into /opt.
    let debian = env.bin_dir().join("../rootfs/debian-bookworm-slim.tar");
    assert!(
        debian.is_file(),
        "no {}: bring the environment up: testenv/berth-testenv up",
        debian.display()
    );
    let root = work.path().join("root");
    std::fs::create_dir(&root).unwrap();
    run_ok(
        Command::new("tar")
            .arg("-xf")
            .arg(&debian)
            .arg("-C")
            .arg(&root),
    );
    run_ok(
        Command::new("tar")
            .arg("-xzf")
            .arg(&tarball)
            .arg("-C")
            .arg(root.join("opt")),
    );
    let listing = run_ok(Command::new("tar").arg("-tzf").arg(&tarball));
    for file in [
        "berth",
        "completions/berth.bash",
        "completions/_berth",
        "completions/berth.fish",
        "man/berth.1",
        "man/berth-run.1",
        "README.md",
    ] {
        assert!(
            listing.lines().any(|l| l == format!("{name}/{file}")),
            "no {file} in:\n{listing}"
        );
    }
    // The cluster's credentials, as a user would copy their kubeconfig (certificates inline).
    let kubeconfig = run_ok(
        Command::new(env.bin_dir().join("kubectl"))
            .args(["config", "view", "--raw", "--flatten", "--kubeconfig"])
            .arg(env.kubeconfig()),
    );
    std::fs::create_dir_all(root.join("root/.kube")).unwrap();
    std::fs::write(root.join("root/.kube/config"), kubeconfig).unwrap();

    let registry = env.registry_host();
    let inside = format!(
        "mount -t proc proc /proc && cd /root && exec env -i HOME=/root PATH=/usr/local/bin:/usr/bin:/bin \
         BERTH_REGISTRY={registry} BERTH_INSECURE_REGISTRIES={registry} \
         /opt/{name}/berth doctor --output json --namespace default"
    );
    let out = Command::new("unshare")
        .args(["--fork", "--pid", "--mount", "chroot"])
        .arg(&root)
        .args(["/bin/sh", "-c", &inside])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!("berth doctor on the clean machine gave no report ({e}):\n{stdout}\n{stderr}")
    });
    let check = |name: &str| {
        doc["checks"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["name"] == name))
            .unwrap_or_else(|| panic!("no {name} check in {doc}"))
            .clone()
    };
    // The cluster and the registry answer from the clean machine; it lacks an OCI runtime,
    // which doctor names with the package to install, and so exits non-zero.
    assert_eq!(check("kube")["status"], "ok", "{doc}");
    assert_eq!(check("registry")["status"], "ok", "{doc}");
    let runtime = check("oci-runtime");
    assert_eq!(runtime["status"], "fail", "{doc}");
    assert!(
        runtime.to_string().contains("apt-get install runc"),
        "{runtime}"
    );
    // Nor has it git: a warning that says what it is for and how to install it.
    let git = check("git");
    assert_eq!(git["status"], "warn", "{doc}");
    assert!(git.to_string().contains("apt-get install git"), "{git}");
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    // Debian slim has no CA certificates: berth says it trusts its own bundled roots (before
    // the fix it panicked building its registry client).
    assert!(stderr.contains("no CA certificates"), "{stderr}");
}
