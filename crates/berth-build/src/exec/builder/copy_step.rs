//! COPY and ADD: sources from the context, another stage or an image, into a layer.

use super::*;

#[allow(clippy::too_many_arguments)]
pub(super) async fn copy_step(
    cx: &mut Ctx<'_>,
    st: &mut StageState,
    states: &mut [Option<StageState>],
    copy: &Copy,
    add_extracts: Option<bool>,
    loc: &Location,
    pos: usize,
    total: usize,
) -> Result<(), BuildError> {
    let kw: &'static str = if add_extracts.is_some() {
        "ADD"
    } else {
        "COPY"
    };
    let extract = add_extracts == Some(true);
    let step_err = |reason: String| BuildError::Step {
        location: loc.clone(),
        instruction: kw,
        reason,
    };
    let attrs_mode = match &copy.chmod {
        None => None,
        Some(m) => Some(
            u32::from_str_radix(m, 8).map_err(|_| BuildError::Unsupported {
                location: loc.clone(),
                what: format!("--chmod={m}"),
                hint: "write the mode in octal, e.g. --chmod=0755".into(),
            })?,
        ),
    };
    let excludes = if copy.excludes.is_empty() {
        None
    } else {
        Some(DockerIgnore::parse(&copy.excludes.join("\n"))?)
    };
    let exclude = |sel: Vec<Selected>| match &excludes {
        None => sel,
        Some(x) => context::exclude(sel, x),
    };
    let paths: Vec<String> = copy
        .sources
        .iter()
        .filter_map(|s| match s {
            CopySource::Path(p) => Some(p.clone()),
            CopySource::Heredoc(_) => None,
        })
        .collect();
    let heredocs: Vec<&str> = copy
        .sources
        .iter()
        .filter_map(|s| match s {
            CopySource::Heredoc(h) => Some(h.content.as_str()),
            CopySource::Path(_) => None,
        })
        .collect();
    // Where the files come from, and what identifies them for the cache.
    let (src_root, ignore, source_id): (Option<PathBuf>, Option<DockerIgnore>, Option<String>) =
        match &copy.from {
            None => (Some(cx.context.clone()), cx.ignore.clone(), None),
            Some(FromRef::Stage(i)) => {
                let other = states[*i]
                    .as_ref()
                    .ok_or_else(|| step_err(format!("stage {i} is not built yet")))?;
                (None, None, Some(format!("stage:{}", other.chain)))
            }
            Some(FromRef::Image(r)) => {
                let img = cx.pull(r, loc).await?;
                let dir = cx.opts.store.temp_path("from");
                cx.scratch.0.push(dir.clone());
                unpack_layers(&cx.opts.store, &img.layers, &dir)?;
                (
                    Some(dir),
                    None,
                    Some(format!("image:{}", img.manifest_digest)),
                )
            }
        };
    let mut selected: Option<Vec<Selected>> = None;
    let inputs = match (&source_id, &src_root) {
        (Some(id), _) => id.clone(),
        (None, Some(root)) => {
            let sel = exclude(context::select(root, &paths, ignore.as_ref()).map_err(&step_err)?);
            let d = context::content_digest(&sel)?;
            selected = Some(sel);
            d
        }
        (None, None) => unreachable!("a copy has a source"),
    };
    let workdir = if st.config.config.working_dir.is_empty() {
        "/".to_string()
    } else {
        st.config.config.working_dir.clone()
    };
    let dest = if copy.dest.starts_with('/') {
        copy.dest.clone()
    } else {
        let mut d = format!("{}/{}", workdir.trim_end_matches('/'), copy.dest);
        if copy.dest == "." || copy.dest == "./" {
            d = format!("{}/", workdir.trim_end_matches('/'));
        }
        d
    };
    let shown = {
        let mut s: Vec<String> = paths.clone();
        s.extend(heredocs.iter().map(|_| "<<heredoc".to_string()));
        format!(
            "{kw} {}{} {}",
            copy.from
                .as_ref()
                .map(|f| format!("--from={f:?} "))
                .unwrap_or_default(),
            s.join(" "),
            copy.dest
        )
    };
    let key = hash_parts(&[
        "copy",
        &st.chain,
        &format!("{copy:?}"),
        &inputs,
        &dest,
        &cx.mtime.to_string(),
        if extract { "extract" } else { "" },
        cx.opts.compression.name(),
    ]);
    cx.steps += 1;
    if let Some(rec) = cached(cx, &key) {
        cx.say(format!("[{pos}/{total}] CACHED {shown}"));
        apply_record(&cx.opts.store, st, &key, rec, shown, true, None)?;
        return Ok(());
    }
    cx.say(format!("[{pos}/{total}] {shown}"));
    // Sources from another stage: materialise it now.
    let (src_root, selected) = match (src_root, selected) {
        (Some(r), Some(s)) => (r, s),
        (Some(r), None) => {
            let s = exclude(context::select(&r, &paths, None).map_err(&step_err)?);
            (r, s)
        }
        (None, _) => {
            let Some(FromRef::Stage(i)) = &copy.from else {
                unreachable!("only stage sources have no root yet")
            };
            let mut other = states[*i].take().expect("checked above");
            let r = cx.materialize(&mut other);
            states[*i] = Some(other);
            let r = r?;
            let s = exclude(context::select(&r, &paths, None).map_err(&step_err)?);
            (r, s)
        }
    };
    let rootfs = cx.materialize(st)?;
    let owner = match &copy.chown {
        None => None,
        Some(spec) => {
            let (u, g, _) = context::resolve_user(Some(&rootfs), spec).map_err(&step_err)?;
            Some((u, g))
        }
    };
    let attrs = CopyAttrs {
        owner,
        mode: attrs_mode,
    };
    let mut written = Vec::new();
    let mut added = context::Added {
        paths: Vec::new(),
        exact: true,
    };
    let mut plain = Vec::new();
    for s in selected {
        let kind = if extract && !s.is_dir && s.entries.len() == 1 {
            context::archive_kind(&s.entries[0].0)
                .map_err(|e| step_err(format!("cannot read {}: {e}", s.name)))?
        } else {
            None
        };
        match kind {
            // Docker extracts into `dest` as a directory, whatever its trailing slash.
            Some(kind) => {
                added.exact = false;
                written.extend(context::extract_into(
                    &rootfs,
                    &s.entries[0].0,
                    kind,
                    &dest,
                    attrs,
                )?)
            }
            None => plain.push(s),
        }
    }
    if copy.parents {
        // Each source keeps its directories (below the root, or below a `/./` pivot).
        let pivots: Vec<String> = paths
            .iter()
            .filter_map(|p| p.split_once("/./").map(|(a, _)| context::clean_rel(a)))
            .collect();
        let base = format!("{}/", dest.trim_end_matches('/'));
        for s in plain {
            let rel = s.entries[0]
                .0
                .strip_prefix(&src_root)
                .map(|r| r.to_string_lossy().to_string())
                .unwrap_or_else(|_| s.name.clone());
            let rel = pivots
                .iter()
                .find_map(|p| rel.strip_prefix(&format!("{p}/")))
                .map(str::to_owned)
                .unwrap_or(rel);
            let keep = if s.is_dir {
                rel.as_str()
            } else {
                rel.rsplit_once('/').map(|(d, _)| d).unwrap_or("")
            };
            let to = if keep.is_empty() {
                base.clone()
            } else {
                format!("{base}{keep}/")
            };
            written.extend(context::copy_into(
                &rootfs,
                std::slice::from_ref(&s),
                &to,
                attrs,
                &mut added,
            )?);
        }
    } else if !plain.is_empty() {
        written.extend(context::copy_into(
            &rootfs, &plain, &dest, attrs, &mut added,
        )?);
    }
    for h in &heredocs {
        if dest.ends_with('/') {
            return Err(BuildError::Unsupported {
                location: loc.clone(),
                what: format!("{kw} of a heredoc into a directory"),
                hint: "name the destination file".into(),
            });
        }
        added.exact = false;
        written.extend(context::write_file(&rootfs, &dest, h, attrs)?);
    }
    let plan = LayerPlan {
        paths: written,
        ..Default::default()
    };
    let added = added.exact.then_some(added.paths);
    record_step(cx, st, &key, &rootfs, &plan, shown, added)
}
