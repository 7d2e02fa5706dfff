use serde::{Deserialize, Serialize};

use crate::{Step, StepOf};

/// How much an event matters to the person watching.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Progress worth a line.
    Info,
    /// Something to look at that did not stop the work.
    Warning,
    /// Something failed.
    Error,
}

/// What libraries report instead of printing. The CLI renders events as progress lines or
/// JSON; the server streams them to the web UI and stores them with the run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A named step started (build, push, render, deploy, a doctor check...).
    StepStarted {
        /// The step (on the wire its stable name: `deploy`, `kids/build`).
        step: StepOf,
    },
    /// A named step finished.
    StepFinished {
        /// The step, as in `StepStarted`.
        step: StepOf,
        /// Whether it succeeded.
        ok: bool,
        /// Wall time in milliseconds.
        millis: u64,
        /// One-line summary for people.
        message: String,
    },
    /// A free-form message from a step.
    Message {
        /// Step it belongs to.
        step: StepOf,
        /// Severity.
        level: Level,
        /// Text for people; never contains secrets.
        message: String,
    },
    /// One Kubernetes object changed state during a deploy (applied, progressing, ready,
    /// failed, pruned...). The CLI shows one line per object from these.
    ObjectState {
        /// `Kind/name`.
        object: String,
        /// What happened to it; on the wire its stable name (`applied`, `rolled-back`, ...).
        state: State,
        /// Details for people.
        message: String,
        /// Milliseconds since the deploy started.
        millis: u64,
    },
    /// A canary release moved on (see [`crate::canary`]): a weight reached, a pause, a check's
    /// measurement, an answer, the end. The web UI shows the latest as the release's state.
    Canary {
        /// The step (1-based) it is about.
        step: usize,
        /// How many steps the canary has.
        steps: usize,
        /// The share of pods (percent) running the new revision now.
        weight: u8,
        /// What happened; on the wire its stable name (`paused`, `check-failed`, ...).
        state: crate::canary::CanaryState,
        /// Details for people: the pods each workload runs, a measurement, why it stopped.
        message: String,
    },
}

impl Event {
    /// A canary event as the deploy's message a person reads (`None` for other events).
    pub fn canary_message(&self) -> Option<Event> {
        match self {
            Event::Canary {
                step,
                steps,
                weight,
                state,
                message,
            } => Some(Event::Message {
                step: crate::Step::Deploy.into(),
                level: state.level(),
                message: Event::canary_line(*step, *steps, *weight, *state, message),
            }),
            _ => None,
        }
    }

    /// A canary event as one line for people:
    /// `canary step 2/5 at 20%, paused: resume with ...`.
    pub fn canary_line(
        step: usize,
        steps: usize,
        weight: u8,
        state: crate::canary::CanaryState,
        message: &str,
    ) -> String {
        format!("canary step {step}/{steps} at {weight}%, {state}: {message}")
    }
}

/// What happened to one object, as [`Event::ObjectState`] says it. Serialized as its stable
/// name (`applied`, `unchanged`, `progressing`, `ready`, `failed`, `pruned`, `deleted`,
/// `rolled-back`, `waiting`): the JSON stream, the server's stored events and the web UI's
/// script read those names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// Sent to the API server (created or changed).
    Applied,
    /// Already as the release wants it.
    Unchanged,
    /// On its way to ready; the message says how far.
    Progressing,
    /// Ready.
    Ready,
    /// Will not become ready; the message says why.
    Failed,
    /// Deleted because the release no longer has it.
    Pruned,
    /// Deleted for another reason (a replaced claim, a failed first install's object).
    Deleted,
    /// Put back as the previous revision had it.
    RolledBack,
    /// Still awaited after a while (the heartbeat of a long wait).
    Waiting,
}

impl State {
    /// The stable name.
    pub fn name(self) -> &'static str {
        match self {
            State::Applied => "applied",
            State::Unchanged => "unchanged",
            State::Progressing => "progressing",
            State::Ready => "ready",
            State::Failed => "failed",
            State::Pruned => "pruned",
            State::Deleted => "deleted",
            State::RolledBack => "rolled-back",
            State::Waiting => "waiting",
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `pad` so that `{state:<12}` lines up in the CLI's columns.
        f.pad(self.name())
    }
}

/// Something that receives events. Implemented by the binary (terminal, JSON), the server (SSE,
/// store) and tests (a Vec).
pub trait EventSink: Send + Sync {
    /// Accepts one event. Must not block for long.
    fn emit(&self, event: Event);
}

