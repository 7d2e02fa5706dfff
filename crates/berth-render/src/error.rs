//! The one error type of this crate.

use std::path::PathBuf;

use berth_objects::ObjectError;

/// Everything that can go wrong while turning manifest sources into an [`ObjectSet`].
///
/// Each message says where (file:line when there is one) and what to do about it.
///
/// [`ObjectSet`]: crate::ObjectSet
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RenderError {
    /// A manifest, template or values file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },

    /// A file (or a tool's output) is not well-formed YAML or JSON.
    #[error(
        "{origin}:{line}:{column}: malformed {format}: {message}\n  fix the document at that position"
    )]
    Syntax {
        /// File path, or the command whose output was parsed.
        origin: String,
        /// 1-based line.
        line: u64,
        /// 1-based column.
        column: u64,
        /// `YAML` or `JSON`.
        format: &'static str,
        /// The parser's message.
        message: String,
    },

    /// An object, or the set of objects, is invalid: not a Kubernetes object, defined twice,
    /// outside the environment's namespace, or an unusable release name.
    #[error(transparent)]
    Object(#[from] ObjectError),

    /// A minijinja template failed to compile or render (undefined variables are errors).
    #[error(
        "{}{}: template error: {message}\n  check the template and the values passed to it \
         (values files, --set)",
        file.display(),
        line.map(|l| format!(":{l}")).unwrap_or_default()
    )]
    Template {
        /// The template file where the error is (may be an included file).
        file: PathBuf,
        /// 1-based line in that file, when known.
        line: Option<usize>,
        /// minijinja's message.
        message: String,
    },

    /// A template rendered, but its output is not YAML.
    #[error(
        "{}: the rendered template is not YAML: {message} (line {line}, column {column} of the \
         rendered text)\n  {line} | {rendered}\n  fix the template so that it renders YAML; quote \
         values that may hold `: ` or newlines with `{{{{ x | tojson }}}}`",
        template.display()
    )]
    RenderedNotYaml {
        /// The template file.
        template: PathBuf,
        /// 1-based line in the rendered text.
        line: u64,
        /// 1-based column in the rendered text.
        column: u64,
        /// That line of the rendered text.
        rendered: String,
        /// The parser's message.
        message: String,
    },

    /// A values file or a `--set` override is unusable.
    #[error("{origin}: invalid values: {message}")]
    Values {
        /// The values file, or `--set <expr>`.
        origin: String,
        /// What is wrong.
        message: String,
    },

    /// An external tool (kustomize, helm) is not installed where berth looks for it.
    #[error(
        "`{tool}` not found (looked for `{}`)\n  install {tool} and put it on PATH, set its path \
         in berth's configuration, or run `berth doctor` to check the tools berth needs",
        program.display()
    )]
    ToolMissing {
        /// `kustomize` or `helm`.
        tool: &'static str,
        /// The program berth tried to run.
        program: PathBuf,
    },

    /// An external tool ran and failed.
    #[error("`{command}` failed ({status}):\n{stderr}")]
    ToolFailed {
        /// The command line that was run.
        command: String,
        /// Exit status, or the IO error that prevented running it.
        status: String,
        /// The tool's standard error, trimmed.
        stderr: String,
    },

    /// A directory of plain manifests contains a kustomization or a Helm chart.
    #[error(
        "{} is a {tool} directory inside a plain manifest directory\n  declare it as a {tool} \
         source instead of nesting it",
        path.display()
    )]
    NestedToolDir {
        /// The kustomization or Chart.yaml file.
        path: PathBuf,
        /// `kustomize` or `helm`.
        tool: &'static str,
    },

    /// An image substitution entry is invalid.
    #[error("image map entry `{entry}`: {message}")]
    ImageMap {
        /// The entry as given.
        entry: String,
        /// What is wrong with it.
        message: String,
    },

    /// A source (a file in a manifests directory, kustomization or chart, a kustomization's
    /// reference, a values file) resolves outside the repository.
    #[error(
        "{what} leads outside the repository {} (to {})\n  berth renders only what is inside the \
         repository: replace the link or reference with the file itself, inside the repository",
        root.display(),
        target.display()
    )]
    OutsideRepository {
        /// The path or reference as found (`k8s/app/kustomization.yaml: resources entry ...`).
        what: String,
        /// Where it resolves.
        target: PathBuf,
        /// The repository.
        root: PathBuf,
    },

    /// A link inside the repository points at nothing.
    #[error(
        "{} is a link to {}, which does not exist\n  remove the link or make it point at a file \
         inside the repository",
        path.display(),
        target.display()
    )]
    DanglingLink {
        /// The link.
        path: PathBuf,
        /// What it names.
        target: PathBuf,
    },
}
