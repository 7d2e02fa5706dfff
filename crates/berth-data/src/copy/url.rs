//! Database URLs split so the password never reaches a command line: the dump and restore
//! tools get the URL without it and the password through their environment (`PGPASSWORD`,
//! `MYSQL_PWD`), where `ps` cannot see it.

use berth_types::{SafeUrl, Secret};

use super::CopyError;

/// A database URL taken apart.
#[derive(Debug, Clone)]
pub struct DbUrl {
    /// `postgres`/`postgresql` or `mysql`/`mariadb`.
    pub scheme: String,
    /// The user, percent-decoded.
    pub user: Option<String>,
    /// The password, percent-decoded.
    pub password: Option<Secret>,
    /// Host (brackets kept for IPv6).
    pub host: String,
    /// Port, when given.
    pub port: Option<u16>,
    /// Database name, percent-decoded (may be empty).
    pub database: String,
    /// The query string without a `password` parameter.
    pub query: Vec<(String, String)>,
    /// The URL as given, for redacted display.
    pub original: SafeUrl,
}

fn bad(url: &str, reason: &str) -> CopyError {
    CopyError::BadUrl {
        url: SafeUrl::new(url),
        reason: reason.into(),
    }
}

fn percent_decode(url: &str, s: &str) -> Result<String, CopyError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| bad(url, "a `%` not followed by two hex digits"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad(url, "percent-encoding that is not UTF-8"))
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|c| {
            if c.is_ascii_alphanumeric() || b"-._~".contains(&c) {
                (c as char).to_string()
            } else {
                format!("%{c:02X}")
            }
        })
        .collect()
}

impl DbUrl {
    /// Parses `scheme://[user[:password]@]host[:port][/database][?k=v&...]`.
    pub fn parse(url: &str) -> Result<DbUrl, CopyError> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad(url, "expected scheme://user@host:port/database"))?;
        let scheme = scheme.to_ascii_lowercase();
        if !["postgres", "postgresql", "mysql", "mariadb"].contains(&scheme.as_str()) {
            return Err(bad(
                url,
                "the scheme must be postgres://, postgresql://, mysql:// or mariadb://",
            ));
        }
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let (authority, database) = match rest.split_once('/') {
            Some((a, d)) => (a, percent_decode(url, d)?),
            None => (rest, String::new()),
        };
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (user, mut password) = match userinfo {
            None => (None, None),
            Some(u) => match u.split_once(':') {
                Some((u, p)) => (
                    Some(percent_decode(url, u)?),
                    Some(Secret::new(percent_decode(url, p)?)),
                ),
                None => (Some(percent_decode(url, u)?), None),
            },
        };
        let (host, port) = if let Some(end) = hostport.strip_prefix('[').and(hostport.find(']')) {
            let host = &hostport[..=end];
            match &hostport[end + 1..] {
                "" => (host, None),
                p => (host, Some(p.strip_prefix(':').unwrap_or(p))),
            }
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        let port = port
            .map(|p| {
                p.parse::<u16>()
                    .map_err(|_| bad(url, "the port is not a number"))
            })
            .transpose()?;
        if host.is_empty() {
            return Err(bad(url, "no host"));
        }
        let mut pairs = Vec::new();
        for kv in query.unwrap_or("").split('&').filter(|kv| !kv.is_empty()) {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let v = percent_decode(url, v)?;
            if k == "password" {
                password = Some(Secret::new(v));
            } else {
                pairs.push((k.to_string(), v));
            }
        }
        Ok(DbUrl {
            scheme,
            user,
            password,
            host: host.to_string(),
            port,
            database,
            query: pairs,
            original: SafeUrl::new(url),
        })
    }

    /// Whether this is a PostgreSQL URL.
    pub fn is_postgres(&self) -> bool {
        self.scheme.starts_with("postgres")
    }

    /// The URL for libpq without any password (that goes through `PGPASSWORD`).
    pub fn libpq_url(&self) -> String {
        let mut s = "postgresql://".to_string();
        if let Some(u) = &self.user {
            s.push_str(&percent_encode(u));
            s.push('@');
        }
        s.push_str(&self.host);
        if let Some(p) = self.port {
            s.push_str(&format!(":{p}"));
        }
        s.push('/');
        s.push_str(&percent_encode(&self.database));
        if !self.query.is_empty() {
            let q: Vec<String> = self
                .query
                .iter()
                .map(|(k, v)| format!("{k}={}", percent_encode(v)))
                .collect();
            s.push('?');
            s.push_str(&q.join("&"));
        }
        s
    }

    /// The password, if any, for cutting it out of a tool's stderr.
    pub fn password(&self) -> Option<&str> {
        self.password.as_ref().map(|p| p.expose())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_leaves_the_url() {
        let u = DbUrl::parse("postgres://bob:p%40ss:w@db.internal:5433/app%20db?sslmode=require")
            .unwrap();
        assert_eq!(u.password(), Some("p@ss:w"));
        assert_eq!(
            u.libpq_url(),
            "postgresql://bob@db.internal:5433/app%20db?sslmode=require"
        );
        assert!(!format!("{u:?}").contains("p@ss"));
        let u =
            DbUrl::parse("postgresql://127.0.0.1/x?password=hunter2&application_name=b").unwrap();
        assert_eq!(u.password(), Some("hunter2"));
        assert_eq!(u.libpq_url(), "postgresql://127.0.0.1/x?application_name=b");
        let u = DbUrl::parse("mysql://root@[::1]:15306/shop").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("[::1]", Some(15306)));
    }

    #[test]
    fn bad_urls_are_named_without_their_password() {
        for bad in [
            "db:5432",
            "http://x/y",
            "postgres://u:secret@:5432/x",
            "postgres://h:99999/x",
        ] {
            let e = DbUrl::parse(bad).unwrap_err().to_string();
            assert!(!e.contains("secret"), "{e}");
        }
    }
}
