//! A hostile registry, as a small real HTTP server on loopback (hand-written here: the CNCF
//! registry cannot be made to lie). The normal path is covered against the real registry by
//! berth-build's and berth's integration tests.
//!
//! Each server records what arrived (path, Authorization header) and how many body bytes it
//! managed to send before the client hung up. `127.0.0.2` is "another host" (any 127/8
//! address is loopback on Linux).

#![allow(clippy::print_stderr)] // the bytes a hostile server got out are worth seeing

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use berth_registry::{
    Credential, CredentialStore, MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES, Registry, RegistryError,
    RetryPolicy, sha256,
};
use berth_types::{Digest, ImageRef, Secret};

#[derive(Debug, Clone)]
struct Seen {
    path: String,
    authorization: Option<String>,
}

enum Reply {
    /// A complete answer with a Content-Length.
    Full {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// 200 with `total` bytes, no Content-Length, ended by closing the connection.
    Endless { total: u64 },
}

type Handler = dyn Fn(&str) -> Reply + Send + Sync;

struct Server {
    host: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    sent: Arc<AtomicU64>,
}

impl Server {
    fn start(ip: &str, handler: impl Fn(&str) -> Reply + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind((ip, 0)).unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sent = Arc::new(AtomicU64::new(0));
        let handler: Arc<Handler> = Arc::new(handler);
        let (s, n) = (seen.clone(), sent.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (s, n, h) = (s.clone(), n.clone(), handler.clone());
                std::thread::spawn(move || {
                    let _ = answer(conn, &s, &n, &*h);
                });
            }
        });
        Server { host, seen, sent }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn answer(
    conn: TcpStream,
    seen: &Mutex<Vec<Seen>>,
    sent: &AtomicU64,
    handler: &Handler,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split(' ').nth(1).unwrap_or("").to_string();
    let mut authorization = None;
    loop {
        let mut h = String::new();
        reader.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.eq_ignore_ascii_case("authorization")
        {
            authorization = Some(v.trim().to_string());
        }
    }
    seen.lock().unwrap().push(Seen {
        path: path.clone(),
        authorization,
    });
    let mut w = conn;
    match handler(&path) {
        Reply::Full {
            status,
            headers,
            body,
        } => {
            let mut head = format!(
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                body.len()
            );
            for (k, v) in headers {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            head.push_str("\r\n");
            w.write_all(head.as_bytes())?;
            w.write_all(&body)?;
        }
        Reply::Endless { total } => {
            w.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")?;
            let chunk = vec![b' '; 64 << 10];
            let mut left = total;
            while left > 0 {
                let n = left.min(chunk.len() as u64) as usize;
                w.write_all(&chunk[..n])?;
                sent.fetch_add(n as u64, Ordering::Relaxed);
                left -= n as u64;
            }
        }
    }
    w.flush()
}

fn ok(body: &[u8]) -> Reply {
    Reply::Full {
        status: 200,
        headers: vec![],
        body: body.to_vec(),
    }
}

fn status(code: u16, headers: &[(&str, &str)]) -> Reply {
    Reply::Full {
        status: code,
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body: Vec::new(),
    }
}

/// A client for the plain-HTTP registry `host`, with credentials for it when `login`.
fn client(host: &str, login: bool) -> Registry {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut creds = CredentialStore::default();
    if login {
        creds.insert(
            host,
            Credential {
                username: "alice".into(),
                secret: Secret::new("hunter2"),
            },
        );
    }
    let mut r = Registry::with_credentials(creds, vec![host.to_string()]);
    r.set_retry_policy(RetryPolicy {
        tries: 1,
        ..Default::default()
    });
    r
}

fn image(host: &str) -> ImageRef {
    format!("{host}/evil:latest").parse().unwrap()
}

const MIB: u64 = 1 << 20;

#[tokio::test]
async fn a_manifest_larger_than_4_mib_is_refused_while_it_streams() {
    let reg = Server::start("127.0.0.1", |path| match path {
        "/v2/" => ok(b""),
        "/v2/evil/manifests/latest" => Reply::Endless { total: 256 * MIB },
        "/v2/evil/manifests/announced" => ok(&vec![b' '; (MAX_MANIFEST_BYTES + 1) as usize]),
        _ => status(404, &[]),
    });
    let r = client(&reg.host, false);
    let err = r.pull_manifest(&image(&reg.host)).await.unwrap_err();
    assert!(
        matches!(err, RegistryError::TooLarge { what: "manifest", limit, .. } if limit == 4 * MIB),
        "{err}"
    );
    assert!(err.to_string().contains("evil:latest"), "{err}");
    let sent = reg.sent.load(Ordering::Relaxed);
    assert!(sent < 64 * MIB, "berth kept reading: {sent} bytes sent");
    eprintln!("manifest: the server got {sent} bytes out before berth hung up");

    // A Content-Length over the limit is refused before the body is read.
    let announced: ImageRef = format!("{}/evil:announced", reg.host).parse().unwrap();
    let err = r.pull_manifest(&announced).await.unwrap_err();
    assert!(
        matches!(err, RegistryError::TooLarge { got, .. } if got == MAX_MANIFEST_BYTES + 1),
        "{err}"
    );
}

#[tokio::test]
async fn a_layer_longer_than_its_descriptor_fails_as_soon_as_the_extra_bytes_arrive() {
    let body = b"layer bytes".to_vec();
    let digest = sha256(&body);
    let endless: Digest = format!("sha256:{}", "e".repeat(64)).parse().unwrap();
    let (b2, good, bad) = (
        body.clone(),
        format!("/v2/evil/blobs/{digest}"),
        format!("/v2/evil/blobs/{endless}"),
    );
    let reg = Server::start("127.0.0.1", move |path| match path {
        "/v2/" => ok(b""),
        p if p == bad => Reply::Endless { total: 1 << 30 },
        p if p == good => ok(&b2),
        _ => status(404, &[]),
    });
    let r = client(&reg.host, false);
    let img = image(&reg.host);
    let d = tempfile::tempdir().unwrap();
    let dest = d.path().join("blob");

    // The descriptor says 1000 bytes; the registry streams 1 GiB.
    let err = r
        .pull_blob_to_file(&img, &endless, 1000, &dest)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            RegistryError::SizeMismatch {
                expected: 1000,
                complete: false,
                ..
            }
        ),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains(&endless.to_string()) && text.contains("evil:latest"),
        "the error names the image and the digest: {text}"
    );
    let sent = reg.sent.load(Ordering::Relaxed);
    assert!(sent < 64 * MIB, "berth kept reading: {sent} bytes sent");
    eprintln!("layer: the server got {sent} bytes out before berth hung up");
    assert!(!dest.exists() && !dest.with_extension("partial").exists());

