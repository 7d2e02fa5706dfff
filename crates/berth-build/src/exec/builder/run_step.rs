//! What a RUN step needs besides its process: the inputs its bind mounts show (for its cache
//! key), the roots they bind, and the program and home directory it runs with.

use super::*;

/// What the bind mounts of a RUN show, for its cache key: the content of context sources,
/// the chain of stages, the manifest of images.
pub(super) async fn bind_inputs(
    cx: &mut Ctx<'_>,
    states: &[Option<StageState>],
    mounts: &[crate::Mount],
    loc: &Location,
) -> Result<String, BuildError> {
    let mut parts = Vec::new();
    for m in mounts {
        if !matches!(m.kind, crate::MountKind::Bind { .. }) {
            continue;
        }
        let source = run_mounts::bind_source(m);
        parts.push(match &m.from {
            None => {
                let sel = context::select(&cx.context, &[source], cx.ignore.as_ref()).map_err(
                    |reason| BuildError::Step {
                        location: loc.clone(),
                        instruction: "RUN",
                        reason: format!("--mount=type=bind: {reason}"),
                    },
                )?;
                format!("context:{}", context::content_digest(&sel)?)
            }
            Some(FromRef::Stage(i)) => {
                let other = states[*i].as_ref().ok_or_else(|| BuildError::Step {
                    location: loc.clone(),
                    instruction: "RUN",
                    reason: format!("stage {i} is not built yet"),
                })?;
                format!("stage:{}", other.chain)
            }
            Some(FromRef::Image(r)) => {
                let img = cx.pull(r, loc).await?;
                format!("image:{}", img.manifest_digest)
            }
        });
    }
    Ok(parts.join("\n"))
}

/// Root filesystems of the stages and images the bind mounts of a RUN take files from.
pub(super) async fn bind_roots(
    cx: &mut Ctx<'_>,
    states: &mut [Option<StageState>],
    mounts: &[crate::Mount],
    loc: &Location,
) -> Result<Vec<(FromRef, PathBuf)>, BuildError> {
    let mut roots: Vec<(FromRef, PathBuf)> = Vec::new();
    for m in mounts {
        let (crate::MountKind::Bind { .. }, Some(from)) = (&m.kind, &m.from) else {
            continue;
        };
        if roots.iter().any(|(f, _)| f == from) {
            continue;
        }
        let root = match from {
            FromRef::Stage(i) => {
                let mut other = states[*i].take().expect("checked by bind_inputs");
                let r = cx.materialize(&mut other);
                states[*i] = Some(other);
                r?
            }
            FromRef::Image(r) => {
                let img = cx.pull(r, loc).await?;
                let dir = cx.opts.store.temp_path("from");
                cx.scratch.0.push(dir.clone());
                unpack_layers(&cx.opts.store, &img.layers, &dir)?;
                dir
            }
        };
        roots.push((from.clone(), root));
    }
    Ok(roots)
}

/// The path of `program` in `rootfs` for explicit qemu (which does not search `PATH`).
pub(super) fn find_program(rootfs: &Path, env: &[String], workdir: &str, program: &str) -> String {
    if program.contains('/') {
        return if program.starts_with('/') {
            program.to_string()
        } else {
            format!("{}/{program}", workdir.trim_end_matches('/'))
        };
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    for dir in path.split(':').filter(|d| d.starts_with('/')) {
        let candidate = format!("{}/{program}", dir.trim_end_matches('/'));
        // A link loop in the image is no program; the next PATH entry may hold it.
        let Ok(rel) = resolve_in_root(rootfs, &candidate) else {
            continue;
        };
        if rootfs.join(&rel).is_file() {
            return candidate;
        }
    }
    program.to_string()
}

pub(super) fn home_of(rootfs: &Path, uid: u32) -> Option<String> {
    let passwd =
        std::fs::read_to_string(rootfs.join(resolve_in_root(rootfs, "etc/passwd").ok()?)).ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 5 && f[2] == uid.to_string()).then(|| f[5].to_string())
    })
}
