//! Executing a Dockerfile: the content store, layers, RUN through an OCI runtime, the build
//! cache and the image output. See [`build`].
//!
//! ```text
//! FROM image ─▶ Store::pull (mirrors, index → platform, blobs streamed + verified)
//! per step:  key = sha256(parent chain, expanded instruction, input content, env/workdir/user)
//!            hit  ─▶ reuse the recorded layer (no rootfs needed)
//!            miss ─▶ materialise rootfs (a kept one rewound, else unpack layers)
//!                                                       ─▶ COPY: copy + layer of written paths
//!                                                       ─▶ RUN: snapshot, runc, diff → layer
//! finish:    config + manifest → store (index.json tags), --dest oci:DIR, push (HEAD-skip,
//!            base layers mounted from their repository), root filesystems kept for next time
//! ```
//!
//! Several platforms (`BuildOptions::platforms`): each is built in turn (bases resolved per
//! platform, RUN of a foreign architecture through qemu-user — see [`emulation`]) and the
//! manifests are gathered in an OCI image index, which the tags name.
//!
//! Not implemented yet (each is a clear [`BuildError::Unsupported`]): symbolic `--chmod`,
//! `RUN --mount=type=cache` with `from=`/`source=`, base images with `ONBUILD` triggers.
//! Also missing: xattrs (file capabilities) in written layers.

mod builder;
mod context;
pub mod emulation;
mod error;
pub mod image;
mod kept;
mod layer;
mod run_mounts;
pub mod runtime;
mod seccomp;
mod snapshot;
mod store;

pub use builder::{
    BuildOptions, BuildRequest, BuiltImage, DEFAULT_PATH, PlatformImage, build, unpack_image,
    unpack_layers,
};
pub use context::resolve_user;
pub use error::BuildError;
pub use layer::{Compression, LayerPlan, apply_layer, resolve_in_root, write_layer};
pub use run_mounts::{SecretSource, Secrets};
pub use snapshot::Snapshot;
pub use store::{CacheRecord, CachedLayer, Store, StoredImage, file_digest, write_atomic};