    let len = body.len() as u64;
    // A Content-Length over the descriptor: refused before reading.
    let err = r
        .pull_blob_to_file(&img, &digest, len - 1, &dest)
        .await
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::SizeMismatch { complete: false, got, .. } if got == len - 1),
        "{err}"
    );
    assert!(
        err.to_string().contains(&format!("more than {}", len - 1)),
        "{err}"
    );
    // Shorter than the descriptor.
    let err = r
        .pull_blob_to_file(&img, &digest, len + 5, &dest)
        .await
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::SizeMismatch { complete: true, got, .. } if got == len),
        "{err}"
    );
    assert!(!dest.exists());
    // The right size and digest.
    let n = r
        .pull_blob_to_file(&img, &digest, len, &dest)
        .await
        .unwrap();
    assert_eq!((n, std::fs::read(&dest).unwrap()), (len, body));
}

#[tokio::test]
async fn a_config_blob_larger_than_8_mib_is_refused() {
    let reg = Server::start("127.0.0.1", |path| match path {
        "/v2/" => ok(b""),
        p if p.starts_with("/v2/evil/blobs/") => Reply::Endless { total: 1 << 30 },
        _ => status(404, &[]),
    });
    let r = client(&reg.host, false);
    let img = image(&reg.host);
    let d: Digest = format!("sha256:{}", "c".repeat(64)).parse().unwrap();
    // A descriptor over the limit: refused before any request for the blob.
    let err = r.pull_config(&img, &d, 9 * MIB).await.unwrap_err();
    assert!(
        matches!(err, RegistryError::TooLarge { what: "config blob", limit, .. } if limit == 8 * MIB),
        "{err}"
    );
    assert!(!reg.seen().iter().any(|s| s.path.contains("/blobs/")));
    // A config that is longer than its descriptor.
    let err = r.pull_config(&img, &d, 100).await.unwrap_err();
    assert!(
        matches!(
            err,
            RegistryError::SizeMismatch {
                expected: 100,
                complete: false,
                ..
            }
        ),
        "{err}"
    );
    // A blob pulled into memory without a size stops at the limit.
    let err = r.pull_blob(&img, &d).await.unwrap_err();
    assert!(
        matches!(err, RegistryError::TooLarge { limit, .. } if limit == MAX_CONFIG_BYTES),
        "{err}"
    );
    let sent = reg.sent.load(Ordering::Relaxed);
    assert!(sent < 64 * MIB, "berth kept reading: {sent} bytes sent");
}

