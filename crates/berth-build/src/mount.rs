//! `RUN --mount=` values: `type=cache,target=/root/.cache,id=pip,sharing=locked`.

use crate::lex::LexError;
use crate::model::{CacheSharing, Mount, MountKind};
use crate::words::{parse_size, split_csv};

/// Parses one `--mount` value. Each field value goes through `expand` first (BuildKit expands
/// mount fields with the stage's ARG/ENV scope). When `lenient`, fields that still contain
/// `$` after `expand` keep their defaults: parse time runs before expansion and only checks
/// structure. Returns the mount and the raw `from=` value, which the caller resolves to a stage.
pub(crate) fn parse_mount(
    raw: &str,
    expand: &dyn Fn(&str) -> Result<String, LexError>,
    lenient: bool,
) -> Result<(Mount, Option<String>), String> {
    let fields = split_csv(raw)?;
    let mut kind = "bind".to_owned();
    let mut kv: Vec<(String, Option<String>)> = Vec::new();
    for field in fields {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.to_owned())),
            None => (field.trim().to_ascii_lowercase(), None),
        };
        if key.is_empty() {
            continue;
        }
        let value = match value {
            Some(v) => Some(expand(&v).map_err(|e| e.to_string())?),
            None => None,
        };
        if key == "type" {
            kind = value.unwrap_or_default();
        } else {
            kv.push((key, value));
        }
    }
    let deferred = |v: &str| lenient && v.contains('$');
    let number = |key: &str, v: &str, radix: u32, default: u32| -> Result<u32, String> {
        if deferred(v) {
            return Ok(default);
        }
        u32::from_str_radix(v, radix).map_err(|_| format!("{key}={v:?} is not a valid number"))
    };
    let boolean = |key: &str, v: &Option<String>| -> Result<bool, String> {
        match v.as_deref() {
            None | Some("true") | Some("1") => Ok(true),
            Some("false") | Some("0") => Ok(false),
            Some(v) if deferred(v) => Ok(false),
            Some(v) => Err(format!("{key}={v:?} must be true or false")),
        }
    };

    let mut target = None;
    let mut source = None;
    let mut from = None;
    let mut read_only = None;
    let mut read_write = false;
    let mut id = None;
    let mut sharing = CacheSharing::Shared;
    let mut mode = None;
    let mut uid = 0;
    let mut gid = 0;
    let mut size = None;
    let mut required = false;
    let mut env = None;

    let allowed: &[&str] = match kind.as_str() {
        "bind" => &[
            "target",
            "dst",
            "destination",
            "source",
            "src",
            "from",
            "ro",
            "readonly",
            "rw",
            "readwrite",
        ],
        "cache" => &[
            "target",
            "dst",
            "destination",
            "source",
            "src",
            "from",
            "ro",
            "readonly",
            "id",
            "sharing",
            "mode",
            "uid",
            "gid",
        ],
        "tmpfs" => &["target", "dst", "destination", "size"],
        "secret" => &[
            "target",
            "dst",
            "destination",
            "id",
            "required",
            "mode",
            "uid",
            "gid",
            "env",
        ],
        "ssh" => {
            return Err(
                "type=ssh is not supported: berth does not forward SSH agents into builds; \
                        fetch private dependencies with a type=secret mount"
                    .into(),
            );
        }
        other => {
            return Err(format!(
                "unknown mount type {other:?}; use bind, cache, tmpfs or secret"
            ));
        }
    };
    for (key, value) in kv {
        if !allowed.contains(&key.as_str()) {
            return Err(format!(
                "{key} is not valid for a type={kind} mount (valid: {})",
                allowed.join(", ")
            ));
        }
        let need = |v: Option<String>| v.ok_or_else(|| format!("{key} needs a value: {key}=…"));
        match key.as_str() {
            "target" | "dst" | "destination" => target = Some(need(value)?),
            "source" | "src" => source = Some(need(value)?),
            "from" => from = Some(need(value)?),
            "ro" | "readonly" => read_only = Some(boolean(&key, &value)?),
            "rw" | "readwrite" => read_write = boolean(&key, &value)?,
            "id" => id = Some(need(value)?),
            "sharing" => {
                let v = need(value)?;
                sharing = match v.as_str() {
                    "shared" => CacheSharing::Shared,
                    "private" => CacheSharing::Private,
                    "locked" => CacheSharing::Locked,
                    _ if deferred(&v) => CacheSharing::Shared,
                    _ => return Err(format!("sharing={v:?}; use shared, private or locked")),
                }
            }
            "mode" => mode = Some(number(&key, &need(value)?, 8, 0)?),
            "uid" => uid = number(&key, &need(value)?, 10, 0)?,
            "gid" => gid = number(&key, &need(value)?, 10, 0)?,
            "size" => {
                let v = need(value)?;
                size = if deferred(&v) {
                    None
                } else {
                    Some(parse_size(&v)?)
                };
            }
            "required" => required = boolean(&key, &value)?,
            "env" => env = Some(need(value)?),
            _ => unreachable!("filtered by `allowed`"),
        }
    }

    let kind = match kind.as_str() {
        "bind" => MountKind::Bind {
            read_write: read_write && read_only != Some(true),
        },
        "cache" => {
            let target = target.clone().ok_or("a cache mount needs target=")?;
            MountKind::Cache {
                id: id.unwrap_or(target),
                sharing,
                read_only: read_only.unwrap_or(false),
                mode: mode.unwrap_or(0o755),
                uid,
                gid,
            }
        }
        "tmpfs" => MountKind::Tmpfs { size },
        _ => {
            let id = match (id, &target) {
                (Some(id), _) => id,
                (None, Some(t)) => t.rsplit('/').next().unwrap_or_default().to_owned(),
                (None, None) => return Err("a secret mount needs id= or target=".into()),
            };
            if target.is_none() && env.is_none() {
                target = Some(format!("/run/secrets/{id}"));
            }
            MountKind::Secret {
                id,
                required,
                env,
                mode: mode.unwrap_or(0o400),
                uid,
                gid,
            }
        }
    };
    let target = match (target, &kind) {
        (Some(t), _) => t,
        (None, MountKind::Secret { .. }) => String::new(),
        (None, _) => return Err("the mount needs target=".into()),
    };
    if !target.is_empty() && !target.starts_with('/') && !deferred(&target) {
        return Err(format!("target={target:?} must be an absolute path"));
    }
    Ok((
        Mount {
            kind,
            target,
            from: None,
            source,
            raw: raw.to_owned(),
        },
        from,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(raw: &str) -> Result<Mount, String> {
        parse_mount(raw, &|w| Ok(w.to_owned()), false).map(|(m, _)| m)
    }

    #[test]
    fn cache_defaults() {
        let m = p("type=cache,target=/root/.cache").unwrap();
        assert_eq!(m.target, "/root/.cache");
        assert_eq!(
            m.kind,
            MountKind::Cache {
                id: "/root/.cache".into(),
                sharing: CacheSharing::Shared,
                read_only: false,
                mode: 0o755,
                uid: 0,
                gid: 0
            }
        );
        let m = p("type=cache,dst=/c,id=pip,sharing=locked,mode=0700,uid=1000").unwrap();
        assert!(
            matches!(m.kind, MountKind::Cache { ref id, sharing: CacheSharing::Locked, mode: 0o700, uid: 1000, .. } if id == "pip")
        );
    }

    #[test]
    fn bind_secret_tmpfs() {
        let (m, from) = parse_mount(
            "target=/src,from=builder,source=/out,rw",
            &|w| Ok(w.to_owned()),
            false,
        )
        .unwrap();
        assert_eq!(m.kind, MountKind::Bind { read_write: true });
        assert_eq!(from.as_deref(), Some("builder"));
        assert_eq!(m.source.as_deref(), Some("/out"));
        let m = p("type=secret,id=npmrc").unwrap();
        assert_eq!(m.target, "/run/secrets/npmrc");
        let m = p("type=secret,id=tok,env=TOKEN,required").unwrap();
        assert!(matches!(
            m.kind,
            MountKind::Secret {
                required: true,
                env: Some(_),
                ..
            }
        ));
        let m = p("type=tmpfs,target=/tmp,size=64m").unwrap();
        assert_eq!(
            m.kind,
            MountKind::Tmpfs {
                size: Some(64 << 20)
            }
        );
    }

    #[test]
    fn rejects() {
        assert!(p("type=ssh").unwrap_err().contains("SSH"));
        assert!(p("type=cache").is_err());
        assert!(p("type=nfs,target=/x").is_err());
        assert!(p("type=cache,target=/x,sharing=sometimes").is_err());
        assert!(p("type=tmpfs,target=/x,id=a").is_err());
        assert!(p("type=cache,target=rel").is_err());
        assert!(p("type=cache,target=/x,uid=abc").is_err());
    }

    #[test]
    fn lenient_defers_variables() {
        let (m, _) =
            parse_mount("type=cache,target=/x,uid=$UID", &|w| Ok(w.to_owned()), true).unwrap();
        assert!(matches!(m.kind, MountKind::Cache { uid: 0, .. }));
    }
}
