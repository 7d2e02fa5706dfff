//! A run's events on their way to the store and its subscribers: bounded, batched, with
//! dropped output counted.

use super::*;

/// How much of a run's output may wait for the store.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SinkLimits {
    /// Events waiting beyond which a line of output is dropped (and counted).
    pub(crate) lines: usize,
    /// Bytes of text waiting beyond which a line of output is dropped (and counted).
    pub(crate) bytes: usize,
    /// Events waiting beyond which any event is dropped (and counted): a bound on memory
    /// whatever the engine reports.
    pub(crate) hard: usize,
    /// Events stored per transaction.
    pub(crate) batch: usize,
}

/// The limits of every run: at most 8 MiB of output (4096 lines) waiting for the store.
pub(crate) const SINK_LIMITS: SinkLimits = SinkLimits {
    lines: 4096,
    bytes: 8 << 20,
    hard: 16_384,
    batch: 256,
};

/// The events of a run waiting for the store.
#[derive(Default)]
struct Pending {
    queue: VecDeque<Event>,
    bytes: usize,
    /// Lines dropped since the last event that got in, and the step of the first of them.
    dropped: u64,
    dropped_step: Option<StepOf>,
    closed: bool,
}

/// Where a run's events go: into the store in order, then to live subscribers.
///
/// `emit` never blocks (the engine calls it from synchronous code, often a RUN step's output
/// reader) and the queue is bounded ([`SinkLimits`]). When the store falls behind, lines of
/// output (messages below `error`) that do not fit are dropped, never silently: the next
/// event that gets in is preceded by one warning, `[N lines of output dropped ...]`, in the
/// place where they were, and so is the end of the run. Step events, object states and errors
/// are kept up to the hard bound. One task per run drains the queue in batches of
/// [`SinkLimits::batch`] events per transaction. (A bounded `tokio::sync::mpsc` would drop
/// step events with the lines, or reorder them; this queue keeps both the order and the
/// bound.)
pub(crate) struct RunSink {
    queue: Arc<(Mutex<Pending>, Notify)>,
    limits: SinkLimits,
    drained: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// The deploy stage is open (reported by the engine, or opened here for one that does
    /// not report it).
    deploying: AtomicBool,
    deploy_started: Mutex<Option<Instant>>,
}

fn text_size(event: &Event) -> usize {
    match event {
        Event::StepStarted { step } => step_size(step),
        Event::StepFinished { step, message, .. } | Event::Message { step, message, .. } => {
            step_size(step) + message.len()
        }
        Event::ObjectState {
            object,
            state,
            message,
            ..
        } => object.len() + state.name().len() + message.len(),
        Event::Canary { state, message, .. } => state.as_str().len() + message.len(),
    }
}

fn step_size(step: &StepOf) -> usize {
    step.service.as_ref().map_or(0, |s| s.len() + 1) + step.step.name().len()
}

fn dropped_marker(n: u64, step: Option<StepOf>) -> Event {
    Event::Message {
        step: step.unwrap_or_else(|| Step::Run.into()),
        level: Level::Warning,
        message: format!(
            "[{n} line{} of output dropped: written faster than the server could store them]",
            if n == 1 { "" } else { "s" }
        ),
    }
}

/// Up to `max` events off the queue; with the queue closed and emptied, the count of lines
/// dropped at the end. Empty when closed and drained.
fn take_batch(p: &mut Pending, max: usize) -> Vec<Event> {
    let n = p.queue.len().min(max.max(1));
    let mut batch: Vec<Event> = p.queue.drain(..n).collect();
    p.bytes -= batch.iter().map(text_size).sum::<usize>().min(p.bytes);
    if p.queue.is_empty() && p.closed && p.dropped > 0 {
        let step = std::mem::take(&mut p.dropped_step);
        batch.push(dropped_marker(std::mem::take(&mut p.dropped), step));
    }
    batch
}

impl RunSink {
    pub(super) fn start(store: Store, run: RunId, live: broadcast::Sender<StoredEvent>) -> RunSink {
        Self::start_with(store, run, live, SINK_LIMITS)
    }

