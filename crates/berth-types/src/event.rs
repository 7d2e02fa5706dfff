use serde::{Deserialize, Serialize};

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
        /// Step name, stable for machines.
        step: String,
    },
    /// A named step finished.
    StepFinished {
        /// Step name, as in `StepStarted`.
        step: String,
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
        step: String,
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
        /// Stable state name: `applied`, `unchanged`, `progressing`, `ready`, `failed`,
        /// `pruned`, `deleted`, `rolled-back`.
        state: String,
        /// Details for people.
        message: String,
        /// Milliseconds since the deploy started.
        millis: u64,
    },
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialize_with_a_tag() {
        let e = Event::StepFinished {
            step: "push".into(),
            ok: true,
            millis: 12,
            message: "ok".into(),
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["event"], "step_finished");
        assert_eq!(v["millis"], 12);
    }

    #[test]
    fn events_read_back_from_their_json() {
        // The run store keeps events as this JSON and hands them back to the web UI.
        let e = Event::Message {
            step: "deploy".into(),
            level: Level::Warning,
            message: "slow".into(),
        };
        let back: Event = serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
        assert_eq!(back, e);
    }
}
