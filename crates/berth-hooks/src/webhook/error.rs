//! Why a webhook request was refused, and what the server should answer.

use http::StatusCode;

use super::Provider;

/// A webhook request berth refuses. Each variant maps to the HTTP status the server answers
/// ([`HookError::status`]) and its message tells the sending host's admin what to fix. No
/// message ever contains the configured secret, the expected signature or the signature the
/// request carried.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HookError {
    /// None of the known event headers is present: not a GitHub, Gitea, Gogs or GitLab webhook.
    #[error(
        "the request is not a webhook berth knows: it has none of the headers X-GitHub-Event, \
         X-Gitea-Event, X-Gogs-Event or X-Gitlab-Event; point a GitHub, Gitea, Gogs or GitLab \
         webhook at this URL"
    )]
    UnknownProvider,

    /// The endpoint is configured for one provider and the request comes from another.
    #[error(
        "this endpoint takes {expected} webhooks but the request carries {found}'s headers; \
         point the webhook at berth's {found} endpoint, or set this repository's provider to \
         {found} in the server config"
    )]
    WrongProvider {
        /// The provider the endpoint or repository is configured for.
        expected: Provider,
        /// The provider the request's headers name.
        found: Provider,
    },

    /// The provider's event header is missing or empty.
    #[error(
        "the {provider} webhook has no {header} header, so berth cannot tell which event it is"
    )]
    MissingEvent {
        /// Who sent it.
        provider: Provider,
        /// The header that was expected.
        header: &'static str,
    },

    /// The event header and the payload disagree (GitLab's `object_kind`).
    #[error(
        "the {provider} webhook says `{event}` in {header} but its payload is a `{object_kind}` \
         event; the request was altered or is not from {provider}"
    )]
    EventMismatch {
        /// Who sent it.
        provider: Provider,
        /// The event header.
        header: &'static str,
        /// The header's value.
        event: String,
        /// What the payload says it is.
        object_kind: String,
    },

    /// No usable delivery id: missing, empty, too long or with control characters.
    #[error(
        "the {provider} webhook has no usable delivery id in {header} (missing, empty, or longer \
         than 128 characters); berth needs it to recognise redeliveries"
    )]
    MissingDelivery {
        /// Who sent it.
        provider: Provider,
        /// The header berth looked for first.
        header: &'static str,
    },

    /// The server has no secret for this repository: it never accepts unsigned webhooks.
    #[error(
        "berth has no webhook secret for this repository, and it never accepts unsigned webhooks; \
         set the repository's webhook secret in the server config and the same secret at the \
         git host"
    )]
    NoSecret,

    /// The request carries no signature (or token) at all.
    #[error(
        "the {provider} webhook is not signed (no {header} header): set the webhook's secret at \
         {provider} to the one berth's server config has for this repository"
    )]
    Unsigned {
        /// Who sent it.
        provider: Provider,
        /// The header that should carry the signature or token.
        header: &'static str,
    },

    /// The signature header is present but not in the provider's format.
    #[error("the {provider} webhook's {header} header is not of the form {form}")]
    MalformedSignature {
        /// Who sent it.
        provider: Provider,
        /// The signature header.
        header: &'static str,
        /// The expected form, e.g. `sha256=<64 hex digits>`.
        form: &'static str,
    },

    /// The HMAC-SHA256 signature does not match the body.
    #[error(
        "the {provider} webhook's signature ({header}) does not match its body: the secret set \
         at {provider} differs from the one berth's server config has for this repository (or \
         something between them changed the body)"
    )]
    BadSignature {
        /// Who sent it.
        provider: Provider,
        /// The signature header.
        header: &'static str,
    },

    /// GitLab's shared token does not match.
    #[error(
        "the GitLab webhook's {header} does not match: set the webhook's secret token in GitLab \
         to the one berth's server config has for this repository"
    )]
    BadToken {
        /// The token header.
        header: &'static str,
    },

    /// The body is larger than the server accepts.
    #[error(
        "the webhook body is {size} bytes, more than the {max} bytes berth accepts; raise the \
         server's webhook body limit if this push is legitimate"
    )]
    TooLarge {
        /// Size of the body (or the announced Content-Length).
        size: usize,
        /// The limit.
        max: usize,
    },

    /// A content type berth does not read.
    #[error(
        "the webhook's content type `{content_type}` is not supported: configure the webhook to \
         send application/json (application/x-www-form-urlencoded with a payload field works too)"
    )]
    UnsupportedContentType {
        /// The Content-Type header as sent (truncated to 100 characters).
        content_type: String,
    },

    /// A form-encoded body without the `payload` field the providers put the JSON in.
    #[error(
        "the form-encoded webhook body has no `payload` field; configure the webhook to send \
         application/json"
    )]
    MissingFormPayload,

    /// The payload is not JSON.
    #[error("the {provider} `{event}` payload is not valid JSON (line {line}, column {column})")]
    InvalidJson {
        /// Who sent it.
        provider: Provider,
        /// The event header's value.
        event: String,
        /// 1-based line of the error in the JSON text.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// The parser's message.
        #[source]
        source: serde_json::Error,
    },

    /// The payload is JSON but lacks what the provider always sends (`ref`, `repository`...).
    #[error(
        "the {provider} `{event}` payload is not shaped like {provider}'s (line {line}, column \
         {column}); is the webhook's provider right in berth's server config?"
    )]
    UnexpectedPayload {
        /// Who sent it.
        provider: Provider,
        /// The event header's value.
        event: String,
        /// 1-based line of the error in the JSON text.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// The parser's message (names the missing or mistyped field).
        #[source]
        source: serde_json::Error,
    },
}

