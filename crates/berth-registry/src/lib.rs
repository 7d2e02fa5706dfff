//! berth's client for OCI distribution registries.
//!
//! Two layers: [`credentials`] finds what to authenticate with (docker `config.json`, its
//! credential helpers, or the same JSON from a Kubernetes `dockerconfigjson` Secret), and
//! [`Registry`] speaks the Distribution API — a `/v2/` ping that walks the auth challenge itself
//! (so `berth doctor` can say *which* step failed), pulls over berth's own HTTP client and
//! pushes through `oci-client`, with every pulled byte checked against its digest.
//!
//! Pulls read images berth did not make, from registries it does not trust: manifests are
//! capped at [`MAX_MANIFEST_BYTES`] and configs at [`MAX_CONFIG_BYTES`] while they stream;
//! layers stream to disk and fail as soon as more bytes arrive than their descriptor says.
//! Credentials go to a token service over HTTPS, or over plain HTTP only on the host of a
//! registry the user named insecure; redirects to another host never carry them.
//!
//! Calls are retried on 5xx answers and broken connections with bounded exponential backoff
//! ([`RetryPolicy`]); pushes mount blobs from another repository of the same registry when the
//! caller knows one that has them ([`Registry::push_blob_file_from`]).
//!
//! Plain HTTP is used only for hosts named as insecure; credentials are [`berth_types::Secret`]s
//! and never reach an error message.

pub mod credentials;
mod registry;
mod retry;

pub use credentials::{Credential, CredentialStore, CredentialsError, docker_config_json};
pub use registry::{
    BlobPush, MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES, Ping, PlatformSpec, Registry, RegistryError,
    RegistryOptions, RegistryStats, ResolvedManifest, media, sha256, sha256_file,
};
pub use retry::RetryPolicy;
