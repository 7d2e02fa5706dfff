//! The end of a build: a stage assembled into an image, stored, tagged, written as an OCI
//! layout and pushed.

use super::*;

/// One platform's image, written to the store but not yet tagged, exported or pushed.
pub(super) struct Assembled {
    platform: Platform,
    manifest_desc: Descriptor,
    manifest_bytes: Vec<u8>,
    config_bytes: Vec<u8>,
    config_digest: Digest,
    layers: Vec<Descriptor>,
    steps: usize,
    hits: usize,
    layer_sources: BTreeMap<Digest, ImageRef>,
    emulation: String,
}

pub(super) fn assemble(cx: &Ctx<'_>, st: StageState) -> Result<Assembled, BuildError> {
    let store = &cx.opts.store;
    let mut config = st.config;
    config.created = Some(cx.created.clone());
    let config_bytes = serde_json::to_vec(&config).expect("config serialises");
    let config_digest = store.write_blob(&config_bytes)?;
    let layers: Vec<Descriptor> = st
        .layers
        .into_iter()
        .map(|mut l| {
            l.media_type = match l.media_type.as_str() {
                crate::exec::image::DOCKER_LAYER_GZIP => media::OCI_LAYER_GZIP.into(),
                "application/vnd.docker.image.rootfs.diff.tar" => {
                    crate::exec::image::OCI_LAYER_TAR.into()
                }
                other => other.into(),
            };
            l.annotations.clear();
            l
        })
        .collect();
    let manifest = Manifest {
        schema_version: 2,
        media_type: media::OCI_MANIFEST.into(),
        config: Descriptor {
            media_type: media::OCI_CONFIG.into(),
            digest: config_digest.clone(),
            size: config_bytes.len() as u64,
            platform: None,
            annotations: Default::default(),
        },
        layers: layers.clone(),
    };
    let manifest_bytes = serde_json::to_vec(&manifest).expect("manifest serialises");
    let manifest_digest = store.write_blob(&manifest_bytes)?;
    let manifest_desc = Descriptor {
        media_type: media::OCI_MANIFEST.into(),
        digest: manifest_digest,
        size: manifest_bytes.len() as u64,
        platform: None,
        annotations: Default::default(),
    };
    let emulation = match cx.emulation.get(&cx.platform.architecture) {
        None => "none".to_string(),
        Some(Emulation::Native) => "native".into(),
        Some(Emulation::Binfmt { handler, .. }) => format!("binfmt:{handler}"),
        Some(Emulation::Explicit { qemu, .. }) => format!("qemu:{}", qemu.display()),
    };
    Ok(Assembled {
        platform: cx.platform.clone(),
        manifest_desc,
        manifest_bytes,
        config_bytes,
        config_digest,
        layers,
        steps: cx.steps,
        hits: cx.hits,
        layer_sources: cx.layer_sources.clone(),
        emulation,
    })
}