impl<F: Fn(Event) + Send + Sync> EventSink for F {
    fn emit(&self, event: Event) {
        self(event)
    }
}

/// A sink that attributes every event to one service ([`StepOf::service`]), renaming steps
/// through `rename` first (e.g. the publishing pass of a build reports `push`, not `build`).
pub struct ForService {
    service: String,
    rename: &'static [(Step, Step)],
    inner: std::sync::Arc<dyn EventSink>,
}

impl ForService {
    /// Attributes `inner`'s events to `service`.
    pub fn new(service: &str, inner: std::sync::Arc<dyn EventSink>) -> ForService {
        ForService {
            service: service.to_string(),
            rename: &[],
            inner,
        }
    }

    /// Renames steps (`from`, `to`) before attributing them.
    pub fn renaming(mut self, rename: &'static [(Step, Step)]) -> ForService {
        self.rename = rename;
        self
    }

    fn step(&self, step: StepOf) -> StepOf {
        let step = self
            .rename
            .iter()
            .find(|(from, _)| *from == step.step)
            .map_or(step.step, |(_, to)| *to);
        StepOf::service(&self.service, step)
    }
}

impl EventSink for ForService {
    fn emit(&self, event: Event) {
        let event = match event {
            Event::StepStarted { step } => Event::StepStarted {
                step: self.step(step),
            },
            Event::StepFinished {
                step,
                ok,
                millis,
                message,
            } => Event::StepFinished {
                step: self.step(step),
                ok,
                millis,
                message,
            },
            Event::Message {
                step,
                level,
                message,
            } => Event::Message {
                step: self.step(step),
                level,
                message,
            },
            other @ (Event::ObjectState { .. } | Event::Canary { .. }) => other,
        };
        self.inner.emit(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The wire names are what the JSON stream, stored events and the UI's script read: a
    /// rename of a variant must not change them.
    #[test]
    fn object_states_keep_their_wire_names() {
        let all = [
            State::Applied,
            State::Unchanged,
            State::Progressing,
            State::Ready,
            State::Failed,
            State::Pruned,
            State::Deleted,
            State::RolledBack,
            State::Waiting,
        ];
        for s in all {
            let json = serde_json::to_value(s).unwrap();
            assert_eq!(json, serde_json::json!(s.name()));
            assert_eq!(serde_json::from_value::<State>(json).unwrap(), s);
            assert_eq!(format!("{s:<12}|").len(), 13);
        }
        assert_eq!(State::RolledBack.name(), "rolled-back");
        let e: Event = serde_json::from_str(
            r#"{"event":"object_state","object":"Deployment/web","state":"rolled-back","message":"","millis":5}"#,
        )
        .unwrap();
        assert!(matches!(
            e,
            Event::ObjectState {
                state: State::RolledBack,
                ..
            }
        ));
    }

    #[test]
    fn service_steps_are_attributed_and_split_back() {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let into = seen.clone();
        let sink: std::sync::Arc<dyn EventSink> =
            std::sync::Arc::new(move |e: Event| into.lock().unwrap().push(e));
        let kids = ForService::new("kids", sink).renaming(&[(Step::Build, Step::Push)]);
        kids.emit(Event::StepStarted {
            step: Step::Build.into(),
        });
        kids.emit(Event::Message {
            step: Step::Run.into(),
            level: Level::Info,
            message: "ok".into(),
        });
        let seen = seen.lock().unwrap();
        assert_eq!(
            seen[0],
            Event::StepStarted {
                step: StepOf::service("kids", Step::Push)
            }
        );
        let Event::Message { step, .. } = &seen[1] else {
            panic!("{seen:?}")
        };
        assert_eq!(
            (step.service.as_deref(), step.step),
            (Some("kids"), Step::Run)
        );
        assert_eq!(step.to_string(), "kids/run");
    }

    #[test]
    fn events_serialize_with_a_tag() {
        let e = Event::StepFinished {
            step: Step::Push.into(),
            ok: true,
            millis: 12,
            message: "ok".into(),
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["event"], "step_finished");
        assert_eq!(v["step"], "push");
        assert_eq!(v["millis"], 12);
    }

    #[test]
    fn events_read_back_from_their_json() {
        // The run store keeps events as this JSON and hands them back to the web UI.
        let e = Event::Message {
            step: StepOf::service("web", Step::Deploy),
            level: Level::Warning,
            message: "slow".into(),
        };
        let back: Event = serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
        assert_eq!(back, e);
    }
}
