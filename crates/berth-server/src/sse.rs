//! Live events of a run over Server-Sent Events.
//!
//! The stream subscribes to the run's live channel *first*, then catches up from the store
//! after the client's position (`Last-Event-ID`, or `?after=`), then forwards live events,
//! skipping any it already sent — so nothing falls in the gap between catch-up and live. Each
//! SSE message has the event's sequence number as `id` and its JSON as `data`; when the run
//! is over, a final `end` message carries its state and the stream closes. The live channel is
//! bounded (1024 events); a client too slow for it catches up from the store, page by page.

use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use berth_store::{RunId, StoredEvent};
use futures::Stream;
use tokio::sync::broadcast::error::RecvError;

use crate::app::Server;

fn message(e: &StoredEvent) -> SseEvent {
    SseEvent::default()
        .id(e.seq.to_string())
        .event("event")
        .data(
            serde_json::to_string(&serde_json::json!({"seq": e.seq, "at": e.at, "event": e.event}))
                .unwrap_or_default(),
        )
}

/// The SSE response for `run`, starting after sequence number `after`.
pub fn stream(
    server: Server,
    run: RunId,
    after: u64,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let s = async_stream::stream! {
        let mut live = server.subscribe(run);
        let mut last = after;
        // Catch up from the store, in pages (again after falling behind the live channel,
        // and at the end: however many events that is, none is skipped).
        macro_rules! catch_up {
            () => {
                loop {
                    match server.store().events(run, last, 500).await {
                        Ok(page) if !page.is_empty() => {
                            for e in &page {
                                last = e.seq;
                                yield Ok(message(e));
                            }
                        }
                        Ok(_) => break,
                        Err(e) => {
                            tracing::error!(run = %run, "reading events: {e}");
                            break;
                        }
                    }
                }
            };
        }
        catch_up!();
        if let Some(rx) = live.as_mut() {
            loop {
                match rx.recv().await {
                    Ok(e) if e.seq > last => {
                        last = e.seq;
                        yield Ok(message(&e));
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => {
                        // Too slow for the live channel (bounded): catch up from the store.
                        catch_up!();
                    }
                    Err(RecvError::Closed) => break,
                }
            }
            // Events stored between the last live one and the close.
            catch_up!();
        }
        // Ended (or not running here): say how it stands, then close.
        let state = match server.store().run(run).await {
            Ok(Some(r)) => r.state.to_string(),
            _ => "unknown".to_string(),
        };
        if state == "running" || state == "queued" {
            // Running in another process, or not started yet: the client reconnects with its
            // Last-Event-ID and picks up from there.
            yield Ok(SseEvent::default().retry(Duration::from_secs(1)).event("wait").data(state));
        } else {
            yield Ok(SseEvent::default().event("end").data(state));
        }
    };
    Sse::new(s).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
