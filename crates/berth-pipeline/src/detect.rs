//! Buildpack-style detection: a directory without a Dockerfile -> which stack it is, a base
//! image and a generated Dockerfile.
//!
//! Detectors run in this order and the first match wins: **Node** (`package.json`), **Python**
//! (`requirements.txt` or `pyproject.toml`), **Ruby** (`Gemfile`), **static site**
//! (`index.html`), **binary** (exactly one executable regular file at the top level, nothing
//! else but dotfiles and docs).
//!
//! Base images. The default is a plain Debian image, `docker.io/library/debian:bookworm-slim`,
//! with the language runtime installed by `apt-get` in the generated Dockerfile; static sites
//! default to `docker.io/library/busybox:1.35` and serve with `busybox httpd`. Why not
//! `node:20-bookworm-slim` and friends: the test environment (and many air-gapped registries)
//! mirrors only a few base images, and Debian's packages are reachable wherever Debian is. A
//! caller that has the official runtime images can say so with [`Base::Runtime`] — the
//! Dockerfile then skips the package install; [`Detector::runtime_image`] names the usual one.
//!
//! Conventions of the generated images: the app lives in `/app`, listens on `$PORT` (set to
//! 8080, exposed), runs as an unprivileged user, and a `Procfile` `web:` line, when present,
//! is the start command (as on Heroku-style platforms).

use std::fmt;
use std::path::{Path, PathBuf};

/// Which detector matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Detector {
    /// `package.json`.
    Node,
    /// `requirements.txt` or `pyproject.toml`.
    Python,
    /// `Gemfile`.
    Ruby,
    /// `index.html`.
    Static,
    /// One executable file.
    Binary,
}

impl Detector {
    /// The official image that already holds this stack's runtime, for [`Base::Runtime`].
    pub fn runtime_image(self) -> &'static str {
        match self {
            Detector::Node => "docker.io/library/node:20-bookworm-slim",
            Detector::Python => "docker.io/library/python:3.11-slim-bookworm",
            Detector::Ruby => "docker.io/library/ruby:3.1-slim-bookworm",
            Detector::Static => DEFAULT_STATIC_BASE,
            Detector::Binary => DEFAULT_BASE,
        }
    }
}

impl fmt::Display for Detector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Detector::Node => "node",
            Detector::Python => "python",
            Detector::Ruby => "ruby",
            Detector::Static => "static",
            Detector::Binary => "binary",
        })
    }
}

/// The default base: plain Debian; runtimes are installed with apt-get.
pub const DEFAULT_BASE: &str = "docker.io/library/debian:bookworm-slim";
/// The default base for static sites (served by `busybox httpd`).
pub const DEFAULT_STATIC_BASE: &str = "docker.io/library/busybox:1.35";
/// The port the generated images listen on (`$PORT`).
pub const PORT: u16 = 8080;

/// Which base image the generated Dockerfile starts from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Base {
    /// The defaults: [`DEFAULT_BASE`] (runtime installed with apt-get), or
    /// [`DEFAULT_STATIC_BASE`] for static sites.
    #[default]
    Default,
    /// A Debian-based image without the runtime: it is installed with apt-get.
    Debian(String),
    /// An image that already has the runtime (`node`, `python3` + `pip`, `ruby` + `bundle`; for
    /// static sites, `busybox`): nothing is installed.
    Runtime(String),
}

/// What [`detect`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Detection {
    /// The detector that matched.
    pub detector: Detector,
    /// The file that made it match (relative to the directory), for `berth init` to explain.
    pub evidence: PathBuf,
    /// The base image used.
    pub base_image: String,
    /// The start command (shell form).
    pub command: String,
    /// The Dockerfile to build the directory with.
    pub dockerfile: String,
}

/// Why detection failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DetectError {
    /// The directory or a file in it could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The path.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// A stack was recognised but how to start it was not.
    #[error("{detector} app in {} has no start command: {hint}", dir.display())]
    NoStartCommand {
        /// The detector that matched.
        detector: Detector,
        /// The directory.
        dir: PathBuf,
        /// What to add.
        hint: &'static str,
    },
    /// `package.json` is not valid JSON.
    #[error("{} is not valid JSON: {message}", path.display())]
    BadPackageJson {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
}

