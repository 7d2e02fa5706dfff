use std::fmt;
use std::str::FromStr;

use crate::Digest;

/// The registry that references without a registry host point at.
pub const DOCKER_HUB: &str = "docker.io";

/// A reference to an image: `registry/repository[:tag][@digest]`, normalised the way Docker
/// and containerd normalise it (`busybox` is `docker.io/library/busybox:latest`).
///
/// berth deploys by digest: once an image was built or resolved, [`ImageRef::pinned`] gives the
/// `repo@sha256:...` form that never depends on a tag or on `imagePullPolicy`.
#[derive(Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ImageRef {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

/// Why a string is not an image reference.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ImageRefError {
    /// Empty input.
    #[error("empty image reference")]
    Empty,
    /// A path component breaks the distribution grammar.
    #[error(
        "invalid repository `{0}` in image reference: components are lowercase letters, digits \
         and single `.`, `_`, `__` or `-` separators"
    )]
    BadRepository(String),
    /// The tag breaks the grammar.
    #[error("invalid tag `{0}`: at most 128 of [A-Za-z0-9_.-], not starting with `.` or `-`")]
    BadTag(String),
    /// The digest part is malformed.
    #[error(transparent)]
    BadDigest(#[from] crate::DigestError),
}

impl ImageRef {
    /// Registry host (and port), e.g. `docker.io` or `127.0.0.1:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// Repository path inside the registry, e.g. `library/busybox`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if one was given.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if one was given.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The same repository pinned to `digest`, with the tag dropped.
    pub fn pinned(&self, digest: Digest) -> ImageRef {
        ImageRef {
            tag: None,
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// The same repository with another tag (and no digest).
    pub fn with_tag(&self, tag: &str) -> Result<ImageRef, ImageRefError> {
        validate_tag(tag)?;
        Ok(ImageRef {
            tag: Some(tag.into()),
            digest: None,
            ..self.clone()
        })
    }

    /// The same repository, tag and digest on another registry host (a mirror).
    pub fn with_registry(&self, host: &str) -> ImageRef {
        ImageRef {
            registry: host.into(),
            ..self.clone()
        }
    }

    /// What to ask the registry for: the digest if there is one, else the tag, else `latest`.
    pub fn reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".into(),
        }
    }
}

fn is_registry_host(component: &str) -> bool {
    component.contains('.') || component.contains(':') || component == "localhost"
}

fn validate_component(c: &str) -> bool {
    // [a-z0-9]+ ((\.|_|__|-+) [a-z0-9]+)*
    if c.is_empty() {
        return false;
    }
    let bytes = c.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if alnum(b) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn validate_tag(tag: &str) -> Result<(), ImageRefError> {
    let ok = !tag.is_empty()
        && tag.len() <= 128
        && !tag.starts_with(['.', '-'])
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ImageRefError::BadTag(tag.into()))
    }
}

impl FromStr for ImageRef {
    type Err = ImageRefError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(ImageRefError::Empty);
        }
        let (rest, digest) = match s.split_once('@') {
            Some((rest, d)) => (rest, Some(d.parse::<Digest>()?)),
            None => (s, None),
        };
        // A tag is after the last ':' that follows the last '/'.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(t) = tag {
            validate_tag(t)?;
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, path)) if is_registry_host(first) => (first.to_string(), path.to_string()),
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        let registry = if registry == "index.docker.io" {
            DOCKER_HUB.into()
        } else {
            registry
        };
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        if !repository.split('/').all(validate_component) {
            return Err(ImageRefError::BadRepository(repository));
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, Some(_)) => None,
            (None, None) => Some("latest".to_string()),
        };
        Ok(ImageRef {
            registry,
            repository,
            tag,
            digest,
        })
    }
}

impl TryFrom<String> for ImageRef {
    type Error = ImageRefError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<ImageRef> for String {
    fn from(r: ImageRef) -> String {
        r.to_string()
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ImageRef({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn p(s: &str) -> ImageRef {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn normalises_docker_hub_short_names() {
        assert_eq!(p("busybox").to_string(), "docker.io/library/busybox:latest");
        assert_eq!(
            p("bitnami/redis:7").to_string(),
            "docker.io/bitnami/redis:7"
        );
        assert_eq!(
            p("index.docker.io/library/debian:bookworm-slim").registry(),
            "docker.io"
        );
    }

    #[test]
    fn keeps_registry_hosts_with_ports() {
        let r = p("127.0.0.1:5000/t/app:v1");
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.repository(), "t/app");
        assert_eq!(r.tag(), Some("v1"));
        let r = p("localhost/app");
        assert_eq!((r.registry(), r.repository()), ("localhost", "app"));
    }

    #[test]
    fn digest_only_reference_has_no_tag() {
        let r = p(&format!("ghcr.io/org/app@{D}"));
        assert_eq!(r.tag(), None);
        assert_eq!(r.reference(), D);
        let r = p(&format!("ghcr.io/org/app:v2@{D}"));
        assert_eq!(r.tag(), Some("v2"));
        assert_eq!(r.reference(), D);
    }

    #[test]
    fn pinned_drops_tag() {
        let r = p("registry.example.com:443/a/b:latest").pinned(D.parse().unwrap());
        assert_eq!(r.to_string(), format!("registry.example.com:443/a/b@{D}"));
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!("".parse::<ImageRef>(), Err(ImageRefError::Empty));
        assert!(matches!(
            "Busybox".parse::<ImageRef>(),
            Err(ImageRefError::BadRepository(_))
        ));
        assert!(matches!(
            "a//b".parse::<ImageRef>(),
            Err(ImageRefError::BadRepository(_))
        ));
        assert!(matches!(
            "app:-x".parse::<ImageRef>(),
            Err(ImageRefError::BadTag(_))
        ));
        assert!(matches!(
            "app@sha256:12".parse::<ImageRef>(),
            Err(ImageRefError::BadDigest(_))
        ));
    }

    #[test]
    fn component_separators() {
        for ok in ["a", "a.b", "a_b", "a__b", "a---b", "a1-b2.c3"] {
            assert!(validate_component(ok), "{ok}");
        }
        for bad in ["-a", "a-", "a..b", "a___b", "a.-b", "A"] {
            assert!(!validate_component(bad), "{bad}");
        }
    }
}