impl HookError {
    /// The HTTP status the server should answer with.
    pub fn status(&self) -> StatusCode {
        match self {
            HookError::Unsigned { .. }
            | HookError::BadSignature { .. }
            | HookError::BadToken { .. }
            | HookError::MalformedSignature { .. } => StatusCode::UNAUTHORIZED,
            HookError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            HookError::UnsupportedContentType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            HookError::NoSecret => StatusCode::INTERNAL_SERVER_ERROR,
            HookError::UnknownProvider
            | HookError::WrongProvider { .. }
            | HookError::MissingEvent { .. }
            | HookError::EventMismatch { .. }
            | HookError::MissingDelivery { .. }
            | HookError::MissingFormPayload
            | HookError::InvalidJson { .. }
            | HookError::UnexpectedPayload { .. } => StatusCode::BAD_REQUEST,
        }
    }

    /// A short stable name for metrics and JSON answers (`unsigned`, `bad_signature`, ...).
    pub fn code(&self) -> &'static str {
        match self {
            HookError::UnknownProvider => "unknown_provider",
            HookError::WrongProvider { .. } => "wrong_provider",
            HookError::MissingEvent { .. } => "missing_event",
            HookError::EventMismatch { .. } => "event_mismatch",
            HookError::MissingDelivery { .. } => "missing_delivery",
            HookError::NoSecret => "no_secret",
            HookError::Unsigned { .. } => "unsigned",
            HookError::MalformedSignature { .. } => "malformed_signature",
            HookError::BadSignature { .. } => "bad_signature",
            HookError::BadToken { .. } => "bad_token",
            HookError::TooLarge { .. } => "too_large",
            HookError::UnsupportedContentType { .. } => "unsupported_content_type",
            HookError::MissingFormPayload => "missing_form_payload",
            HookError::InvalidJson { .. } => "invalid_json",
            HookError::UnexpectedPayload { .. } => "unexpected_payload",
        }
    }

    pub(crate) fn from_json(provider: Provider, event: &str, source: serde_json::Error) -> Self {
        let (line, column) = (source.line(), source.column());
        let event = event.to_string();
        if source.is_data() {
            HookError::UnexpectedPayload {
                provider,
                event,
                line,
                column,
                source,
            }
        } else {
            HookError::InvalidJson {
                provider,
                event,
                line,
                column,
                source,
            }
        }
    }
}