/// Writes the Dockerfile detected for `service` under `store` and returns its path: named by
/// its content, written through a temporary sibling and a rename. (One name per service,
/// written in place, let two runs at once — a server building two repositories with a
/// service of the same name — build from each other's Dockerfile, or from a half-written one.)
pub fn write_detected(
    store: &berth_build::exec::Store,
    service: &str,
    dockerfile: &str,
) -> Result<PathBuf, berth_build::exec::BuildError> {
    let dir = store.root().join("detected");
    std::fs::create_dir_all(&dir).map_err(|source| berth_build::exec::BuildError::Io {
        path: dir.clone(),
        source,
    })?;
    let digest = berth_registry::sha256(dockerfile.as_bytes());
    let path = dir.join(format!("{service}-{}.Dockerfile", &digest.hex()[..16]));
    if !path.is_file() {
        berth_build::exec::write_atomic(&path, dockerfile.as_bytes())?;
    }
    Ok(path)
}

/// Detects the stack of `dir`. `Ok(None)`: nothing matched (write a Dockerfile).
pub fn detect(dir: &Path, base: &Base) -> Result<Option<Detection>, DetectError> {
    let read_dir = |source| DetectError::Read {
        path: dir.to_path_buf(),
        source,
    };
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(read_dir)?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()
        .map_err(read_dir)?;
    names.sort();
    let has = |n: &str| dir.join(n).is_file();
    let procfile = procfile_web(dir)?;

    let found = if has("package.json") {
        Some(node(dir, procfile)?)
    } else if has("requirements.txt") || has("pyproject.toml") {
        Some(python(dir, procfile)?)
    } else if has("Gemfile") {
        Some(ruby(dir, procfile)?)
    } else if has("index.html") {
        Some(Found {
            detector: Detector::Static,
            evidence: "index.html".into(),
            command: format!("httpd -f -v -p {PORT} -h /app"),
            packages: &[],
            install: Vec::new(),
            user: "nobody",
        })
    } else {
        binary(dir, &names)
    };
    Ok(found.map(|f| f.into_detection(base)))
}

struct Found {
    detector: Detector,
    evidence: PathBuf,
    command: String,
    /// Debian packages providing the runtime.
    packages: &'static [&'static str],
    /// Dockerfile lines between copying the dependency manifests and copying the rest.
    install: Vec<String>,
    user: &'static str,
}

impl Found {
    fn into_detection(self, base: &Base) -> Detection {
        let (image, apt) = match base {
            Base::Default if self.detector == Detector::Static => {
                (DEFAULT_STATIC_BASE.to_string(), false)
            }
            Base::Default => (DEFAULT_BASE.to_string(), true),
            Base::Debian(i) => (i.clone(), true),
            Base::Runtime(i) => (i.clone(), false),
        };
        let mut d = format!("# Generated by berth: detected a {} app.\n", self.detector);
        d.push_str(&format!("FROM {image}\n"));
        if apt && !self.packages.is_empty() {
            d.push_str(&format!(
                "RUN apt-get update \\\n && apt-get install -y --no-install-recommends {} \\\n && rm -rf /var/lib/apt/lists/*\n",
                self.packages.join(" ")
            ));
        }
        // HOME: the unprivileged user has none, and npm, pip and bundler want one.
        d.push_str(&format!("ENV PORT={PORT} HOME=/tmp\nWORKDIR /app\n"));
        for line in &self.install {
            d.push_str(line);
            d.push('\n');
        }
        d.push_str("COPY . /app\n");
        d.push_str(&format!("USER {}\nEXPOSE {PORT}\n", self.user));
        d.push_str(&format!(
            "CMD [\"/bin/sh\", \"-c\", {}]\n",
            serde_json::Value::String(format!("exec {}", self.command))
        ));
        Detection {
            detector: self.detector,
            evidence: self.evidence,
            base_image: image,
            command: self.command,
            dockerfile: d,
        }
    }
}