/// Tags, exports and pushes what the platforms' builds assembled: the one manifest, or an
/// OCI image index over all of them (`multi`).
pub(super) async fn publish(
    opts: &BuildOptions,
    request: &BuildRequest,
    images: Vec<Assembled>,
    multi: bool,
    sink: &dyn EventSink,
) -> Result<BuiltImage, BuildError> {
    let say = |message: String| {
        sink.emit(Event::Message {
            step: berth_types::Step::Build.into(),
            level: Level::Info,
            message,
        })
    };
    let store = &opts.store;
    let index = multi.then(|| Index {
        schema_version: 2,
        media_type: media::OCI_INDEX.into(),
        manifests: images
            .iter()
            .map(|i| Descriptor {
                platform: Some(IndexPlatform {
                    architecture: i.platform.architecture.clone(),
                    os: i.platform.os.clone(),
                    variant: i.platform.variant.clone(),
                }),
                ..i.manifest_desc.clone()
            })
            .collect(),
    });
    let (top, top_bytes) = match &index {
        None => (
            images[0].manifest_desc.clone(),
            images[0].manifest_bytes.clone(),
        ),
        Some(index) => {
            let bytes = serde_json::to_vec(index).expect("index serialises");
            let digest = store.write_blob(&bytes)?;
            (
                Descriptor {
                    media_type: media::OCI_INDEX.into(),
                    digest,
                    size: bytes.len() as u64,
                    platform: None,
                    annotations: Default::default(),
                },
                bytes,
            )
        }
    };
    for t in &request.tags {
        store.tag(&t.to_string(), &top)?;
    }
    let mut size = if multi { top.size } else { 0 };
    for i in &images {
        size += i.manifest_desc.size
            + i.config_bytes.len() as u64
            + i.layers.iter().map(|l| l.size).sum::<u64>();
    }
    if let Some(dir) = &request.oci_dest {
        let name = request
            .tags
            .first()
            .and_then(|t| t.tag().map(str::to_owned))
            .unwrap_or_else(|| "latest".into());
        let mut blobs = vec![top.digest.clone()];
        for i in &images {
            blobs.push(i.manifest_desc.digest.clone());
            blobs.push(i.config_digest.clone());
            blobs.extend(i.layers.iter().map(|l| l.digest.clone()));
        }
        write_oci_layout(store, dir, &top, &blobs, &name)?;
        say(format!("wrote OCI layout {} ({name})", dir.display()));
    }
    let mut pushed = Vec::new();
    let (mut layers_uploaded, mut layers_mounted) = (0, 0);
    if request.push {
        for t in &request.tags {
            let started = Instant::now();
            let (mut uploaded, mut mounted, mut total) = (0, 0, 0);
            for i in &images {
                for l in &i.layers {
                    total += 1;
                    match opts
                        .registry
                        .push_blob_file_from(
                            t,
                            &l.digest,
                            &store.blob_path(&l.digest),
                            i.layer_sources.get(&l.digest),
                        )
                        .await?
                    {
                        BlobPush::Uploaded => uploaded += 1,
                        BlobPush::Mounted => mounted += 1,
                        BlobPush::Present => {}
                    }
                }
                opts.registry.push_blob(t, i.config_bytes.clone()).await?;
                if multi {
                    // An index may only name manifests the repository has.
                    opts.registry
                        .push_manifest(
                            &t.pinned(i.manifest_desc.digest.clone()),
                            i.manifest_bytes.clone(),
                            media::OCI_MANIFEST,
                        )
                        .await?;
                }
            }
            opts.registry
                .push_manifest(t, top_bytes.clone(), &top.media_type)
                .await?;
            say(format!(
                "pushed {t} ({uploaded} of {total} layers uploaded, {mounted} mounted, {} ms)",
                started.elapsed().as_millis()
            ));
            pushed.push(t.pinned(top.digest.clone()));
            layers_uploaded += uploaded;
            layers_mounted += mounted;
        }
    }
    let platforms = images
        .iter()
        .map(|i| PlatformImage {
            platform: i.platform.to_string(),
            manifest_digest: i.manifest_desc.digest.clone(),
            config_digest: i.config_digest.clone(),
            layers: i.layers.len(),
            emulation: i.emulation.clone(),
        })
        .collect();
    let steps = images.iter().map(|i| i.steps).sum();
    let hits = images.iter().map(|i| i.hits).sum();
    let first = images.into_iter().next().expect("at least one platform");
    Ok(BuiltImage {
        manifest_digest: top.digest,
        media_type: top.media_type,
        config_digest: first.config_digest,
        layers: first.layers,
        size,
        platforms,
        steps,
        cache_hits: hits,
        pushed,
        layers_uploaded,
        layers_mounted,
    })
}

/// Writes an OCI image layout at `dir` holding `blobs` (hard-linked from the store when
/// possible), with `top` (a manifest or an index) named `name` in its `index.json`.
pub(super) fn write_oci_layout(
    store: &Store,
    dir: &Path,
    top: &Descriptor,
    blobs: &[Digest],
    name: &str,
) -> Result<(), BuildError> {
    let out = Store::open(dir)?;
    for d in blobs {
        let dst = out.blob_path(d);
        if dst.exists() {
            continue;
        }
        let src = store.blob_path(d);
        if std::fs::hard_link(&src, &dst).is_err() {
            std::fs::copy(&src, &dst).map_err(io_err(&dst))?;
        }
    }
    let mut index: Index = std::fs::read(dir.join("index.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    index.manifests.retain(|d| {
        d.annotations.get("org.opencontainers.image.ref.name") != Some(&name.to_string())
    });
    let mut d = top.clone();
    d.annotations
        .insert("org.opencontainers.image.ref.name".into(), name.into());
    index.manifests.push(d);
    crate::exec::store::write_atomic(
        &dir.join("index.json"),
        &serde_json::to_vec_pretty(&index).expect("index"),
    )?;
    // berth's own scratch directories are not part of an exported layout.
    let _ = std::fs::remove_dir_all(dir.join("berth"));
    Ok(())
}
