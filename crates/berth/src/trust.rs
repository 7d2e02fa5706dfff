//! A machine without CA certificates — a slim container image without the ca-certificates
//! package, a minimal VM — would make berth panic when it builds its first HTTPS client (the
//! TLS stack finds no roots to trust, and the registry library builds a default client that
//! cannot fail). berth then trusts the Mozilla root certificates it carries instead: it writes
//! them once per version into its own cache folder (`~/.cache/berth`, private to the user, never
//! a shared temporary folder another user could plant a bundle in) and runs itself again with
//! `SSL_CERT_FILE` pointing at them, since changing the environment of a running process is not
//! sound. Where the machine has certificates, or `SSL_CERT_FILE`/`SSL_CERT_DIR` is set, nothing
//! changes, so a company's own CA (a TLS-intercepting proxy) keeps working.

use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

/// Where Linux distributions keep their CA bundle (the places OpenSSL and rustls look).
const BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/ca-bundle.pem",
    "/etc/pki/tls/cacert.pem",
    "/etc/ssl/cert.pem",
];

/// Whether this machine has a CA bundle, or the user named one.
fn machine_has_roots() -> bool {
    if std::env::var_os("SSL_CERT_FILE").is_some() || std::env::var_os("SSL_CERT_DIR").is_some() {
        return true;
    }
    BUNDLES
        .iter()
        .any(|b| std::fs::metadata(b).is_ok_and(|m| m.is_file() && m.len() > 0))
        || std::fs::read_dir("/etc/ssl/certs").is_ok_and(|mut d| d.next().is_some())
}

/// The bundled roots as PEM.
fn bundled_pem() -> String {
    use base64::Engine as _;
    let mut pem = String::new();
    for der in webpki_root_certs::TLS_SERVER_ROOT_CERTS {
        let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).unwrap_or_default());
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
    }
    pem
}

/// `~/.cache/berth/mozilla-roots-VERSION.pem`, written when missing or different.
fn write_bundle() -> std::io::Result<PathBuf> {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))
        .ok_or_else(|| std::io::Error::other("neither HOME nor XDG_CACHE_HOME is set"))?;
    let dir = cache.join("berth");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)?;
    let path = dir.join(concat!("mozilla-roots-", env!("CARGO_PKG_VERSION"), ".pem"));
    let pem = bundled_pem();
    if std::fs::read_to_string(&path).ok().as_deref() != Some(pem.as_str()) {
        crate::atomic_write::replace(&path, pem.as_bytes())?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
    }
    Ok(path)
}

/// On a machine without CA certificates, runs berth again trusting the bundled roots; returns
/// only when nothing needs doing (or when it cannot be done: then it says why, and HTTPS
/// registries and clusters will fail as untrusted).
pub fn ensure_roots() {
    if machine_has_roots() {
        return;
    }
    let bundle = match write_bundle() {
        Ok(b) => b,
        Err(e) => {
            eprintln!(
                "warning: this machine has no CA certificates and berth could not write its own \
                 ({e}); install the ca-certificates package or set SSL_CERT_FILE"
            );
            return;
        }
    };
    eprintln!(
        "warning: this machine has no CA certificates; berth trusts the Mozilla root \
         certificates it carries ({}). Install the ca-certificates package, or set \
         SSL_CERT_FILE, to trust your own.",
        bundle.display()
    );
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("warning: cannot find berth's own binary to restart it ({e})");
            return;
        }
    };
    use std::os::unix::process::CommandExt as _;
    let err = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env("SSL_CERT_FILE", &bundle)
        .exec();
    eprintln!("warning: restarting berth with SSL_CERT_FILE failed: {err}");
}
