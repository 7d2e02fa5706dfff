//! The build cache from a step's point of view: a hit, and a hit applied to the stage.

use super::*;

pub(super) fn cached(cx: &mut Ctx<'_>, key: &Digest) -> Option<CacheRecord> {
    if cx.opts.no_cache {
        return None;
    }
    let rec = cx.opts.store.cache_get(key)?;
    cx.hits += 1;
    Some(rec)
}

/// A step that ran: writes the layer of `plan` (files from `rootfs`), records it in the cache
/// under `key` and adds it to the stage.
#[allow(clippy::too_many_arguments)]
pub(super) fn record_step(
    cx: &Ctx<'_>,
    st: &mut StageState,
    key: &Digest,
    rootfs: &Path,
    plan: &LayerPlan,
    text: String,
    added: Option<Vec<String>>,
) -> Result<(), BuildError> {
    let layer = write_layer(&cx.opts.store, rootfs, plan, cx.mtime, cx.opts.compression)?;
    let rec = CacheRecord { layer };
    cx.opts.store.cache_put(key, &rec)?;
    apply_record(&cx.opts.store, st, key, rec, text, false, added)
}

/// Adds what a step produced to the stage. On a cache hit (`hit`) with a root filesystem
/// already materialised, the layer is applied to it too; on a miss the change is there already.
pub(super) fn apply_record(
    store: &Store,
    st: &mut StageState,
    key: &Digest,
    rec: CacheRecord,
    text: String,
    hit: bool,
    added: Option<Vec<String>>,
) -> Result<(), BuildError> {
    let diff = rec
        .layer
        .as_ref()
        .map(|l| l.diff_id.to_string())
        .unwrap_or_else(|| "empty".into());
    st.chain = hash_parts(&[&st.chain, &key.to_string(), &diff]).to_string();
    if st.rootfs.is_some() {
        st.trail.push(TrailStep {
            chain: st.chain.clone(),
            added: if hit { None } else { added },
        });
    }
    let empty = rec.layer.is_none();
    if let Some(CachedLayer {
        descriptor,
        diff_id,
    }) = rec.layer
    {
        if hit && let Some(root) = &st.rootfs {
            apply_layer(
                &store.blob_path(&descriptor.digest),
                &descriptor.media_type,
                root,
            )?;
        }
        st.layers.push(descriptor);
        st.config.rootfs.diff_ids.push(diff_id);
    }
    st.config.history.push(History {
        created: st.config.created.clone(),
        created_by: Some(text),
        comment: Some("berth".into()),
        empty_layer: empty,
    });
    Ok(())
}