/// A token service that records who asked, and hands out a token.
fn token_service(ip: &str) -> Server {
    Server::start(ip, |path| {
        if path.starts_with("/token") {
            ok(br#"{"token":"tok"}"#)
        } else {
            status(404, &[])
        }
    })
}

/// A registry whose `/v2/` sends clients to `realm` for tokens; its manifests need `Bearer tok`.
fn bearer_registry(realm: String) -> Server {
    Server::start("127.0.0.1", move |path| match path {
        "/v2/" => status(
            401,
            &[(
                "WWW-Authenticate",
                &format!(r#"Bearer realm="{realm}",service="evil""#),
            )],
        ),
        p if p.contains("/manifests/") => Reply::Full {
            status: 200,
            headers: vec![],
            body:
                br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#
                    .to_vec(),
        },
        p if p.contains("/blobs/") => status(404, &[]),
        _ => status(404, &[]),
    })
}

#[tokio::test]
async fn credentials_are_never_sent_to_a_plain_http_token_realm_on_another_host() {
    let realm = token_service("127.0.0.2");
    let reg = bearer_registry(format!("http://{}/token", realm.host));
    let r = client(&reg.host, true);
    let img = image(&reg.host);

    let err = r.pull_manifest(&img).await.unwrap_err();
    assert!(
        matches!(err, RegistryError::InsecureTokenRealm { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("another host"), "{err}");
    assert!(!err.to_string().contains("hunter2"), "{err}");
    let ping = r.ping(&reg.host).await.unwrap_err();
    assert!(
        matches!(ping, RegistryError::InsecureTokenRealm { .. }),
        "{ping}"
    );
    // Pushes go through oci-client, which would send the credentials to the realm itself.
    let push = r.push_blob(&img, b"x".to_vec()).await.unwrap_err();
    assert!(
        matches!(push, RegistryError::InsecureTokenRealm { .. }),
        "{push}"
    );
    let seen = realm.seen();
    assert!(
        seen.iter().all(|s| s.authorization.is_none()),
        "credentials reached the token service: {seen:?}"
    );

    // Without credentials there is nothing to leak: an anonymous token is fine.
    let anonymous = client(&reg.host, false);
    anonymous.pull_manifest(&img).await.unwrap();
    assert!(realm.seen().iter().all(|s| s.authorization.is_none()));
}

#[tokio::test]
async fn a_plain_http_token_realm_on_the_insecure_registrys_own_host_gets_the_credentials() {
    let realm = token_service("127.0.0.1");
    let reg = bearer_registry(format!("http://{}/token", realm.host));
    let r = client(&reg.host, true);
    r.pull_manifest(&image(&reg.host)).await.unwrap();
    let asked = realm.seen();
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert!(
        asked[0]
            .authorization
            .as_deref()
            .is_some_and(|a| a.starts_with("Basic ")),
        "{asked:?}"
    );
    assert!(
        asked[0].path.contains("scope=repository%3Aevil%3Apull"),
        "{asked:?}"
    );
    let manifest = reg
        .seen()
        .into_iter()
        .find(|s| s.path.contains("/manifests/"))
        .unwrap();
    assert_eq!(manifest.authorization.as_deref(), Some("Bearer tok"));
}

#[tokio::test]
async fn a_redirect_to_another_host_gets_no_authorization() {
    let body = b"layer behind a CDN".to_vec();
    let digest = sha256(&body);
    let b2 = body.clone();
    let cdn = Server::start("127.0.0.2", move |_| ok(&b2));
    let to = format!("http://{}/cdn/blob", cdn.host);
    let reg = Server::start("127.0.0.1", move |path| match path {
        "/v2/" => status(401, &[("WWW-Authenticate", r#"Basic realm="evil""#)]),
        p if p.contains("/blobs/") || p.contains("/manifests/") => {
            status(307, &[("Location", &to)])
        }
        _ => status(404, &[]),
    });
    let r = client(&reg.host, true);
    let img = image(&reg.host);
    let d = tempfile::tempdir().unwrap();
    let dest = d.path().join("blob");
    r.pull_blob_to_file(&img, &digest, body.len() as u64, &dest)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    assert_eq!(r.pull_blob(&img, &digest).await.unwrap(), body);
    let _ = r.pull_manifest(&img).await;
    let asked = reg.seen();
    assert!(
        asked.iter().filter(|s| s.path != "/v2/").all(|s| s
            .authorization
            .as_deref()
            .is_some_and(|a| a.starts_with("Basic "))),
        "the registry itself gets the credentials: {asked:?}"
    );
    let at_cdn = cdn.seen();
    assert_eq!(at_cdn.len(), 3, "{at_cdn:?}");
    assert!(
        at_cdn.iter().all(|s| s.authorization.is_none()),
        "the credentials followed the redirect: {at_cdn:?}"
    );
}
