//! `berth.yaml`: the model, its defaults, strict validation with `file:line:column` errors, and
//! its JSON Schema.
//!
//! ```text
//!  text ──serde-saphyr──► raw::RawConfig ──validate──► Config
//!         (YAML, types,    (mirrors the file,  (defaults, names, paths,
//!          unknown keys)    with locations)     durations, images, `from`)
//!                │                                   │
//!                └──────── ConfigError::Invalid(Vec<Diagnostic>) ◄┘
//!                          "unknown key `imgae` at berth.yaml:7:5, did you mean `image`?"
//! ```
//!
//! Design:
//! - **Two layers.** The file is read into private serde types that mirror it key by key,
//!   deny unknown keys and keep `Spanned` locations for every value checked later. The public
//!   [`Config`] is the checked result: durations are [`std::time::Duration`], images are
//!   [`berth_types::ImageRef`], defaults are filled in, and no YAML type leaks out.
//! - **Every error points somewhere and says what to do.** YAML and type errors stop at the
//!   first one (serde cannot go on); semantic checks collect every problem. Unknown keys and
//!   values get a "did you mean" by edit distance ([`suggest`]). A missing key points at the
//!   start of the mapping that lacks it.
//! - **The schema comes from the same types** (schemars), so it cannot drift from the parser.
//! - **Paths are relative to the directory of berth.yaml** and are kept relative in [`Config`]
//!   (lexically normalised); absolute paths and `..` are refused, so no path leaves the
//!   repository. [`Config::path`] resolves one. Manifest sources,
//!   build contexts, Dockerfiles, Helm values files and hook manifests must exist; change
//!   detection `paths` and `shared` need not (a path may appear later).
//!
//! # A full example
//!
//! This file is `crates/berth-config/berth.example.yaml`; a unit test parses it.
//!
//! ```yaml
#![doc = include_str!("../berth.example.yaml")]
//! ```
//!
//! Names of services, environments, hooks and namespaces are DNS-1123 labels starting with a
//! letter (they become Kubernetes names and labels).

pub mod data;
mod discover;
pub mod duration;
pub mod error;
pub mod model;
pub mod notify;
mod raw;
mod reference;
pub mod strategy;
pub mod suggest;
mod validate;

#[cfg(test)]
mod tests;

use std::path::Path;

pub use data::{CloneStep, CopyStep, DataStep, MaskColumn};
pub use discover::segment_matches;
pub use error::{ConfigError, Diagnostic, Location, Problem};
pub use model::{
    Build, BuildNetwork, BuildSandbox, Config, DeploySettings, Environment, Helm, Hook, HookAction,
    Hooks, ImageNaming, ImageValues, Manifests, Promotion, Registry, Service, TEMPLATE_VARIABLES,
    Test,
};
pub use notify::{Notification, NotifyTarget, UrlFrom};
pub use reference::reference_markdown;

/// The configuration file's name.
pub const FILE_NAME: &str = "berth.yaml";

/// Reads and validates `path` (usually `<repo>/berth.yaml`); relative paths in it are relative
/// to its directory. Messages name the file by its file name.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path.file_name().map_or_else(
        || FILE_NAME.to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    parse(&text, &name, dir)
}

/// Parses and validates berth.yaml text. `file` names the file in messages; `dir` is the
/// directory that relative paths are resolved against (and checked to exist in).
pub fn parse(text: &str, file: &str, dir: &Path) -> Result<Config, ConfigError> {
    let diagnostic = |location, problem| ConfigError::Invalid {
        diagnostics: vec![Diagnostic {
            file: file.to_string(),
            location,
            problem,
        }],
    };
    if text.lines().all(|l| {
        let l = l.trim();
        l.is_empty() || l.starts_with('#') || l == "---"
    }) {
        return Err(diagnostic(Location::new(1, 1), Problem::Empty));
    }
    let mut options = serde_saphyr::Options::default();
    options.with_snippet = false;
    let raw: raw::RawConfig = serde_saphyr::from_str_with_options(text, options).map_err(|e| {
        let (location, problem) = translate(&e);
        diagnostic(location, problem)
    })?;
    let mut checker = validate::Checker::new(file, dir);
    let config = checker.config(raw);
    if checker.diagnostics.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::Invalid {
            diagnostics: checker.diagnostics,
        })
    }
}

/// The JSON Schema (draft 2020-12) of berth.yaml, for editors and `berth schema`.
pub fn json_schema() -> serde_json::Value {
    schemars::schema_for!(raw::RawConfig).to_value()
}

fn translate(e: &serde_saphyr::Error) -> (Location, Problem) {
    use serde_saphyr::Error as E;
    let e = e.without_snippet();
    let location = e
        .location()
        .map_or(Location::new(1, 1), |l| Location::from_saphyr(&l));
    let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let problem = match e {
        E::SerdeUnknownField {
            field, expected, ..
        } => Problem::UnknownKey {
            key: field.clone(),
            expected: strings(expected),
            suggestion: suggest::suggest(field, expected.iter().copied()),
        },
        E::SerdeUnknownVariant {
            variant, expected, ..
        } => Problem::UnknownValue {
            value: variant.clone(),
            expected: strings(expected),
            suggestion: suggest::suggest(variant, expected.iter().copied()),
        },
        E::SerdeMissingField { field, .. } => Problem::MissingKey {
            key: field.to_string(),
        },
        _ if e.to_string().contains("untagged enum") => Problem::WrongType {
            message: bare_message(e, location),
        },
        E::SerdeInvalidType { .. }
        | E::SerdeInvalidValue { .. }
        | E::SerdeInvalidLength { .. }
        | E::Unexpected { .. }
        | E::NullIntoString { .. }
        | E::InvalidScalar { .. }
        | E::InvalidBooleanStrict { .. } => Problem::WrongType {
            message: bare_message(e, location),
        },
        _ => Problem::Syntax {
            message: bare_message(e, location),
        },
    };
    (location, problem)
}

/// The parser's message without the location it appends or prepends (we print our own).
fn bare_message(e: &serde_saphyr::Error, at: Location) -> String {
    let mut m = e.to_string();
    for pattern in [
        format!(" at line {}, column {}", at.line, at.column),
        format!("line {} column {}: ", at.line, at.column),
        "error: ".to_string(),
    ] {
        m = m.replace(&pattern, "");
    }
    let m = m.trim();
    // serde-saphyr speaks of YAML events and Rust types; say it in berth.yaml's terms.
    let reworded = [
        ("expected sequence start", "expected a list (`- ` items)"),
        (
            "expected mapping start",
            "expected a mapping (`key: value` lines)",
        ),
        ("invalid boolean", "expected `true` or `false`"),
        (
            "untagged enum OneOrMany",
            "expected a path or a list of paths",
        ),
    ];
    for (from, to) in reworded {
        if m.contains(from) {
            return to.to_string();
        }
    }
    m.to_string()
}
