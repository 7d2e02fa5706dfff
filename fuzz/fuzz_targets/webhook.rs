//! Webhook payloads of every provider, JSON and form-encoded: the first byte picks the
//! provider, the event and the content type, the rest is the body. Parsing never panics, a
//! correctly signed body verifies, and a wrong secret never does.
#![no_main]
use berth_hooks::webhook::{self, Provider, github_signature, hmac_sha256_hex};
use berth_types::Secret;
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let provider = Provider::ALL[usize::from(pick) % Provider::ALL.len()];
    let event = match (provider, pick / 4 % 3) {
        (Provider::GitLab, 0) => "Push Hook",
        (Provider::GitLab, 1) => "Tag Push Hook",
        (_, 0) => "push",
        (_, 1) => "delete",
        _ => "ping",
    };
    let form = pick & 0x80 != 0;
    let secret = Secret::new("fuzz-secret");
    let mut headers = HeaderMap::new();
    headers.insert(provider.event_header(), HeaderValue::from_static(event));
    for h in provider.delivery_headers() {
        headers.insert(*h, HeaderValue::from_static("fuzz-delivery"));
    }
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(if form {
            "application/x-www-form-urlencoded"
        } else {
            "application/json"
        }),
    );
    let signature = match provider {
        Provider::GitHub => github_signature(&secret, body),
        Provider::GitLab => "fuzz-secret".to_string(),
        _ => hmac_sha256_hex(&secret, body),
    };
    headers.insert(
        provider.signature_header(),
        HeaderValue::from_str(&signature).expect("hex is a header value"),
    );
    let verified = webhook::verify(provider, &headers, body, &secret);
    if !form {
        assert!(verified.is_ok(), "a correctly signed body failed: {verified:?}");
    }
    let wrong = Secret::new("other-secret");
    assert!(webhook::verify(provider, &headers, body, &wrong).is_err());
    let _ = webhook::parse(provider, &headers, body);
});