    pub(crate) fn start_with(
        store: Store,
        run: RunId,
        live: broadcast::Sender<StoredEvent>,
        limits: SinkLimits,
    ) -> RunSink {
        let queue: Arc<(Mutex<Pending>, Notify)> = Arc::default();
        let q = queue.clone();
        let drained = tokio::spawn(async move {
            loop {
                let batch: Option<Vec<Event>> = {
                    let mut p = q.0.lock().expect("sink");
                    if p.queue.is_empty() && !p.closed {
                        None
                    } else {
                        Some(take_batch(&mut p, limits.batch))
                    }
                };
                let Some(batch) = batch else {
                    // A permit stored by `notify_one` meanwhile makes this return at once.
                    q.1.notified().await;
                    continue;
                };
                if batch.is_empty() {
                    break; // closed and drained
                }
                match store.append_events(run, &batch).await {
                    Ok(seqs) => {
                        let at = jiff::Timestamp::now();
                        for (seq, event) in seqs.into_iter().zip(batch) {
                            let _ = live.send(StoredEvent {
                                seq,
                                run,
                                at,
                                event,
                            });
                        }
                    }
                    Err(e) => tracing::error!(
                        run = %run,
                        "storing {} events: {e}",
                        batch.len()
                    ),
                }
            }
        });
        RunSink {
            queue,
            limits,
            drained: Mutex::new(Some(drained)),
            deploying: AtomicBool::new(false),
            deploy_started: Mutex::new(None),
        }
    }

    pub(super) fn send(&self, event: Event) {
        let size = text_size(&event);
        let line = matches!(&event, Event::Message { level, .. } if *level != Level::Error);
        let mut p = self.queue.0.lock().expect("sink");
        if p.closed {
            return;
        }
        let len = p.queue.len();
        if len >= self.limits.hard
            || (line && (len >= self.limits.lines || p.bytes + size > self.limits.bytes))
        {
            if p.dropped == 0 {
                p.dropped_step = Some(match &event {
                    Event::StepStarted { step }
                    | Event::StepFinished { step, .. }
                    | Event::Message { step, .. } => step.clone(),
                    Event::ObjectState { .. } | Event::Canary { .. } => Step::Deploy.into(),
                });
            }
            p.dropped += 1;
            return;
        }
        if p.dropped > 0 {
            let step = std::mem::take(&mut p.dropped_step);
            let marker = dropped_marker(std::mem::take(&mut p.dropped), step);
            p.bytes += text_size(&marker);
            p.queue.push_back(marker);
        }
        p.bytes += size;
        p.queue.push_back(event);
        drop(p);
        self.queue.1.notify_one();
    }

    /// Opens a deploy stage for an engine that reports none of its own.
    pub(super) fn open_deploy(&self) {
        if !self.deploying.swap(true, Ordering::SeqCst) {
            *self.deploy_started.lock().expect("sink") = Some(Instant::now());
            self.send(Event::StepStarted {
                step: Step::Deploy.into(),
            });
        }
    }

    /// Closes the deploy stage if this sink opened it.
    pub(super) fn end_deploy(&self, ok: bool) {
        if let Some(t) = self.deploy_started.lock().expect("sink").take() {
            self.send(Event::StepFinished {
                step: Step::Deploy.into(),
                ok,
                millis: t.elapsed().as_millis() as u64,
                message: if ok {
                    "deployed".into()
                } else {
                    "failed".into()
                },
            });
        }
    }

    /// Waits until every event emitted so far is stored (and the count of any lines dropped
    /// at the end); later events are ignored.
    pub(crate) async fn finish(&self) {
        self.queue.0.lock().expect("sink").closed = true;
        self.queue.1.notify_one();
        let handle = self.drained.lock().expect("sink").take();
        if let Some(h) = handle {
            let _ = h.await;
        }
    }
}

impl EventSink for RunSink {
    fn emit(&self, event: Event) {
        // The run page shows a deploy stage. The pipeline reports the step itself; an engine
        // that does not (a bare rollback) is known by its first deploy word, and the stage is
        // opened for it. (Whether the run may still be cancelled is the engine's to say, through
        // its cancel token, not inferred from here.)
        match &event {
            Event::StepStarted { step } if *step == Step::Deploy => {
                self.deploying.store(true, Ordering::SeqCst);
            }
            Event::Message { step, .. } if *step == Step::Deploy => self.open_deploy(),
            Event::ObjectState { .. } => self.open_deploy(),
            _ => {}
        }
        self.send(cap_event(event));
    }
}

/// The longest message (a RUN output line, most often) a run stores: a build printing a
/// megabyte without a newline must not put a megabyte row in the database and on the run page.
pub const MAX_LINE: usize = 16 * 1024;

