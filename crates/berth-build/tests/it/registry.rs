//! berth-registry against the real registry: cross-repository mounts when pushing a build, and
//! retries through a proxy that fails the first requests the way a restarting registry does.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use berth_registry::{Registry, RegistryOptions, RetryPolicy};
use berth_testkit::{TestContext, TestEnv};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

/// A build FROM busybox pushed to a new repository: the base layers are mounted from the
/// repository they were pulled from (library/busybox on the same registry), only the COPY
/// layer is uploaded; pushing again moves nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_mounts_base_layers_from_the_base_repository() {
    let ctx = TestContext::new("build-mount").await;
    let rig = Rig::new();
    let dir = context(&[
        ("Dockerfile", "FROM busybox\nCOPY a.txt /a.txt\n"),
        ("a.txt", "a\n"),
    ]);
    let mut req = request(dir.path());
    req.tags = vec![ctx.image("mounted", "v1")];
    req.push = true;
    let (built, rec) = rig.build(&req).await;
    let base_layers = built.layers.len() - 1;
    assert!(base_layers >= 1);
    assert_eq!(
        (built.layers_mounted, built.layers_uploaded),
        (base_layers, 1),
        "{:?}",
        rec.messages()
    );
    assert!(
        rec.messages().iter().any(|m| m.contains(&format!(
            "1 of {} layers uploaded, {base_layers} mounted",
            built.layers.len()
        ))),
        "{:?}",
        rec.messages()
    );
    let stats = rig.opts.registry.stats();
    assert_eq!(stats.mounted, base_layers as u64);

    // The mounted blobs are really in the new repository.
    let registry = ctx.env.registry();
    for l in &built.layers {
        assert!(registry.blob_exists(&req.tags[0], &l.digest).await.unwrap());
    }
    let (again, _) = rig.build(&req).await;
    assert_eq!((again.layers_mounted, again.layers_uploaded), (0, 0));
}

/// Answers the first `fail` connections with HTTP 503 (or closes them at once when `reset`),
/// then forwards every connection to `upstream`.
async fn flaky_proxy(upstream: String, fail: usize, reset: bool) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let upstream = upstream.clone();
            tokio::spawn(async move {
                if n < fail {
                    if reset {
                        drop(conn);
                        return;
                    }
                    let mut buf = [0u8; 4096];
                    let _ = conn.read(&mut buf).await;
                    let _ = conn
                        .write_all(
                            b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                        )
                        .await;
                    return;
                }
                let Ok(mut up) = tokio::net::TcpStream::connect(&upstream).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut conn, &mut up).await;
            });
        }
    });
    (addr, seen)
}

fn client_for(host: &str) -> Registry {
    let mut r = Registry::new(RegistryOptions {
        insecure: vec![host.to_string()],
        docker_config: Some("/nonexistent/berth-test/config.json".into()),
        mirrors: Vec::new(),
    })
    .unwrap();
    r.set_retry_policy(RetryPolicy {
        tries: 4,
        first_delay: std::time::Duration::from_millis(20),
        max_delay: std::time::Duration::from_millis(100),
    });
    r
}

/// A registry that answers 503 twice, then works: pulls and pushes succeed after retries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_5xx_answers_then_succeeds() {
    let ctx = TestContext::new("registry-retry-503").await;
    let env = TestEnv::get();
    let (proxy, seen) = flaky_proxy(env.registry_host().to_string(), 2, false).await;
    let registry = client_for(&proxy);
    let base: berth_types::ImageRef = format!("{proxy}/library/busybox:latest").parse().unwrap();
    let (_, _, digest) = registry.pull_manifest(&base).await.unwrap();
    assert!(registry.stats().retries >= 1, "{:?}", registry.stats());
    assert!(seen.load(Ordering::SeqCst) >= 3);
    let direct = env.registry();
    let (_, _, direct_digest) = direct
        .pull_manifest(
            &format!("{}/library/busybox:latest", env.registry_host())
                .parse()
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(digest, direct_digest);
    let _ = ctx;
}

/// Connections closed before any answer (a registry restarting, a load balancer dropping) are
/// retried too; after the policy's tries the error comes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_broken_connections_and_gives_up_after_the_last_try() {
    let _ctx = TestContext::new("registry-retry-reset").await;
    let env = TestEnv::get();
    let (proxy, _) = flaky_proxy(env.registry_host().to_string(), 2, true).await;
    let registry = client_for(&proxy);
    let target: berth_types::ImageRef = format!("{proxy}/berth-test/retry:v1").parse().unwrap();
    let digest = registry
        .push_blob(&target, b"retry me".to_vec())
        .await
        .unwrap();
    assert!(registry.stats().retries >= 1, "{:?}", registry.stats());
    assert!(registry.blob_exists(&target, &digest).await.unwrap());

    let (dead, _) = flaky_proxy(env.registry_host().to_string(), usize::MAX, true).await;
    let registry = client_for(&dead);
    let target: berth_types::ImageRef = format!("{dead}/berth-test/retry:v1").parse().unwrap();
    let err = registry
        .push_blob(&target, b"never".to_vec())
        .await
        .unwrap_err();
    assert!(registry.stats().retries >= 3, "{err}");
}

/// When the named source repository does not have the blob, the registry answers the mount
/// request with 202 (an upload session) instead of 201: the blob is uploaded instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mount_from_a_repository_without_the_blob_falls_back_to_upload() {
    let ctx = TestContext::new("registry-mount-fallback").await;
    let registry = ctx.env.registry();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), format!("blob of {}", ctx.image("x", "v1"))).unwrap();
    let (digest, _) = berth_build::exec::file_digest(file.path()).unwrap();
    let target = ctx.image("target", "v1");
    let elsewhere = ctx.image("nothing-here", "v1");
    let how = registry
        .push_blob_file_from(&target, &digest, file.path(), Some(&elsewhere))
        .await
        .unwrap();
    assert_eq!(how, berth_registry::BlobPush::Uploaded);
    assert!(registry.blob_exists(&target, &digest).await.unwrap());
    // Now that `target` has it, a third repository mounts it from there.
    let third = ctx.image("third", "v1");
    let how = registry
        .push_blob_file_from(&third, &digest, file.path(), Some(&target))
        .await
        .unwrap();
    assert_eq!(how, berth_registry::BlobPush::Mounted);
    assert_eq!(registry.stats().mounted, 1);
}
