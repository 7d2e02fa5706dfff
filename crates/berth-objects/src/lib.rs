//! Kubernetes objects as data, shared by the render step (which makes an [`ObjectSet`]) and
//! the deploy engine (which applies one): no IO, no Kubernetes client.
//!
//! - [`Object`]: a `serde_json::Value` plus its [`ObjectKey`] (group, kind, namespace, name)
//!   and [`Source`] (file:line of the document); [`ObjectSet`] holds at most one per key.
//! - [`order`]: the apply phases ([`deploy_order`]).
//! - [`ownership`]: the labels and annotations that mark what berth deployed, and the
//!   environment's namespace rule ([`ObjectSet::apply_ownership`]).
//! - [`apis`]: removed and deprecated Kubernetes APIs and what replaced them.
//! - [`yaml::to_yaml`]: stable YAML output (sorted keys), also what release content hashes
//!   are computed over.
//!
//! Why a crate of its own rather than a module of berth-types: berth-types is below every
//! berth crate (store, git, server, ...) and uses serde, thiserror and jiff only; these types
//! need a YAML serializer (serde-saphyr) and an 800-line API table that only render and deploy
//! use. It sits below both, so berth-deploy does not depend on berth-render.

pub mod apis;
mod error;
pub mod object;
pub mod order;
pub mod ownership;
pub mod yaml;

pub use error::ObjectError;
pub use object::{Object, ObjectKey, ObjectSet, Source};
pub use order::{ApplyPhase, Phase, deploy_order};
pub use ownership::Ownership;
