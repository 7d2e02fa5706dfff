use std::fmt;

/// A value that must never be shown: a registry password, a token, a webhook secret.
///
/// `Debug` and `Display` print `[redacted]`, and there is no `Serialize`, so it cannot reach a
/// log line, an error message or a JSON event by accident. Read it with [`Secret::expose`] at the
/// one place that sends it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A URL whose `Display` and `Debug` hide any `user:password@` part and the values of query
/// parameters that look like credentials (`token`, `password`, `secret`, `key`, `sig`).
#[derive(Clone, PartialEq, Eq)]
pub struct SafeUrl(String);

impl SafeUrl {
    /// Wraps a URL string.
    pub fn new(url: impl Into<String>) -> Self {
        SafeUrl(url.into())
    }

    /// The full URL, credentials included, for the one place that must use it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    fn redacted(&self) -> String {
        let s = &self.0;
        let (scheme, rest) = match s.find("://") {
            Some(i) => (&s[..i + 3], &s[i + 3..]),
            None => ("", s.as_str()),
        };
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        let authority = match authority.rfind('@') {
            Some(i) => format!("[redacted]@{}", &authority[i + 1..]),
            None => authority.to_string(),
        };
        let tail = match tail.split_once('?') {
            Some((path, query)) => {
                let q: Vec<String> = query
                    .split('&')
                    .map(|kv| match kv.split_once('=') {
                        Some((k, _)) if looks_secret(k) => format!("{k}=[redacted]"),
                        _ => kv.to_string(),
                    })
                    .collect();
                format!("{path}?{}", q.join("&"))
            }
            None => tail.to_string(),
        };
        format!("{scheme}{authority}{tail}")
    }
}

fn looks_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "token", "password", "passwd", "secret", "key", "sig", "auth",
    ]
    .iter()
    .any(|w| k.contains(w))
}

impl fmt::Display for SafeUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for SafeUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SafeUrl({})", self.redacted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_formats() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "[redacted] Secret([redacted])");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn url_hides_userinfo_and_token_params() {
        let u = SafeUrl::new("https://bob:pa@ss@git.example.com/r.git?ref=main&access_token=abc");
        let shown = u.to_string();
        assert_eq!(
            shown,
            "https://[redacted]@git.example.com/r.git?ref=main&access_token=[redacted]"
        );
        assert!(!format!("{u:?}").contains("abc"));
        assert_eq!(
            SafeUrl::new("http://127.0.0.1:5000/v2/").to_string(),
            "http://127.0.0.1:5000/v2/"
        );
    }
}
