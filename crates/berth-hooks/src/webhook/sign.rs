//! HMAC-SHA256 signatures and token comparison, in constant time.

use berth_types::Secret;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &Secret) -> HmacSha256 {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    HmacSha256::new_from_slice(secret.expose().as_bytes()).expect("HMAC accepts any key length")
}

/// The lowercase hex HMAC-SHA256 of `body` under `secret`: what Gitea and Gogs put in
/// `X-Gitea-Signature` / `X-Gogs-Signature`.
pub fn hmac_sha256_hex(secret: &Secret, body: &[u8]) -> String {
    let mut m = mac(secret);
    m.update(body);
    hex::encode(m.finalize().into_bytes())
}

/// GitHub's `X-Hub-Signature-256` value for `body`: `sha256=<hex>`. For senders and tests.
pub fn github_signature(secret: &Secret, body: &[u8]) -> String {
    format!("sha256={}", hmac_sha256_hex(secret, body))
}

/// Whether `signature` (raw bytes) is the HMAC-SHA256 of `data`; constant time.
pub(crate) fn hmac_matches(secret: &Secret, data: &[u8], signature: &[u8]) -> bool {
    let mut m = mac(secret);
    m.update(data);
    m.verify_slice(signature).is_ok()
}

/// Whether two tokens are equal, in time independent of where they differ and of their
/// lengths (both are hashed first).
pub(crate) fn token_matches(secret: &Secret, token: &str) -> bool {
    let a = Sha256::digest(secret.expose().as_bytes());
    let b = Sha256::digest(token.as_bytes());
    a.ct_eq(&b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_githubs_documented_example() {
        // The example from GitHub's "Validating webhook deliveries" page.
        let secret = Secret::new("It's a Secret to Everybody");
        assert_eq!(
            github_signature(&secret, b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }

    #[test]
    fn tokens_compare_whole() {
        let s = Secret::new("t0ken");
        assert!(token_matches(&s, "t0ken"));
        assert!(!token_matches(&s, "t0ke"));
        assert!(!token_matches(&s, "t0ken "));
        assert!(!token_matches(&s, ""));
    }
}