fn read(path: &Path) -> Result<String, DetectError> {
    std::fs::read_to_string(path).map_err(|source| DetectError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The `web:` command of a Procfile.
fn procfile_web(dir: &Path) -> Result<Option<String>, DetectError> {
    let p = dir.join("Procfile");
    if !p.is_file() {
        return Ok(None);
    }
    Ok(read(&p)?.lines().find_map(|l| {
        l.strip_prefix("web:")
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty())
    }))
}

fn node(dir: &Path, procfile: Option<String>) -> Result<Found, DetectError> {
    let path = dir.join("package.json");
    let pkg: serde_json::Value =
        serde_json::from_str(&read(&path)?).map_err(|e| DetectError::BadPackageJson {
            path: path.clone(),
            message: e.to_string(),
        })?;
    let has = |n: &str| dir.join(n).is_file();
    let command = if let Some(c) = procfile {
        c
    } else if pkg["scripts"]["start"].is_string() {
        "npm start".to_string()
    } else if let Some(main) = pkg["main"].as_str() {
        format!("node {main}")
    } else if has("server.js") {
        "node server.js".to_string()
    } else if has("index.js") {
        "node index.js".to_string()
    } else {
        return Err(DetectError::NoStartCommand {
            detector: Detector::Node,
            dir: dir.to_path_buf(),
            hint: "add a `start` script or `main` to package.json",
        });
    };
    let (copy, install) = if has("package-lock.json") {
        ("package.json package-lock.json", "npm ci --omit=dev")
    } else {
        ("package.json", "npm install --omit=dev")
    };
    Ok(Found {
        detector: Detector::Node,
        evidence: "package.json".into(),
        command,
        packages: &["nodejs", "npm"],
        install: vec![
            "ENV NODE_ENV=production".into(),
            format!("COPY {copy} /app/"),
            format!("RUN {install}"),
        ],
        user: "nobody",
    })
}

fn python(dir: &Path, procfile: Option<String>) -> Result<Found, DetectError> {
    let has = |n: &str| dir.join(n).is_file();
    let command = if let Some(c) = procfile {
        c
    } else if has("manage.py") {
        format!("python3 manage.py runserver 0.0.0.0:{PORT}")
    } else if let Some(f) = ["app.py", "main.py", "server.py"]
        .into_iter()
        .find(|f| has(f))
    {
        format!("python3 {f}")
    } else {
        return Err(DetectError::NoStartCommand {
            detector: Detector::Python,
            dir: dir.to_path_buf(),
            hint: "add a Procfile with a `web:` line, or an app.py / main.py",
        });
    };
    // Debian's Python refuses `pip install` into the system (PEP 668): use a virtualenv.
    let mut install = vec![
        "RUN python3 -m venv /opt/venv".to_string(),
        "ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1".to_string(),
    ];
    let evidence = if has("requirements.txt") {
        install.push("COPY requirements.txt /app/".into());
        install.push("RUN pip install --no-cache-dir -r requirements.txt".into());
        "requirements.txt"
    } else {
        install.push("COPY . /app".into());
        install.push("RUN pip install --no-cache-dir .".into());
        "pyproject.toml"
    };
    Ok(Found {
        detector: Detector::Python,
        evidence: evidence.into(),
        command,
        packages: &["python3", "python3-venv"],
        install,
        user: "nobody",
    })
}

fn ruby(dir: &Path, procfile: Option<String>) -> Result<Found, DetectError> {
    let has = |n: &str| dir.join(n).is_file();
    let command = if let Some(c) = procfile {
        c
    } else if has("bin/rails") {
        format!("bundle exec rails server -b 0.0.0.0 -p {PORT}")
    } else if has("config.ru") {
        format!("bundle exec rackup -o 0.0.0.0 -p {PORT}")
    } else {
        return Err(DetectError::NoStartCommand {
            detector: Detector::Ruby,
            dir: dir.to_path_buf(),
            hint: "add a Procfile with a `web:` line, or a config.ru",
        });
    };
    let lock = if has("Gemfile.lock") {
        " Gemfile.lock"
    } else {
        ""
    };
    Ok(Found {
        detector: Detector::Ruby,
        evidence: "Gemfile".into(),
        command,
        packages: &["ruby", "ruby-bundler"],
        install: vec![
            "ENV BUNDLE_WITHOUT=development:test BUNDLE_PATH=/usr/local/bundle".into(),
            format!("COPY Gemfile{lock} /app/"),
            "RUN bundle install".into(),
        ],
        user: "nobody",
    })
}

/// Files that may sit beside a prebuilt binary.
fn is_incidental(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    name.starts_with('.')
        || lower.starts_with("readme")
        || lower.starts_with("license")
        || lower.starts_with("changelog")
        || name == "Procfile"
        || name == "berth.yaml"
}

fn binary(dir: &Path, names: &[String]) -> Option<Found> {
    let mut executables = Vec::new();
    for name in names.iter().filter(|n| !is_incidental(n)) {
        let meta = std::fs::metadata(dir.join(name)).ok()?;
        if meta.is_file() && is_executable(&meta) {
            executables.push(name);
        } else {
            // Anything else (sources, directories) means this is not "just a binary".
            return None;
        }
    }
    let [exe] = executables.as_slice() else {
        return None;
    };
    Some(Found {
        detector: Detector::Binary,
        evidence: PathBuf::from(exe.as_str()),
        command: format!("/app/{exe}"),
        packages: &["ca-certificates"],
        install: Vec::new(),
        user: "nobody",
    })
}

#[cfg(unix)]
fn is_executable(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(_: &std::fs::Metadata) -> bool {
    false
}
