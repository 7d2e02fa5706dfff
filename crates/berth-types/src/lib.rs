//! Domain types shared by every berth crate, with no IO.
//!
//! This is the bottom of the crate graph. Everything above it may depend on it; it depends on
//! nothing of berth's own:
//!
//! ```text
//!                           berth (cli: commands, doctor, terminal output)
//!          ┌──────────────────┬─────┴────────┬──────────────┐
//!   berth-pipeline       berth-server    berth-store   berth-testkit (dev only)
//!    │       │      │
//!  berth-build  berth-render  berth-deploy ── berth-rollout
//!    │                          │
//!  berth-registry          berth-cluster (the only crate that talks to Kubernetes)
//!    └─────────────┬────────────┘
//!             berth-types
//! ```
//!
//! The types here carry data between layers: [`ImageRef`] and [`Digest`] name what was built,
//! [`Secret`] and [`SafeUrl`] keep credentials out of logs by construction, and [`Event`] is the
//! one vocabulary in which every library reports progress (libraries never print; the binary
//! decides how events are shown).

mod digest;
pub mod duration;
mod event;
mod image_ref;
pub mod mask;
mod secret;
pub mod size;

pub use digest::{Digest, DigestError};
pub use event::{Event, EventSink, ForService, Level, service_step, split_service_step};
pub use image_ref::{ImageRef, ImageRefError};
pub use mask::{ColumnRef, MaskRule};
pub use secret::{SafeUrl, Secret};

/// The variables berth gives manifest templates, as a service's `vars:` may rename them
/// (`service_name: service`): berth-config checks the names, berth-render provides the values.
pub const TEMPLATE_VARIABLES: &[&str] = &[
    "service",
    "image",
    "env",
    "env.name",
    "env.namespace",
    "images",
];
