//! The crate's one error type. Every variant names the file, line and column it is about and,
//! where there is one, what the user can do about it.

use crate::span::Location;

/// Everything that can go wrong in the Dockerfile frontend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The text is not a Dockerfile the parser understands.
    #[error("{location}: {message}")]
    Syntax {
        /// Where the parser stopped.
        location: Location,
        /// The parser's description.
        message: String,
    },
    /// An instruction berth recognises but does not implement.
    #[error("unsupported instruction {instruction} at {location}; {hint}")]
    UnsupportedInstruction {
        /// The instruction keyword, upper case.
        instruction: String,
        /// Where it is.
        location: Location,
        /// What to do instead.
        hint: String,
    },
    /// A flag berth does not know or deliberately does not implement.
    #[error("unsupported flag --{flag} on {instruction} at {location}; {hint}")]
    UnsupportedFlag {
        /// The flag name, without dashes (may include `=value` when the value is the problem).
        flag: String,
        /// The instruction keyword.
        instruction: &'static str,
        /// Where the instruction is.
        location: Location,
        /// What to do instead.
        hint: String,
    },
    /// A flag whose value is malformed.
    #[error("invalid --{flag} on {instruction} at {location}: {reason}")]
    InvalidFlag {
        /// The flag name, without dashes.
        flag: String,
        /// The instruction keyword.
        instruction: &'static str,
        /// Where the instruction is.
        location: Location,
        /// What is wrong and how to write it.
        reason: String,
    },
    /// An instruction whose arguments are malformed or unsupported.
    #[error("invalid {instruction} at {location}: {reason}")]
    InvalidInstruction {
        /// The instruction keyword.
        instruction: &'static str,
        /// Where the instruction is.
        location: Location,
        /// What is wrong and how to write it.
        reason: String,
    },
    /// `$var` / `${var...}` substitution failed (syntax error or `${var:?message}`).
    #[error("variable expansion failed in {instruction} at {location}: {source}")]
    Expansion {
        /// The instruction keyword.
        instruction: &'static str,
        /// Where the instruction is.
        location: Location,
        /// What the lexer reported.
        #[source]
        source: crate::lex::LexError,
    },
    /// `COPY --from` / `RUN --mount=from=` names a stage index that does not exist.
    #[error(
        "{instruction} at {location} refers to stage {reference}, which does not exist; {hint}"
    )]
    UnknownStage {
        /// The instruction keyword.
        instruction: &'static str,
        /// Where the instruction is.
        location: Location,
        /// The reference as written (after expansion).
        reference: String,
        /// The stages that do exist.
        hint: String,
    },
    /// Stages depend on each other in a cycle.
    #[error(
        "stages depend on each other in a cycle ({cycle}) at {location}; break the cycle by copying from an earlier stage"
    )]
    StageCycle {
        /// The stages on the cycle, e.g. `a -> b -> a`.
        cycle: String,
        /// The instruction that closes the cycle.
        location: Location,
    },
    /// `--target` names no stage.
    #[error("target stage {target:?} not found in {file}; stages are: {available}")]
    UnknownTarget {
        /// The requested target.
        target: String,
        /// The Dockerfile.
        file: String,
        /// The names (or indexes) of the stages that exist.
        available: String,
    },
    /// A `.dockerignore` line that is not a valid pattern.
    #[error("{location}: invalid pattern {pattern:?} in .dockerignore: {reason}")]
    IgnorePattern {
        /// The file and line.
        location: Location,
        /// The pattern as written.
        pattern: String,
        /// What is wrong.
        reason: String,
    },
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
