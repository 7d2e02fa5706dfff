//! Executing a Dockerfile: the content store, layers, RUN through an OCI runtime, the build
//! cache and the image output. See [`build`].

mod builder;
mod context;
mod error;
pub mod image;
mod layer;
pub mod runtime;
mod snapshot;
mod store;

pub use builder::{
    BuildOptions, BuildRequest, BuiltImage, DEFAULT_PATH, build, unpack_image, unpack_layers,
};
pub use error::BuildError;
pub use layer::{LayerPlan, apply_layer, resolve_in_root, write_layer};
pub use snapshot::Snapshot;
pub use store::{CacheRecord, CachedLayer, Store, StoredImage, file_digest};
