//! Sign-in sessions of `berth serve` against the real server: the cookie is a session of its
//! own (never the API token), sign-out kills it, and every state change it makes needs the
//! session's CSRF token — on SQLite and on PostgreSQL.

use berth_testkit::TestContext;
use reqwest::header;

use crate::serve::Rig;

/// A client that shows redirects instead of following them, and keeps no cookies.
fn client() -> reqwest::Client {
    berth_testkit::init_crypto();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Signs in with `token` through the form; the whole `Set-Cookie` header and the cookie.
async fn sign_in(rig: &Rig, token: &str, https_proxy: bool) -> (String, String) {
    let mut r = client()
        .post(rig.url("/login"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(format!("token={token}"));
    if https_proxy {
        r = r.header("X-Forwarded-Proto", "https");
    }
    let r = r.send().await.unwrap();
    assert_eq!(r.status().as_u16(), 303, "sign-in redirects");
    let set = r
        .headers()
        .get(header::SET_COOKIE)
        .expect("sign-in sets a cookie")
        .to_str()
        .unwrap()
        .to_string();
    let value = set
        .split(';')
        .next()
        .and_then(|kv| kv.strip_prefix("berth_session="))
        .unwrap_or_else(|| panic!("not the session cookie: {set}"))
        .to_string();
    (set, format!("berth_session={value}"))
}

/// The CSRF token a signed-in page carries (empty when it has none: the test then fails on
/// what the server lets through, not here).
async fn csrf_of_page(rig: &Rig, cookie: &str) -> String {
    let html = client()
        .get(rig.url("/"))
        .header(header::COOKIE, cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    html.split("<meta name=\"csrf-token\" content=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_default()
        .to_string()
}

async fn status(r: reqwest::RequestBuilder) -> u16 {
    r.send().await.unwrap().status().as_u16()
}

async fn signed_out_cookie(database: Option<&str>, name: &str) {
    let ctx = TestContext::new(name).await;
    let rig = Rig::new(&ctx, database, "");
    let token = rig.token(&ctx, database, "alice", "deployer");
    let _server = rig.serve(&ctx, database);
    let (_, cookie) = sign_in(&rig, &token, false).await;
    let get = |path: &str| client().get(rig.url(path)).header(header::COOKIE, &cookie);
    assert_eq!(status(get("/api/runs")).await, 200, "signed in");
    let csrf = csrf_of_page(&rig, &cookie).await;
    let logout = |cookie: &str, body: String| {
        client()
            .post(rig.url("/logout"))
            .header(header::COOKIE, cookie)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body)
    };
    let r = logout(&cookie, format!("csrf={csrf}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    let cleared = r.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_string();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    // The cookie, kept (or copied) after sign-out, is dead on the API and the UI.
    let r = get("/api/runs").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let body = r.text().await.unwrap();
    assert!(body.contains("session is over"), "{body}");
    let r = get("/").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(r.headers()[header::LOCATION], "/login");
    // The token itself still works as a bearer token: signing out ended the session only.
    assert_eq!(
        status(client().get(rig.url("/api/runs")).bearer_auth(&token)).await,
        200
    );
    assert_eq!(csrf.len(), 64, "the page carried the session's CSRF token");

    // A sign-out posted by another site (no CSRF token) is refused, and ends nothing.
    let (_, other) = sign_in(&rig, &token, false).await;
    assert_eq!(status(logout(&other, String::new())).await, 403);
    let still = client()
        .get(rig.url("/api/runs"))
        .header(header::COOKIE, &other);
    assert_eq!(status(still).await, 200);
}

#[tokio::test]
async fn signed_out_cookie_is_refused() {
    signed_out_cookie(None, "serve-signout").await;
}

#[tokio::test]
async fn signed_out_cookie_is_refused_on_postgresql() {
    let db = berth_testkit::Postgres::fresh("signout").await;
    signed_out_cookie(Some(&db.url), "serve-signout-pg").await;
}

#[tokio::test]
async fn cookie_post_without_csrf_token_is_refused() {
    let ctx = TestContext::new("serve-csrf").await;
    let rig = Rig::new(&ctx, None, "");
    let admin = rig.token(&ctx, None, "root", "admin");
    rig.token(&ctx, None, "ci", "viewer");
    let _server = rig.serve(&ctx, None);
    let (_, cookie) = sign_in(&rig, &admin, false).await;
    let csrf = csrf_of_page(&rig, &cookie).await;
    let with_cookie = |method: reqwest::Method, path: &str| {
        client()
            .request(method, rig.url(path))
            .header(header::COOKIE, &cookie)
    };
    let runs = || async {
        client()
            .get(rig.url("/api/runs"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap()
            .as_array()
            .map_or(0, Vec::len)
    };

    // State-changing API calls with the cookie alone (what a page on another site can make a
    // browser send) are refused before they do anything.
    let post = reqwest::Method::POST;
    for (method, path, body) in [
        (post.clone(), "/api/repositories/hello/runs", "{}"),
        (
            post.clone(),
            "/api/repositories/hello/environments/dev/rollback",
            "{}",
        ),
        (post.clone(), "/api/runs/999999/cancel", ""),
        (
            post.clone(),
            "/api/tokens",
            r#"{"name":"evil","role":"admin"}"#,
        ),
        (reqwest::Method::DELETE, "/api/tokens/ci", ""),
    ] {
        let mut r = with_cookie(method.clone(), path);
        if !body.is_empty() {
            r = r
                .header(header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let r = r.send().await.unwrap();
        assert_eq!(
            r.status().as_u16(),
            403,
            "{method} {path} without a CSRF token"
        );
        let body = r.text().await.unwrap();
        assert!(body.contains("\"csrf\""), "{body}");
        let wrong = with_cookie(method.clone(), path).header("X-CSRF-Token", "0".repeat(64));
        assert_eq!(
            status(wrong).await,
            403,
            "{method} {path} with a wrong token"
        );
    }
    assert_eq!(runs().await, 0, "nothing was queued");
    let tokens = client()
        .get(rig.url("/api/tokens"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        tokens.contains("\"ci\"") && !tokens.contains("evil"),
        "{tokens}"
    );
    // Reads need no CSRF token; the right token lets a change through (404: no such run).
    assert_eq!(
        status(with_cookie(reqwest::Method::GET, "/api/runs")).await,
        200
    );
    let ok = with_cookie(post.clone(), "/api/runs/999999/cancel").header("X-CSRF-Token", &csrf);
    assert_eq!(status(ok).await, 404);
    // Bearer calls need none: a browser never adds that header by itself.
    let bearer = client()
        .post(rig.url("/api/runs/999999/cancel"))
        .bearer_auth(&admin);
    assert_eq!(status(bearer).await, 404);

    // The UI's forms likewise.
    let form = |body: &str| {
        with_cookie(post.clone(), "/runs/999999/cancel")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body.to_string())
    };
    assert_eq!(status(form("")).await, 403, "a form without its CSRF token");
    assert_eq!(
        status(form("csrf=abc")).await,
        403,
        "a form with a wrong one"
    );
    assert_eq!(status(form(&format!("csrf={csrf}"))).await, 303);
    // Another session has another token.
    let (_, other) = sign_in(&rig, &admin, false).await;
    let cross = client()
        .post(rig.url("/api/runs/999999/cancel"))
        .header(header::COOKIE, &other)
        .header("X-CSRF-Token", &csrf);
    assert_eq!(
        status(cross).await,
        403,
        "a CSRF token is tied to its session"
    );
}

#[tokio::test]
async fn api_token_is_never_set_as_cookie() {
    let ctx = TestContext::new("serve-cookie").await;
    let rig = Rig::new(&ctx, None, "");
    let token = rig.token(&ctx, None, "bob", "deployer");
    let admin = rig.token(&ctx, None, "root", "admin");
    let _server = rig.serve(&ctx, None);

    let (set, cookie) = sign_in(&rig, &token, false).await;
    assert!(
        !set.contains(&token),
        "the API token went into a cookie: {set}"
    );
    assert!(
        !set.contains(&token["berth_".len()..]),
        "the API token went into a cookie: {set}"
    );
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(set.contains(attribute), "{attribute} missing: {set}");
    }
    assert!(!set.contains("Secure"), "plain http: not Secure: {set}");
    let (set, _) = sign_in(&rig, &token, true).await;
    assert!(set.ends_with("; Secure"), "behind a TLS proxy: {set}");

    // The session works; the token presented as the cookie does not.
    let with = |c: &str| client().get(rig.url("/api/runs")).header(header::COOKIE, c);
    assert_eq!(status(with(&cookie)).await, 200);
    assert_eq!(status(with(&format!("berth_session={token}"))).await, 401);
    let r = client()
        .get(rig.url("/"))
        .header(header::COOKIE, format!("berth_session={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303, "the UI asks to sign in");
    // The session id is no bearer token either.
    let id = cookie.strip_prefix("berth_session=").unwrap();
    assert_eq!(
        status(client().get(rig.url("/api/runs")).bearer_auth(id)).await,
        401
    );
    // A revoked token ends its sessions.
    let revoke = client()
        .delete(rig.url("/api/tokens/bob"))
        .bearer_auth(&admin);
    assert_eq!(status(revoke).await, 200);
    assert_eq!(
        status(with(&cookie)).await,
        401,
        "revoking the token ends the session"
    );
}
