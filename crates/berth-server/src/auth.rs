//! Who is asking: a bearer API token (`Authorization: Bearer ...`) or the UI's session cookie
//! (the same token, set HttpOnly by the login form), checked against the store on every
//! request, and the role each route needs.
//!
//! The UI's POST forms carry a CSRF token derived from the session token and a per-process
//! random key (SHA-256), so a form posted from another site — which cannot read the cookie —
//! cannot carry it. Bearer requests need none: browsers never add that header by themselves.

use axum::http::{HeaderMap, StatusCode, header};
use berth_store::{Role, TokenInfo};
use sha2::{Digest, Sha256};

use crate::app::Server;

/// The session cookie's name.
pub const COOKIE: &str = "berth_session";

/// A request that may not go on.
#[derive(Debug)]
pub struct Denied {
    /// 401 (who are you?) or 403 (not allowed).
    pub status: StatusCode,
    /// For people.
    pub message: String,
}

/// The token presented by the request: the bearer header, else the session cookie.
pub fn presented(headers: &HeaderMap) -> Option<String> {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let v = v.trim();
        if let Some(t) = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
        {
            return Some(t.trim().to_string());
        }
    }
    cookie(headers, COOKIE)
}

/// A cookie's value.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// Checks that the request's token exists and has at least `needed`.
pub async fn require(
    server: &Server,
    headers: &HeaderMap,
    needed: Role,
) -> Result<TokenInfo, Denied> {
    let Some(token) = presented(headers) else {
        return Err(Denied {
            status: StatusCode::UNAUTHORIZED,
            message: "no API token: send `Authorization: Bearer TOKEN` (create one with `berth serve token create NAME --role viewer`)".into(),
        });
    };
    let info = server.store().token(&token).await.map_err(|e| {
        tracing::error!("looking up a token: {e}");
        Denied {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: "the token store is not available".into(),
        }
    })?;
    let Some(info) = info else {
        return Err(Denied {
            status: StatusCode::UNAUTHORIZED,
            message: "this API token is unknown or was revoked".into(),
        });
    };
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
    Ok(info)
}

/// A role's name as the API and CLI spell it.
pub fn role_name(r: Role) -> &'static str {
    match r {
        Role::Viewer => "viewer",
        Role::Deployer => "deployer",
        Role::Admin => "admin",
    }
}

/// The CSRF token of a session.
pub fn csrf(server: &Server, session: &str) -> String {
    let mut h = Sha256::new();
    h.update(server.inner.csrf_key);
    h.update(b"csrf:");
    h.update(session.as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `given` is the CSRF token of the request's session (constant time).
pub fn csrf_ok(server: &Server, headers: &HeaderMap, given: &str) -> bool {
    let Some(session) = cookie(headers, COOKIE) else {
        return false;
    };
    let want = csrf(server, &session);
    want.len() == given.len()
        && want
            .bytes()
            .zip(given.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
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
        assert_eq!(presented(&h).as_deref(), Some("fromcookie"));
        h.insert(header::AUTHORIZATION, "Bearer fromheader".parse().unwrap());
        assert_eq!(presented(&h).as_deref(), Some("fromheader"));
    }

    #[test]
    fn no_credentials_is_none() {
        let mut h = HeaderMap::new();
        assert_eq!(presented(&h), None);
        h.insert(header::AUTHORIZATION, "Basic dTpw".parse().unwrap());
        assert_eq!(presented(&h), None);
    }
}
