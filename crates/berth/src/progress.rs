//! Progress in a terminal: one spinner per step under way (`kids  build`, `deploy`), each
//! turned into a line with its wall time when it ends; everything else as lines above them.
//!
//! Used only when stderr is a terminal and the output is not JSON; otherwise berth prints
//! plain lines ([`crate::output::Printer`]), which suit CI logs.
//!
//! The decisions (which bar an event belongs to, what a finished step's line says) are made by
//! [`Board`], pure and unit-tested; [`Terminal`] only applies them with indicatif.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use berth_types::{Event, EventSink, Level, Step, StepOf};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// What to show for one event.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// A step started: a spinner `key`, labelled.
    Start {
        /// The step's name, as in the events.
        key: String,
        /// `kids  build` or `deploy`.
        label: String,
    },
    /// The latest news of a step under way.
    Update {
        /// The step.
        key: String,
        /// One line.
        message: String,
    },
    /// A step ended: its spinner becomes `line`.
    Finish {
        /// The step.
        key: String,
        /// `✓ kids  build      1.23s  built sha256:...`.
        line: String,
    },
    /// A line above the spinners.
    Line(String),
}

/// Which steps are under way, and for each service the one its messages belong to.
#[derive(Default)]
pub struct Board {
    /// Steps under way, in the order they started.
    open: Vec<StepOf>,
}

fn label(step: &StepOf) -> String {
    match &step.service {
        Some(service) => format!("{service}  {}", step.step),
        None => step.step.to_string(),
    }
}

fn first_line(message: &str) -> String {
    message.lines().next().unwrap_or("").to_string()
}

/// `sha256:` digests cut to 12 hex digits: a finished step's line should fit a terminal row.
fn short_digests(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(i) = rest.find("sha256:") {
        let (head, tail) = rest.split_at(i + "sha256:".len());
        out.push_str(head);
        let hex = tail.chars().take_while(char::is_ascii_hexdigit).count();
        if hex == 64 {
            out.push_str(&tail[..12]);
            rest = &tail[64..];
        } else {
            rest = tail;
        }
    }
    out.push_str(rest);
    out
}

impl Board {
    /// The step a message of `step` belongs to: the step itself when under way, else the
    /// service's latest step under way (a build's RUN output, `kids/run`, belongs to
    /// `kids/build`), else the run-wide step of that name.
    fn owner(&self, step: &StepOf) -> Option<StepOf> {
        if self.open.iter().any(|k| k == step) {
            return Some(step.clone());
        }
        self.open
            .iter()
            .rev()
            .find(|k| step.service.is_some() && k.service == step.service)
            .cloned()
    }

    /// What to show for `event`.
    pub fn on(&mut self, event: &Event) -> Vec<Action> {
        match event {
            Event::Canary { .. } => match event.canary_message() {
                Some(m) => self.on(&m),
                None => Vec::new(),
            },
            Event::StepStarted { step } => {
                self.open.push(step.clone());
                vec![Action::Start {
                    key: step.to_string(),
                    label: label(step),
                }]
            }
            Event::StepFinished {
                step,
                ok,
                millis,
                message,
            } => {
                let mark = if *ok { '✓' } else { '✗' };
                let line = format!(
                    "{mark} {:<22} {:>6.2}s  {}",
                    label(step),
                    *millis as f64 / 1000.0,
                    short_digests(&first_line(message))
                );
                match self.open.iter().position(|k| k == step) {
                    Some(i) => {
                        self.open.remove(i);
                        vec![Action::Finish {
                            key: step.to_string(),
                            line,
                        }]
                    }
                    None => vec![Action::Line(line)],
                }
            }
            Event::Message {
                step,
                level,
                message,
            } => {
                let owner = self.owner(step);
                let text = match level {
                    Level::Info => message.clone(),
                    Level::Warning => format!("warning: {message}"),
                    Level::Error => format!("error: {message}"),
                };
                match owner {
                    // A build's own chatter (its steps, RUN output) only updates its spinner;
                    // errors, and what the run or the deploy says, stay on screen.
                    Some(key) if *level != Level::Error && key.service.is_some() => {
                        vec![Action::Update {
                            key: key.to_string(),
                            message: first_line(message),
                        }]
                    }
                    Some(key) => vec![
                        Action::Update {
                            key: key.to_string(),
                            message: first_line(message),
                        },
                        Action::Line(text),
                    ],
                    None => vec![Action::Line(text)],
                }
            }
            Event::ObjectState {
                object,
                state,
                message,
                millis,
            } => {
                let secs = *millis as f64 / 1000.0;
                let line = if message.is_empty() {
                    format!("{secs:>7.1}s  {object:<40} {state}")
                } else {
                    format!("{secs:>7.1}s  {object:<40} {state:<12} {message}")
                };
                let mut out = Vec::new();
                if let Some(key) = self.owner(&Step::Deploy.into()) {
                    out.push(Action::Update {
                        key: key.to_string(),
                        message: format!("{object} {state}"),
                    });
                }
                out.push(Action::Line(line));
                out
            }
        }
    }
}

/// The spinners of the process: one drawing area, shared by every run of a `berth dev`
/// session, so that lines printed by others ([`print_line`]) can move it out of the way.
static BARS: std::sync::OnceLock<MultiProgress> = std::sync::OnceLock::new();

