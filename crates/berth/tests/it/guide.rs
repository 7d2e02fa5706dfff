//! docs/getting-started.md cannot rot: every ```sh block in it is run, in order, as one bash
//! script against the test environment, the way a reader pastes them into one shell. Blocks
//! fenced ```sh reader hold the reader's own values (their registry, their context) and are
//! not run: the test environment's variables stand in for them. ```text blocks are output.

use std::path::Path;
use std::process::Command;

use berth_testkit::{TestEnv, unique_suffix};

/// The guide's runnable blocks: `(line of the opening fence, body)`.
fn sh_blocks(markdown: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(usize, bool, String)> = None;
    for (i, line) in markdown.lines().enumerate() {
        match &mut current {
            None => {
                if let Some(info) = line.strip_prefix("```") {
                    current = Some((i + 1, info.trim() == "sh", String::new()));
                }
            }
            Some((start, runnable, body)) => {
                if line.trim_end() == "```" {
                    if *runnable {
                        blocks.push((*start, std::mem::take(body)));
                    }
                    current = None;
                } else {
                    body.push_str(line);
                    body.push('\n');
                }
            }
        }
    }
    assert!(current.is_none(), "a code block is not closed");
    blocks
}

#[test]
fn blocks_are_found_by_their_info_string() {
    let md = "a\n```sh\necho one\n```\n```sh reader\nexport X=1\n```\n```text\nout\n```\n```sh\necho two\n```\n";
    assert_eq!(
        sh_blocks(md),
        [
            (2, "echo one\n".to_string()),
            (11, "echo two\n".to_string())
        ]
    );
}

#[test]
fn every_command_of_the_getting_started_guide_runs() {
    let env = TestEnv::get();
    let guide = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/getting-started.md");
    let text = std::fs::read_to_string(&guide).unwrap();
    let blocks = sh_blocks(&text);
    assert!(
        blocks.len() >= 5,
        "docs/getting-started.md has {} sh blocks",
        blocks.len()
    );
    let mut script = String::from("set -euo pipefail\n");
    for (line, body) in &blocks {
        script.push_str(&format!(
            "printf '\\n### docs/getting-started.md:{line}\\n' >&2\n{body}"
        ));
    }
    script.push_str("printf '\\n### the guide ran to its end\\n' >&2\n");

    let work = tempfile::tempdir().unwrap();
    let home = work.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let berth_dir = Path::new(env!("CARGO_BIN_EXE_berth")).parent().unwrap();
    let namespace = format!("guide-{}", unique_suffix());
    // The reader's shell: the environment's variables, berth and the environment's tools on
    // PATH, a home of its own; bounded in time so a step that hangs fails this test only.
    let out = env
        .berth(Path::new("timeout"))
        .args(["--kill-after=10", "600", "bash", "-c", &script])
        .env("PATH", format!("{}:{}", berth_dir.display(), env.path()))
        .env("GUIDE_NAMESPACE", &namespace)
        .env("HOME", &home)
        .current_dir(work.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    // Whatever happened, no namespace of the guide's is left behind (its own and the one
    // `berth dev` deploys to).
    let dev = format!("{namespace}-dev");
    let _ = Command::new(env.bin_dir().join("kubectl"))
        .args([
            "delete",
            "namespace",
            &namespace,
            &dev,
            "--ignore-not-found",
            "--wait=false",
        ])
        .env("KUBECONFIG", env.kubeconfig())
        .output();
    let failed_at = stderr
        .lines()
        .rev()
        .find(|l| l.starts_with("### "))
        .unwrap_or("before the first block");
    assert!(
        out.status.success() && stderr.contains("### the guide ran to its end"),
        "the guide failed at {failed_at} ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
}
