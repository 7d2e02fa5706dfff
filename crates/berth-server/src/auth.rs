//! Who is asking: a bearer API token (`Authorization: Bearer ...`) or a sign-in session of the
//! web UI (the `berth_session` cookie), checked against the store on every request, and the
//! role each route needs.
//!
//! Sessions are not tokens. Signing in with a token opens a session of its own (random 256-bit
//! id, stored hashed, [`SESSION_IDLE`] idle and [`SESSION_MAX_AGE`] absolute expiry, deleted
//! at sign-out, gone with its token); the cookie holds that id, never the token, and a token
//! presented as a cookie is refused. The cookie is `HttpOnly; SameSite=Lax`, and `Secure` when
//! the server is reached over https ([`secure`]).
//!
//! Every state-changing request authenticated by the cookie carries a CSRF token: the UI's
//! forms in a `csrf` field, `/api` calls in the [`CSRF_HEADER`] header (checked by
//! [`csrf_guard`] before any handler). It is a synchronizer token tied to the session
//! ([`csrf`]: a SHA-256 of the session id under its own label), so it survives a restart, works
//! across servers on one PostgreSQL, and cannot be made by a page that cannot read the
//! cookie. Bearer requests need none: browsers never add that header by themselves.

use std::time::Duration;

use axum::extract::Request;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use berth_store::{Role, TokenInfo};
use sha2::{Digest, Sha256};

use crate::app::Server;

/// The session cookie's name.
pub const COOKIE: &str = "berth_session";

/// The header that carries the CSRF token of a cookie-authenticated `/api` request.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// A session unused this long is over.
pub const SESSION_IDLE: Duration = Duration::from_secs(12 * 3600);

/// A session is over this long after sign-in, however much it is used.
pub const SESSION_MAX_AGE: Duration = Duration::from_secs(7 * 86_400);

/// A request that may not go on.
#[derive(Debug)]
pub struct Denied {
    /// 401 (who are you?) or 403 (not allowed).
    pub status: StatusCode,
    /// For people.
    pub message: String,
}

/// What a request presents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    /// `Authorization: Bearer TOKEN`: an API token.
    Bearer(String),
    /// The session cookie: a session id.
    Session(String),
}

/// The credential presented by the request: the bearer header, else the session cookie.
pub fn presented(headers: &HeaderMap) -> Option<Credential> {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let v = v.trim();
        if let Some(t) = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
        {
            return Some(Credential::Bearer(t.trim().to_string()));
        }
    }
    cookie(headers, COOKIE).map(Credential::Session)
}

/// A cookie's value (the first of that name, in any `Cookie` header).
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_string())
}

/// Who is asking, and how.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The token acted for (the session's token for a browser).
    pub info: TokenInfo,
    /// The session id, when signed in through the UI.
    pub session: Option<String>,
}

impl Caller {
    /// The CSRF token the caller's forms carry (empty for a bearer caller, who needs none).
    pub fn csrf(&self) -> String {
        self.session.as_deref().map(csrf).unwrap_or_default()
    }
}

fn unavailable(e: berth_store::StoreError) -> Denied {
    tracing::error!("looking up a token or session: {e}");
    Denied {
        status: StatusCode::SERVICE_UNAVAILABLE,
        message: "the token store is not available".into(),
    }
}

/// Checks that the request's token or session exists and has at least `needed`.
pub async fn require(
    server: &Server,
    headers: &HeaderMap,
    needed: Role,
) -> Result<TokenInfo, Denied> {
    caller(server, headers, needed).await.map(|c| c.info)
}

/// [`require`], keeping the session (the UI needs it for its forms' CSRF tokens).
pub async fn caller(server: &Server, headers: &HeaderMap, needed: Role) -> Result<Caller, Denied> {
    let caller = match presented(headers) {
        None => {
            return Err(Denied {
                status: StatusCode::UNAUTHORIZED,
                message: "no API token: send `Authorization: Bearer TOKEN` (create one with `berth serve token create NAME --role viewer`)".into(),
            });
        }
        Some(Credential::Bearer(token)) => match server.store().token(&token).await {
            Ok(Some(info)) => Caller {
                info,
                session: None,
            },
            Ok(None) => {
                return Err(Denied {
                    status: StatusCode::UNAUTHORIZED,
                    message: "this API token is unknown or was revoked".into(),
                });
            }
            Err(e) => return Err(unavailable(e)),
        },
        Some(Credential::Session(id)) => match server.store().session(&id, SESSION_IDLE).await {
            Ok(Some(s)) => Caller {
                info: s.token,
                session: Some(id),
            },
            Ok(None) => {
                return Err(Denied {
                    status: StatusCode::UNAUTHORIZED,
                    message: "this session is over (signed out, expired, or its token was revoked); sign in again, or send `Authorization: Bearer TOKEN`".into(),
                });
            }
            Err(e) => return Err(unavailable(e)),
        },
    };
    let info = &caller.info;
    if info.role < needed {
        return Err(Denied {
            status: StatusCode::FORBIDDEN,
            message: format!(
                "token `{}` has role {}; this needs {}",
                info.name,
                role_name(info.role),
                role_name(needed)
            ),
        });
    }
    Ok(caller)
}

