//! berth's client for OCI distribution registries.
//!
//! Two layers: [`credentials`] finds what to authenticate with (docker `config.json`, its
//! credential helpers, or the same JSON from a Kubernetes `dockerconfigjson` Secret), and
//! [`Registry`] speaks the Distribution API — a `/v2/` ping that walks the auth challenge itself
//! (so `berth doctor` can say *which* step failed), and blob/manifest transfer through
//! `oci-client`, with every pulled byte checked against its digest.
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

pub use credentials::{Credential, CredentialStore, CredentialsError};
pub use registry::{
    BlobPush, Ping, PlatformSpec, Registry, RegistryError, RegistryOptions, RegistryStats,
    ResolvedManifest, media, sha256, sha256_file,
};
pub use retry::RetryPolicy;
