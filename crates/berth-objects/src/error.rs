//! The one error type of this crate.

use crate::object::{ObjectKey, Source};

/// What makes an object, or a set of objects, unusable. Each message says where (file:line of
/// the document) and what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ObjectError {
    /// A document parsed but is not a Kubernetes object berth can apply.
    #[error(
        "{at}: not a Kubernetes object: {problem}\n  every document needs `apiVersion`, `kind` \
         and `metadata.name` (empty documents are skipped)"
    )]
    NotAnObject {
        /// Where the document starts.
        at: Source,
        /// What is missing or wrong.
        problem: String,
    },

    /// Two documents define the same object.
    #[error(
        "{key} is defined twice: at {first} and at {second}\n  remove one of them, or give them \
         different names"
    )]
    Duplicate {
        /// The object's identity.
        key: Box<ObjectKey>,
        /// The first definition.
        first: Source,
        /// The second definition.
        second: Source,
    },

    /// An object would be deployed outside the environment's namespace.
    #[error(
        "{at}: {key} is in namespace `{found}`, but this environment deploys to `{expected}`\n  \
         berth never deploys outside the environment's namespace: remove `metadata.namespace` \
         or deploy that object from an environment of its own"
    )]
    ForeignNamespace {
        /// The object.
        key: Box<ObjectKey>,
        /// Where it was defined.
        at: Source,
        /// The namespace it asks for (for a `Namespace` object: its name).
        found: String,
        /// The environment's namespace.
        expected: String,
    },

    /// The release settings cannot be written as Kubernetes labels.
    #[error("invalid release `{value}`: {message}")]
    Release {
        /// The offending value.
        value: String,
        /// Why.
        message: String,
    },
}