/// A role's name as the API and CLI spell it.
pub fn role_name(r: Role) -> &'static str {
    match r {
        Role::Viewer => "viewer",
        Role::Deployer => "deployer",
        Role::Admin => "admin",
    }
}

/// The CSRF token of a session: SHA-256 of the session id under a label of its own (so it is
/// not the stored hash of the id), in hex.
pub fn csrf(session: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"berth csrf v1\0");
    h.update(session.as_bytes());
    hex::encode(h.finalize())
}

/// Whether `given` is the CSRF token of `session` (constant time).
pub fn csrf_matches(session: &str, given: &str) -> bool {
    use subtle::ConstantTimeEq as _;
    // `ct_eq` on slices of different lengths is false without comparing.
    csrf(session).as_bytes().ct_eq(given.as_bytes()).into()
}

/// Whether a request with `method` changes state (and so needs a CSRF token with a cookie).
pub fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Refuses a state-changing request authenticated by the session cookie whose
/// [`CSRF_HEADER`] is not the session's CSRF token (403, before the handler runs). Requests
/// with a bearer token, reads, and requests without credentials (the handler answers 401) go
/// through.
pub async fn csrf_guard(request: Request, next: Next) -> Response {
    if changes_state(request.method())
        && let Some(Credential::Session(id)) = presented(request.headers())
    {
        let given = request
            .headers()
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !csrf_matches(&id, given) {
            return (
                StatusCode::FORBIDDEN,
                axum::Json(serde_json::json!({
                    "error": "csrf",
                    "message": format!("a request signed in by the session cookie must carry its CSRF token in `{CSRF_HEADER}` (the `csrf-token` meta tag of any page); scripts and tools should send `Authorization: Bearer TOKEN` instead"),
                })),
            )
                .into_response();
        }
    }
    next.run(request).await
}

/// Whether the browser reached the server over https: the configured `public_url` says so,
/// or a TLS-terminating proxy in front does (`X-Forwarded-Proto: https`, `Forwarded:
/// proto=https`). Decides the cookie's `Secure` flag. (A client forging the header only makes
/// its own browser keep the cookie off plain http.)
pub fn secure(server: &Server, headers: &HeaderMap) -> bool {
    let configured = server
        .config()
        .public_url
        .as_deref()
        .is_some_and(|u| u.to_ascii_lowercase().starts_with("https://"));
    let header_says = |name: header::HeaderName, f: fn(&str) -> bool| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(f)
    };
    configured
        || header_says(header::HeaderName::from_static("x-forwarded-proto"), |v| {
            v.split(',')
                .next()
                .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"))
        })
        || header_says(header::FORWARDED, |v| {
            v.split([';', ','])
                .any(|kv| kv.trim().eq_ignore_ascii_case("proto=https"))
        })
}

/// The `Set-Cookie` value that hands `session` to the browser.
pub fn session_cookie(session: &str, secure: bool) -> String {
    format!(
        "{COOKIE}={session}; HttpOnly; SameSite=Lax; Path=/; Max-Age={}{}",
        SESSION_MAX_AGE.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that makes the browser forget its session.
pub fn cleared_cookie(secure: bool) -> String {
    format!(
        "{COOKIE}=; HttpOnly; SameSite=Lax; Path=/; Max-Age=0{}",
        if secure { "; Secure" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_header_wins_over_the_cookie() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=1; berth_session=fromcookie".parse().unwrap(),
        );
        assert_eq!(
            presented(&h),
            Some(Credential::Session("fromcookie".into()))
        );
        h.insert(header::AUTHORIZATION, "Bearer fromheader".parse().unwrap());
        assert_eq!(presented(&h), Some(Credential::Bearer("fromheader".into())));
    }

    #[test]
    fn no_credentials_is_none() {
        let mut h = HeaderMap::new();
        assert_eq!(presented(&h), None);
        h.insert(header::AUTHORIZATION, "Basic dTpw".parse().unwrap());
        assert_eq!(presented(&h), None);
    }

    #[test]
    fn csrf_tokens_are_tied_to_their_session() {
        let a = csrf(&"a".repeat(64));
        assert_eq!(a.len(), 64);
        assert_ne!(a, csrf(&"b".repeat(64)));
        assert!(csrf_matches(&"a".repeat(64), &a));
        assert!(!csrf_matches(&"b".repeat(64), &a));
        assert!(!csrf_matches(&"a".repeat(64), ""));
        assert!(!csrf_matches(&"a".repeat(64), &a[..63]));
    }

    #[test]
    fn the_session_cookie_is_http_only_lax_and_secure_over_https() {
        let c = session_cookie("abc", false);
        assert!(
            c.starts_with("berth_session=abc; HttpOnly; SameSite=Lax; Path=/"),
            "{c}"
        );
        assert!(!c.contains("Secure"), "{c}");
        assert!(session_cookie("abc", true).ends_with("; Secure"));
        assert!(cleared_cookie(true).contains("Max-Age=0"));
        for m in [Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
            assert!(changes_state(&m), "{m}");
        }
        assert!(!changes_state(&Method::GET));
    }
}
