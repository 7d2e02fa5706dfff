//! Shared helpers: a store per test, an event recorder, layer inspection, running an image.

use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use berth_build::exec::{
    BuildOptions, BuildRequest, BuiltImage, Store, build, runtime, unpack_image,
};
use berth_testkit::TestEnv;
use berth_types::{Digest, Event, EventSink};

/// Collects events.
#[derive(Clone, Default)]
pub struct Recorder(pub Arc<Mutex<Vec<Event>>>);

impl EventSink for Recorder {
    fn emit(&self, event: Event) {
        self.0.lock().unwrap().push(event);
    }
}

impl Recorder {
    /// The text of every message event.
    pub fn messages(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                Event::Message { message, .. } => Some(message.clone()),
                _ => None,
            })
            .collect()
    }
}

/// A test's builder: its own empty store.
pub struct Rig {
    pub store_dir: tempfile::TempDir,
    pub opts: BuildOptions,
}

impl Rig {
    pub fn new() -> Rig {
        let env = TestEnv::get();
        let store_dir = tempfile::tempdir().unwrap();
        let opts = BuildOptions::new(
            Store::open(store_dir.path()).unwrap(),
            Arc::new(env.registry()),
            "runc",
        );
        Rig { store_dir, opts }
    }

    pub async fn build(&self, req: &BuildRequest) -> (BuiltImage, Recorder) {
        let rec = Recorder::default();
        let built = build(&self.opts, req, &rec)
            .await
            .unwrap_or_else(|e| panic!("build failed: {e}\nevents: {:#?}", rec.messages()));
        (built, rec)
    }

    /// A layer blob, decompressed (gzip or zstd, told apart by content).
    pub fn layer_reader(&self, digest: &Digest) -> Box<dyn Read> {
        let path = self.opts.store.blob_path(digest);
        let mut head = [0u8; 4];
        std::fs::File::open(&path)
            .unwrap()
            .read_exact(&mut head)
            .unwrap();
        let f = std::fs::File::open(&path).unwrap();
        if head == [0x28, 0xb5, 0x2f, 0xfd] {
            Box::new(zstd::stream::read::Decoder::new(f).unwrap())
        } else {
            Box::new(flate2::read::GzDecoder::new(f))
        }
    }

    /// Entry names of a layer blob, with types: `f path`, `d path/`, `l path -> target`,
    /// `h path => target`.
    pub fn layer_entries(&self, digest: &Digest) -> Vec<String> {
        let mut a = tar::Archive::new(self.layer_reader(digest));
        a.entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let p = e.path().unwrap().to_string_lossy().to_string();
                match e.header().entry_type() {
                    tar::EntryType::Directory => format!("d {p}"),
                    tar::EntryType::Symlink => {
                        format!("l {p} -> {}", e.link_name().unwrap().unwrap().display())
                    }
                    tar::EntryType::Link => {
                        format!("h {p} => {}", e.link_name().unwrap().unwrap().display())
                    }
                    _ => format!("f {p}"),
                }
            })
            .collect()
    }

    /// The content of `path` in a layer blob.
    pub fn layer_file(&self, digest: &Digest, path: &str) -> Option<String> {
        let mut a = tar::Archive::new(self.layer_reader(digest));
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            if e.path().unwrap().to_string_lossy() == path {
                let mut s = String::new();
                e.read_to_string(&mut s).unwrap();
                return Some(s);
            }
        }
        None
    }

    /// Unpacks the built image with berth's own code and runs its entrypoint+cmd with runc;
    /// returns stdout+stderr lines.
    pub async fn run_image(&self, manifest: &Digest) -> Vec<String> {
        let root = self
            .store_dir
            .path()
            .join(format!("run-{}", &manifest.hex()[..12]));
        let config = unpack_image(&self.opts.store, manifest, &root).unwrap();
        let c = &config.config;
        let mut args = c.entrypoint.clone().unwrap_or_default();
        args.extend(c.cmd.clone().unwrap_or_default());
        let out = run_in(&root, args, c.env.clone(), &c.working_dir).await;
        std::fs::remove_dir_all(&root).unwrap();
        out
    }
}

pub async fn run_in(root: &Path, args: Vec<String>, env: Vec<String>, cwd: &str) -> Vec<String> {
    let spec = runtime::ProcessSpec::simple(root, args, env, cwd);
    let lines = Mutex::new(Vec::new());
    let on_line = |_: bool, l: &str| lines.lock().unwrap().push(l.to_string());
    let bundle = root.with_extension("bundle");
    runtime::run("runc", &bundle, &spec, &on_line)
        .await
        .unwrap_or_else(|e| panic!("running the image failed: {e:?}"));
    lines.into_inner().unwrap()
}

/// A build context directory with `files` (path -> content).
pub fn context(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    write_files(d.path(), files);
    d
}

pub fn write_files(dir: &Path, files: &[(&str, &str)]) {
    for (p, c) in files {
        let p = dir.join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, c).unwrap();
    }
}

pub fn request(ctx: &Path) -> BuildRequest {
    BuildRequest {
        context: ctx.to_path_buf(),
        ..Default::default()
    }
}

/// Runs a command, returns stdout; panics with stderr on failure.
pub fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
