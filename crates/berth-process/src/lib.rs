//! Running a helper program to completion within a deadline.
//!
//! berth runs other programs on the way to a deploy: `helm template`, `kustomize build`, `git`
//! for change detection, `docker-credential-*` helpers. Each of them can hang — a chart
//! repository that never answers, a credential helper waiting on a keychain prompt, a git
//! command waiting on a lock — and a hang used to hold a run forever. [`output`] runs one with
//! a deadline: its stdout and stderr are drained while it runs (so a chatty program cannot
//! block on a full pipe), and at the deadline its whole process group is killed (helm's
//! plugins and git's helpers with it), then the call fails naming the program and the deadline.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt as _;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// What the program left behind.
#[derive(Debug)]
pub struct Finished {
    /// How it exited.
    pub status: ExitStatus,
    /// Everything it wrote to stdout.
    pub stdout: Vec<u8>,
    /// Everything it wrote to stderr.
    pub stderr: Vec<u8>,
}

/// Why a program did not finish.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// It could not be started.
    #[error("cannot start {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// It ran past its deadline and was killed.
    #[error("{program} did not finish within {}s and was stopped", .after.as_secs())]
    TimedOut {
        /// The program.
        program: String,
        /// The deadline.
        after: Duration,
    },
    /// Waiting for it failed.
    #[error("waiting for {program}: {source}")]
    Wait {
        /// The program.
        program: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl ProcessError {
    /// Whether the program does not exist (to say how to install it).
    pub fn is_not_found(&self) -> bool {
        matches!(self, ProcessError::Spawn { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

/// Runs `cmd` with `stdin` as its input (none: `/dev/null`) until it exits, or until
/// `deadline` has passed, when its process group is killed. The program gets a process group
/// of its own for that.
pub fn output(
    cmd: &mut Command,
    stdin: Option<&[u8]>,
    deadline: Duration,
) -> Result<Finished, ProcessError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .process_group(0);
    let mut child = cmd.spawn().map_err(|source| ProcessError::Spawn {
        program: program.clone(),
        source,
    })?;
    let started = Instant::now();
    let input = child.stdin.take().zip(stdin.map(<[u8]>::to_vec));
    let writer = input.map(|(mut pipe, bytes)| {
        std::thread::spawn(move || {
            // A program that exits without reading its input closes the pipe: not an error.
            let _ = pipe.write_all(&bytes);
        })
    });
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let mut nap = Duration::from_millis(1);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() >= deadline => {
                kill_group(&mut child);
                let _ = child.wait();
                return Err(ProcessError::TimedOut {
                    program,
                    after: deadline,
                });
            }
            Ok(None) => {
                std::thread::sleep(nap.min(deadline.saturating_sub(started.elapsed())));
                nap = (nap * 2).min(Duration::from_millis(20));
            }
            Err(source) => {
                kill_group(&mut child);
                return Err(ProcessError::Wait { program, source });
            }
        }
    };
    // Children of the program that kept its pipes open would keep the readers waiting: the
    // group goes with the program.
    kill_group(&mut child);
    if let Some(w) = writer {
        let _ = w.join();
    }
    Ok(Finished {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

/// The group the child leads (it was spawned with `process_group(0)`), so no unrelated
/// process is signalled.
fn kill_group(child: &mut std::process::Child) {
    let pid = rustix::process::Pid::from_child(child);
    let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    let _ = child.kill();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_and_status_come_back() {
        let f = output(
            Command::new("sh").args(["-c", "cat; echo err >&2; exit 3"]),
            Some(b"in"),
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(f.stdout, b"in");
        assert_eq!(f.stderr, b"err\n");
        assert_eq!(f.status.code(), Some(3));
    }

    #[test]
    fn a_program_past_its_deadline_is_killed_with_its_children() {
        let t0 = Instant::now();
        let e = output(
            Command::new("sh").args(["-c", "sleep 30 & sleep 30; echo never"]),
            None,
            Duration::from_millis(300),
        )
        .unwrap_err();
        assert!(matches!(e, ProcessError::TimedOut { .. }), "{e}");
        // The background child held stdout: had it survived, the call would wait for it.
        assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
        assert_eq!(e.to_string(), "sh did not finish within 0s and was stopped");
    }

    #[test]
    fn a_missing_program_says_so() {
        let e = output(
            &mut Command::new("berth-no-such-program"),
            None,
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(e.is_not_found(), "{e}");
    }

    #[test]
    fn more_output_than_a_pipe_holds_does_not_block() {
        let f = output(
            Command::new("sh").args([
                "-c",
                "head -c 1000000 /dev/zero; head -c 200000 /dev/zero >&2",
            ]),
            None,
            Duration::from_secs(20),
        )
        .unwrap();
        assert_eq!((f.stdout.len(), f.stderr.len()), (1_000_000, 200_000));
    }
}
