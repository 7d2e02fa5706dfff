//! A run's events through the real `berth serve`: the API pages them and the run page shows
//! one page of lines, never every event of a long run.

use berth_store::{NewRun, RunState, Store, Trigger};
use berth_testkit::TestContext;
use berth_types::{Event, Level, Step, StepOf};
use reqwest::header;
use serde_json::Value;

use crate::serve::Rig;

const EVENTS: u64 = 6000;

/// A finished run with [`EVENTS`] events (a build step around its output lines), written
/// into the server's SQLite database before the server starts.
async fn long_run(rig: &Rig) -> u64 {
    let store = Store::open(&format!("sqlite:{}", rig.data.join("berth.db").display()))
        .await
        .unwrap();
    let run = store
        .create_run(NewRun {
            repository: "hello".into(),
            branch: "main".into(),
            commit: "0123456789abcdef0123456789abcdef01234567".into(),
            environment: "dev".into(),
            trigger: Trigger::Manual { who: "test".into() },
            needs_approval: false,
        })
        .await
        .unwrap()
        .id;
    assert!(
        store
            .transition(run, RunState::Queued, RunState::Running, None)
            .await
            .unwrap()
    );
    let mut events = vec![Event::StepStarted {
        step: StepOf::service("web", Step::Build),
    }];
    events.extend((2..EVENTS).map(|i| Event::Message {
        step: StepOf::service("web", Step::Build),
        level: Level::Info,
        message: format!("output line {i}"),
    }));
    events.push(Event::StepFinished {
        step: StepOf::service("web", Step::Build),
        ok: true,
        millis: 1200,
        message: "built".into(),
    });
    store.append_events(run, &events).await.unwrap();
    assert!(
        store
            .transition(run, RunState::Running, RunState::Succeeded, None)
            .await
            .unwrap()
    );
    store.close().await;
    run.0 as u64
}

fn next_link(r: &reqwest::Response) -> Option<String> {
    r.headers()
        .get(header::LINK)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix('<'))
        .and_then(|v| v.split_once(">; rel=\"next\""))
        .map(|(path, _)| path.to_string())
}

fn seqs(page: &Value) -> Vec<u64> {
    page.as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn run_events_are_paginated() {
    let ctx = TestContext::new("serve-events").await;
    let rig = Rig::new(&ctx, None, "");
    std::fs::create_dir_all(&rig.data).unwrap();
    let id = long_run(&rig).await;
    let viewer = rig.token(&ctx, None, "viewer", "viewer");
    let _server = rig.serve(&ctx, None);
    berth_testkit::init_crypto();
    let http = reqwest::Client::new();
    let get = |path: String| http.get(rig.url(&path)).bearer_auth(&viewer).send();

    // The run page: the newest 1000 lines, the stage graph of the whole run, and a way back.
    let page = |q: &str| {
        let path = format!("/runs/{id}{q}");
        async { get(path).await.unwrap().text().await.unwrap() }
    };
    let html = page("").await;
    assert_eq!(
        html.matches("class=\"line ").count(),
        1000,
        "one page of lines"
    );
    assert!(html.contains("data-seq=\"5001\"") && html.contains("data-seq=\"6000\""));
    assert!(
        !html.contains("data-seq=\"5000\""),
        "older lines are not in the page"
    );
    let stages = html
        .split("id=\"stages\"")
        .nth(1)
        .and_then(|s| s.split("</ol>").next())
        .unwrap_or_default();
    assert!(
        stages.contains("stage stage-ok\"><b>web&#x2f;build</b>"),
        "the stage graph sees the step started 5000 events earlier: {stages}"
    );
    assert!(
        html.contains("5000 earlier lines not shown"),
        "{}",
        &html[..2000]
    );
    let earlier = format!("href=\"/runs/{id}?after=4000\" id=\"load-earlier\"");
    assert!(html.contains(&earlier), "a link to the page before");
    let html = page("?after=4000").await;
    assert_eq!(html.matches("class=\"line ").count(), 1000);
    assert!(html.contains("data-seq=\"4001\"") && html.contains("data-seq=\"5000\""));
    assert!(html.contains(&format!("href=\"/runs/{id}?after=5000\" id=\"load-later\"")));
    assert!(
        html.contains("data-active=\"false\""),
        "an old page does not stream"
    );

    // The default page is 1000 events, with a link to the next.
    let r = get(format!("/api/runs/{id}/events")).await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let mut next = next_link(&r);
    let page: Value = r.json().await.unwrap();
    assert_eq!(seqs(&page), (1..=1000).collect::<Vec<_>>());
    assert_eq!(
        next.as_deref(),
        Some(format!("/api/runs/{id}/events?after=1000&limit=1000").as_str())
    );
    // Following the links gives every event once, in order, and ends.
    let mut all = seqs(&page);
    while let Some(path) = next {
        let r = get(path).await.unwrap();
        next = next_link(&r);
        all.extend(seqs(&r.json().await.unwrap()));
    }
    assert_eq!(all, (1..=EVENTS).collect::<Vec<_>>());
    // A page is at most 5000 events, whatever the client asks.
    let r = get(format!("/api/runs/{id}/events?limit=100000"))
        .await
        .unwrap();
    let page: Value = r.json().await.unwrap();
    assert_eq!(page.as_array().unwrap().len(), 5000);
    let r = get(format!("/api/runs/{id}/events?after=5990&limit=50"))
        .await
        .unwrap();
    assert_eq!(next_link(&r), None, "the last page links nowhere");
    assert_eq!(
        seqs(&r.json().await.unwrap()),
        (5991..=EVENTS).collect::<Vec<_>>()
    );
}
