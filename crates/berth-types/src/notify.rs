//! The events of a run an environment's receivers are told of (`environments[].notify`).

use serde::{Deserialize, Serialize};

/// A run event sent to the environment's receivers. On the wire, its stable name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NotifyEvent {
    /// The run started.
    Started,
    /// The release is deployed and ready.
    Succeeded,
    /// The run failed before or during the deploy, and nothing was rolled back.
    Failed,
    /// The new release did not become ready and the previous one was put back.
    RolledBack,
    /// The new release's canary waits at a pause for `berth promote --resume` (once per
    /// pause).
    Paused,
    /// Every step of the new release's canary passed: all its pods move to it.
    Promoted,
    /// The new release's canary was stopped (a check failed, a pause timed out, a person
    /// aborted it) and the previous one serves every pod again.
    Aborted,
}

impl NotifyEvent {
    /// Every event, in the order a run can send them.
    pub const ALL: [NotifyEvent; 7] = [
        NotifyEvent::Started,
        NotifyEvent::Paused,
        NotifyEvent::Promoted,
        NotifyEvent::Succeeded,
        NotifyEvent::Failed,
        NotifyEvent::RolledBack,
        NotifyEvent::Aborted,
    ];

    /// The stable name: `started`, `paused`, `promoted`, `succeeded`, `failed`, `rolled-back`,
    /// `aborted`.
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyEvent::Started => "started",
            NotifyEvent::Succeeded => "succeeded",
            NotifyEvent::Failed => "failed",
            NotifyEvent::RolledBack => "rolled-back",
            NotifyEvent::Aborted => "aborted",
            NotifyEvent::Paused => "paused",
            NotifyEvent::Promoted => "promoted",
        }
    }
}

impl std::fmt::Display for NotifyEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// A name no [`NotifyEvent`] has.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown event `{0}`; expected one of started, paused, promoted, succeeded, failed, rolled-back, aborted"
)]
pub struct UnknownEvent(pub String);

impl std::str::FromStr for NotifyEvent {
    type Err = UnknownEvent;

    fn from_str(s: &str) -> Result<NotifyEvent, UnknownEvent> {
        NotifyEvent::ALL
            .into_iter()
            .find(|e| e.as_str() == s)
            .ok_or_else(|| UnknownEvent(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_match_serde() {
        for e in NotifyEvent::ALL {
            assert_eq!(e.as_str().parse::<NotifyEvent>().unwrap(), e);
            assert_eq!(
                serde_json::to_value(e).unwrap(),
                serde_json::json!(e.as_str())
            );
        }
        assert!("rolledback".parse::<NotifyEvent>().is_err());
    }
}

/// A message a run hands to its host's outbox instead of sending it itself (`berth serve`
/// keeps it in its store and sends it with retries, across restarts).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Queued {
    /// `RUN.EVENT.N`: the `X-Berth-Delivery` header.
    pub delivery: String,
    /// The run's id.
    pub run: String,
    /// The receiver, for messages (`webhook $VAR`).
    pub receiver: String,
    /// The variable holding the receiver's URL (never the URL).
    pub url_env: String,
    /// The variable holding the HMAC key, if signed.
    pub key_env: Option<String>,
    /// The event.
    pub event: NotifyEvent,
    /// The exact JSON body.
    pub body: String,
}

/// Where a host keeps a run's messages until they are delivered.
pub trait Outbox: Send + Sync {
    /// Keeps `message`; an error says why it could not (the run then sends it itself).
    fn put(
        &self,
        message: Queued,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + '_>>;
}