fn bars() -> MultiProgress {
    BARS.get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
        .clone()
}

/// Prints a line on stdout without tearing the spinners drawn on stderr (when there are any).
pub fn print_line(line: &str) {
    match BARS.get() {
        Some(bars) => bars.suspend(|| println!("{line}")),
        None => println!("{line}"),
    }
}

/// The terminal renderer: indicatif spinners on stderr.
pub struct Terminal {
    state: Mutex<(Board, HashMap<String, ProgressBar>)>,
    bars: MultiProgress,
    running: ProgressStyle,
}

impl Terminal {
    /// A renderer drawing on stderr.
    pub fn new() -> Terminal {
        Terminal {
            state: Mutex::new((Board::default(), HashMap::new())),
            bars: bars(),
            running: ProgressStyle::with_template(
                "{spinner:.cyan} {prefix:<22} {elapsed:>6}  {wide_msg:.dim}",
            )
            .expect("the template is valid")
            .tick_chars("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏ "),
        }
    }
}

impl EventSink for Terminal {
    fn emit(&self, event: Event) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (board, open) = &mut *state;
        for action in board.on(&event) {
            match action {
                Action::Start { key, label } => {
                    let bar = self.bars.add(ProgressBar::new_spinner());
                    bar.set_style(self.running.clone());
                    bar.set_prefix(label);
                    bar.enable_steady_tick(Duration::from_millis(100));
                    open.insert(key, bar);
                }
                Action::Update { key, message } => {
                    if let Some(bar) = open.get(&key) {
                        bar.set_message(message);
                    }
                }
                Action::Finish { key, line } => {
                    if let Some(bar) = open.remove(&key) {
                        bar.finish_and_clear();
                        self.bars.remove(&bar);
                    }
                    let _ = self.bars.println(line);
                }
                Action::Line(line) => {
                    let _ = self.bars.println(line);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started(step: &str) -> Event {
        Event::StepStarted {
            step: step.parse().unwrap(),
        }
    }

    fn said(step: &str, level: Level, message: &str) -> Event {
        Event::Message {
            step: step.parse().unwrap(),
            level,
            message: message.into(),
        }
    }

    #[test]
    fn parallel_builds_keep_their_own_spinner_and_end_as_timed_lines() {
        let mut b = Board::default();
        assert_eq!(
            b.on(&started("kids/build")),
            [Action::Start {
                key: "kids/build".into(),
                label: "kids  build".into()
            }]
        );
        b.on(&started("home/build"));
        // RUN output of kids (`kids/run`) belongs to kids' build, not to the latest bar.
        assert_eq!(
            b.on(&said("kids/run", Level::Warning, "apt: 3 packages\nmore")),
            [Action::Update {
                key: "kids/build".into(),
                message: "apt: 3 packages".into()
            }]
        );
        assert_eq!(
            b.on(&Event::StepFinished {
                step: StepOf::service("home", Step::Build),
                ok: true,
                millis: 1234,
                message: "built sha256:ab (3 steps, 2 cached)".into(),
            }),
            [Action::Finish {
                key: "home/build".into(),
                line: format!(
                    "✓ {:<22} {:>6.2}s  built sha256:ab (3 steps, 2 cached)",
                    "home  build", 1.234
                )
            }]
        );
        // An error of a build stays on screen.
        let error = b.on(&said("kids/build", Level::Error, "RUN exit 3 failed"));
        assert_eq!(error[1], Action::Line("error: RUN exit 3 failed".into()));
        let failed = b.on(&Event::StepFinished {
            step: StepOf::service("kids", Step::Build),
            ok: false,
            millis: 50,
            message: "step 2 failed\ndetails".into(),
        });
        let [Action::Finish { line, .. }] = failed.as_slice() else {
            panic!("{failed:?}")
        };
        assert!(line.starts_with("✗ kids  build"), "{line}");
        assert!(line.ends_with("0.05s  step 2 failed"), "{line}");
    }

    #[test]
    fn finished_lines_shorten_digests() {
        let d = "a".repeat(64);
        assert_eq!(
            short_digests(&format!("pushed r/kids@sha256:{d} and sha256:beef")),
            "pushed r/kids@sha256:aaaaaaaaaaaa and sha256:beef"
        );
    }

    #[test]
    fn deploy_objects_are_lines_and_update_the_deploy_spinner() {
        let mut b = Board::default();
        // No step under way: a plain line, as without a terminal.
        assert_eq!(
            b.on(&said("run", Level::Info, "kids: changed")),
            [Action::Line("kids: changed".into())]
        );
        b.on(&started("deploy"));
        let shown = b.on(&Event::ObjectState {
            object: "Deployment/kids".into(),
            state: berth_types::State::Ready,
            message: String::new(),
            millis: 1500,
        });
        assert_eq!(
            shown,
            [
                Action::Update {
                    key: "deploy".into(),
                    message: "Deployment/kids ready".into()
                },
                Action::Line(format!("{:>7.1}s  {:<40} ready", 1.5, "Deployment/kids")),
            ]
        );
        // A step that finishes without having started (never shown) is still a line.
        let late = b.on(&Event::StepFinished {
            step: StepOf::service("kids", Step::Test),
            ok: true,
            millis: 10,
            message: "ok".into(),
        });
        assert!(matches!(late.as_slice(), [Action::Line(_)]), "{late:?}");
    }
}
