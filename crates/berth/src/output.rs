//! What every command prints the same way: events (lines for people on stderr, JSON lines for
//! machines on stdout), a failure, and who is acting (`user@host`).

use std::process::ExitCode;

use berth_types::{Event, EventSink, Level};

/// Prints events: lines on stderr for people, JSON lines on stdout for machines.
pub struct Printer {
    /// JSON lines on stdout instead of text on stderr.
    pub json: bool,
}

impl EventSink for Printer {
    fn emit(&self, event: Event) {
        if self.json {
            println!(
                "{}",
                serde_json::to_string(&event).expect("events serialize")
            );
            return;
        }
        match event {
            Event::ObjectState {
                object,
                state,
                message,
                millis,
            } => {
                let secs = millis as f64 / 1000.0;
                if message.is_empty() {
                    eprintln!("{secs:>7.1}s  {object:<40} {state}");
                } else {
                    eprintln!("{secs:>7.1}s  {object:<40} {state:<12} {message}");
                }
            }
            Event::Message {
                step,
                level,
                message,
            } => {
                // Services build in parallel: say whose line it is.
                let message = match &step.service {
                    Some(service) if !message.starts_with(service.as_str()) => {
                        format!("{service} | {message}")
                    }
                    _ => message,
                };
                match level {
                    Level::Info => eprintln!("{message}"),
                    Level::Warning => eprintln!("warning: {message}"),
                    Level::Error => eprintln!("error: {message}"),
                }
            }
            Event::StepStarted { .. } | Event::StepFinished { .. } => {}
            canary @ Event::Canary { .. } => {
                if let Some(m) = canary.canary_message() {
                    self.emit(m);
                }
            }
        }
    }
}

/// `user@host`, for release records and lock holders.
pub fn user() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    format!("{user}@{host}")
}

/// Reports a failed deploy or run: a result document for machines, the error for people;
/// exit code 1.
pub fn failed(json: bool, e: &dyn std::fmt::Display) -> ExitCode {
    if json {
        println!(
            "{}",
            serde_json::json!({"result": "failed", "error": e.to_string()})
        );
    }
    eprintln!("error: {e}");
    ExitCode::from(1)
}
