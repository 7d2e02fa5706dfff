//! Domain types shared by every berth crate, with no IO.
//!
//! This is the bottom of the crate graph. Everything above it may depend on it; it depends on
//! nothing of berth's own. The whole graph, each crate with the berth crates it uses (checked
//! against the Cargo.toml files; `docs/dev.md` has the same):
//!
//! ```text
//!  berth (cli)      pipeline server store deploy render build registry cluster data config
//!  berth-server     git hooks store config
//!  berth-pipeline   build render deploy data config registry cluster process   (the engine)
//!  berth-deploy     objects rollout cluster
//!  berth-data       cluster
//!  berth-build      registry
//!  berth-render     objects process
//!  berth-registry   process
//!  berth-git, berth-hooks, berth-store, berth-config, berth-cluster   (types only)
//!  berth-objects, berth-rollout, berth-process                         (no berth crate)
//!  berth-testkit    cluster registry   (dev-dependency of the tests)
//! ```
//!
//! Every crate but berth-objects, berth-rollout and berth-process also uses berth-types.
//! berth-cluster is the only crate that talks to Kubernetes. berth-objects (Kubernetes objects
//! as data: `ObjectSet`, apply order, ownership labels) sits below render and deploy, so the
//! deploy engine does not depend on the render step.
//!
//! The types here carry data between layers: [`ImageRef`] and [`Digest`] name what was built,
//! [`Secret`] and [`SafeUrl`] keep credentials out of logs by construction, and [`Event`] is the
//! one vocabulary in which every library reports progress (libraries never print; the binary
//! decides how events are shown).

pub mod canary;
pub mod cancel;
mod digest;
pub mod duration;
mod event;
pub mod glob;
mod image_ref;
pub mod mask;
pub mod notify;
mod secret;
pub mod size;
mod step;
pub mod view;

pub use cancel::{CancelToken, Cancelled};
pub use digest::{Digest, DigestError};
pub use event::{Event, EventSink, ForService, Level, State};
pub use image_ref::{ImageRef, ImageRefError};
pub use mask::{ColumnRef, MaskRule};
pub use notify::{NotifyEvent, Outbox, Queued, UnknownEvent};
pub use secret::{SafeUrl, Secret};
pub use step::{Step, StepOf, UnknownStep};

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