/// `event` with a message longer than [`MAX_LINE`] cut at a character boundary and marked.
pub(crate) fn cap_event(mut event: Event) -> Event {
    if let Event::Message { message, .. } = &mut event
        && message.len() > MAX_LINE
    {
        let mut end = MAX_LINE;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        let dropped = message.len() - end;
        message.truncate(end);
        message.push_str(&format!(" … [truncated: {dropped} more bytes]"));
    }
    event
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(i: usize) -> Event {
        Event::Message {
            step: StepOf::service("web", Step::Build),
            level: if i.is_multiple_of(2) {
                Level::Info
            } else {
                Level::Warning
            },
            message: format!("output line {i}"),
        }
    }

    /// A real SQLite database, in memory, holding one run.
    async fn store_with_a_run() -> (Store, RunId) {
        let store = Store::open("sqlite::memory:").await.unwrap();
        let run = store
            .create_run(NewRun {
                repository: "r".into(),
                branch: "main".into(),
                commit: "c".into(),
                environment: "dev".into(),
                trigger: Trigger::Poll,
                needs_approval: false,
            })
            .await
            .unwrap()
            .id;
        (store, run)
    }

    /// The store (a real SQLite database, in memory) cannot run while the engine emits: every
    /// event is emitted before the drain task gets a turn, the worst case of a slow store.
    #[tokio::test]
    async fn output_faster_than_the_store_is_bounded_and_the_dropped_lines_are_counted() {
        let (store, run) = store_with_a_run().await;
        let (live, mut rx) = broadcast::channel(4096);
        let limits = SinkLimits {
            lines: 100,
            bytes: 1 << 20,
            hard: 200,
            batch: 16,
        };
        let sink = RunSink::start_with(store.clone(), run, live, limits);
        sink.emit(Event::StepStarted {
            step: StepOf::service("web", Step::Build),
        });
        for i in 0..10_000 {
            sink.emit(line(i));
        }
        sink.emit(Event::Message {
            step: StepOf::service("web", Step::Build),
            level: Level::Error,
            message: "RUN failed".into(),
        });
        sink.emit(Event::StepFinished {
            step: StepOf::service("web", Step::Build),
            ok: false,
            millis: 1,
            message: "failed".into(),
        });
        for i in 0..50 {
            sink.emit(line(i)); // dropped too: the queue is still full
        }
        sink.finish().await;

        let stored = store.events(run, 0, 10_000).await.unwrap();
        let texts: Vec<String> = stored
            .iter()
            .map(|e| crate::ui::log_line(&e.event).2)
            .collect();
        // The step start, the 99 lines that fit, then one count in their place, the error and
        // the step's end, and the count of those dropped at the end.
        assert_eq!(stored.len(), 1 + 99 + 1 + 2 + 1, "{texts:#?}");
        assert!(matches!(stored[0].event, Event::StepStarted { .. }));
        assert_eq!(texts[99], "output line 98");
        assert_eq!(
            texts[100],
            "[9901 lines of output dropped: written faster than the server could store them]"
        );
        assert!(
            matches!(&stored[100].event, Event::Message { step, level: Level::Warning, .. } if step.to_string() == "web/build")
        );
        assert_eq!(texts[101], "RUN failed");
        assert!(matches!(stored[102].event, Event::StepFinished { .. }));
        assert!(
            texts[103].starts_with("[50 lines of output dropped"),
            "{}",
            texts[103]
        );
        // Gapless, in order, and what was stored went live too.
        assert!(
            stored
                .iter()
                .enumerate()
                .all(|(i, e)| e.seq == i as u64 + 1)
        );
        let mut live_seqs = Vec::new();
        while let Ok(e) = rx.try_recv() {
            live_seqs.push(e.seq);
        }
        assert_eq!(live_seqs, (1..=104).collect::<Vec<u64>>());
        // After the end, nothing more is taken.
        sink.emit(line(0));
        assert_eq!(store.last_event_seq(run).await.unwrap(), Some(104));
    }

    #[tokio::test]
    async fn a_store_that_keeps_up_loses_no_line() {
        let (store, run) = store_with_a_run().await;
        let (live, _) = broadcast::channel(16);
        let sink = RunSink::start(store.clone(), run, live);
        for i in 0..20_000 {
            sink.emit(line(i));
            if i % 1000 == 999 {
                // Bursts smaller than the queue, with a store that catches up in between.
                while !sink.queue.0.lock().unwrap().queue.is_empty() {
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
            }
        }
        sink.finish().await;
        let mut seen = 0;
        let mut after = 0;
        loop {
            let page = store.events(run, after, 5000).await.unwrap();
            let Some(last) = page.last() else { break };
            after = last.seq;
            seen += page.len();
        }
        assert_eq!(seen, 20_000);
    }

    #[test]
    fn a_1_mb_single_output_line_is_capped() {
        let line = "é".repeat(512 * 1024); // 1 MiB, two bytes a character
        let capped = cap_event(Event::Message {
            step: Step::Build.into(),
            level: Level::Info,
            message: line,
        });
        let Event::Message { message, .. } = capped else {
            panic!("still a message")
        };
        assert!(message.len() < MAX_LINE + 64, "{}", message.len());
        assert!(
            message.ends_with(&format!(
                "[truncated: {} more bytes]",
                1024 * 1024 - MAX_LINE
            )),
            "{}",
            &message[message.len() - 60..]
        );
        let short = cap_event(Event::Message {
            step: Step::Build.into(),
            level: Level::Info,
            message: "ok".into(),
        });
        assert!(matches!(short, Event::Message { message, .. } if message == "ok"));
    }
}
