//! Running `RUN` steps of a foreign architecture through qemu-user.
//!
//! The preferred way is the kernel's `binfmt_misc` with a handler registered with the `F`
//! ("fix binary") flag: the kernel opens the interpreter when the handler is registered, so a
//! foreign ELF runs inside any root filesystem — every process of the RUN, however many it
//! spawns, is emulated and nothing is added to the root filesystem. berth uses a handler that
//! is already there (Debian's `qemu-user-static` registers them when systemd-binfmt runs) and,
//! as root, mounts `binfmt_misc` and registers its own `berth-qemu-ARCH` handler otherwise.
//!
//! Without `binfmt_misc` (a container without the privilege to mount it) the RUN's first
//! process runs under the static qemu binary explicitly: the binary is bind-mounted at
//! `/dev/.berth-qemu` (on the container's /dev tmpfs, so it never lands in a layer) and made
//! argv[0]. Its limit: qemu-user does not follow `execve`, so a child process of another
//! architecture fails with "Exec format error" (a shell script calling `uname` does). The
//! build says so in an event when it falls back.

use std::path::{Path, PathBuf};

/// Where `binfmt_misc` lives.
pub const BINFMT_DIR: &str = "/proc/sys/fs/binfmt_misc";

/// Where the static qemu binary is mounted in explicit mode.
pub const EXPLICIT_QEMU_PATH: &str = "/dev/.berth-qemu";

/// One architecture qemu-user can emulate: the ELF header magic and mask of its binaries,
/// as Debian's `/usr/lib/binfmt.d/qemu-*.conf` has them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QemuArch {
    /// The OCI architecture name (`arm64`).
    pub oci: &'static str,
    /// qemu's name for it (`aarch64`): the binary is `qemu-<name>-static`.
    pub qemu: &'static str,
    /// The first 20 bytes of an ELF header of this architecture, hex.
    pub magic: &'static str,
    /// The mask applied before comparing, hex.
    pub mask: &'static str,
}

const ELF64_MASK: &str = "ffffffffffffff00fffffffffffffffffeffffff";

/// The architectures berth knows how to emulate.
pub const QEMU_ARCHES: &[QemuArch] = &[
    QemuArch {
        oci: "arm64",
        qemu: "aarch64",
        magic: "7f454c460201010000000000000000000200b700",
        mask: ELF64_MASK,
    },
    QemuArch {
        oci: "arm",
        qemu: "arm",
        magic: "7f454c4601010100000000000000000002002800",
        mask: ELF64_MASK,
    },
    QemuArch {
        oci: "riscv64",
        qemu: "riscv64",
        magic: "7f454c460201010000000000000000000200f300",
        mask: ELF64_MASK,
    },
    QemuArch {
        oci: "ppc64le",
        qemu: "ppc64le",
        magic: "7f454c4602010100000000000000000002001500",
        mask: "ffffffffffffff00fffffffffffffffffeffff00",
    },
    QemuArch {
        oci: "s390x",
        qemu: "s390x",
        magic: "7f454c4602020100000000000000000000020016",
        mask: "ffffffffffffff00fffffffffffffffffffeffff",
    },
    QemuArch {
        oci: "amd64",
        qemu: "x86_64",
        magic: "7f454c4602010100000000000000000002003e00",
        mask: ELF64_MASK,
    },
];

/// The emulation entry for an OCI architecture name.
pub fn qemu_arch(oci_arch: &str) -> Option<&'static QemuArch> {
    QEMU_ARCHES.iter().find(|a| a.oci == oci_arch)
}

/// How RUN steps of one architecture run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Emulation {
    /// The host's own architecture.
    Native,
    /// Through a `binfmt_misc` handler with the `F` flag.
    Binfmt {
        /// The handler's name (`qemu-aarch64`, `berth-qemu-aarch64`).
        handler: String,
        /// Whether berth registered it just now.
        registered: bool,
    },
    /// The first process runs under this static qemu binary, bind-mounted into the container.
    Explicit {
        /// The qemu binary on the host.
        qemu: PathBuf,
        /// Why binfmt_misc could not be used.
        why: String,
    },
}

/// Why a foreign architecture cannot be run at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmulationError {
    /// berth has no ELF magic for this architecture.
    #[error(
        "berth cannot emulate the architecture {0:?}; RUN steps work for arm64, arm, riscv64, ppc64le, s390x and amd64"
    )]
    UnknownArchitecture(String),
    /// The static qemu binary is not installed.
    #[error(
        "RUN for {arch} needs {binary}, which is not installed; install Debian's qemu-user-static (apt-get install qemu-user-static)"
    )]
    QemuMissing {
        /// The OCI architecture.
        arch: String,
        /// The binary looked for.
        binary: String,
    },
}

/// A `binfmt_misc` handler, as its file in [`BINFMT_DIR`] describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handler {
    /// Its name.
    pub name: String,
    /// `enabled` / `disabled`.
    pub enabled: bool,
    /// The interpreter path.
    pub interpreter: String,
    /// Flags (`POF`).
    pub flags: String,
    /// The magic, hex.
    pub magic: String,
    /// The mask, hex (`ff…` when none is given).
    pub mask: String,
}

/// Parses the content of one handler file of `binfmt_misc`.
pub fn parse_handler(name: &str, text: &str) -> Option<Handler> {
    let mut h = Handler {
        name: name.into(),
        enabled: false,
        interpreter: String::new(),
        flags: String::new(),
        magic: String::new(),
        mask: String::new(),
    };
    for line in text.lines() {
        let line = line.trim();
        if line == "enabled" {
            h.enabled = true;
        } else if let Some(v) = line.strip_prefix("interpreter ") {
            h.interpreter = v.trim().into();
        } else if let Some(v) = line.strip_prefix("flags:") {
            h.flags = v.trim().into();
        } else if let Some(v) = line.strip_prefix("magic ") {
            h.magic = v.trim().to_lowercase();
        } else if let Some(v) = line.strip_prefix("mask ") {
            h.mask = v.trim().to_lowercase();
        }
    }
    if h.magic.is_empty() {
        return None;
    }
    if h.mask.is_empty() {
        h.mask = "f".repeat(h.magic.len());
    }
    Some(h)
}

impl Handler {
    /// Whether this handler runs binaries of `arch` (same magic once masked).
    pub fn matches(&self, arch: &QemuArch) -> bool {
        let (Some(m), Some(k), Some(am), Some(ak)) = (
            unhex(&self.magic),
            unhex(&self.mask),
            unhex(arch.magic),
            unhex(arch.mask),
        ) else {
            return false;
        };
        if m.len() < am.len() {
            return false;
        }
        am.iter()
            .zip(&ak)
            .zip(m.iter().zip(&k))
            .all(|((am, ak), (m, k))| am & ak & k == m & k & ak)
    }

    /// Whether it works inside a root filesystem that has no interpreter of its own.
    pub fn fixed_binary(&self) -> bool {
        self.flags.contains('F')
    }
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

/// The interpreter and flags berth registers for `arch`: Debian's `-binfmt-P` wrapper with
/// `POF` when it is installed — `P` keeps the program's own argv[0], which multi-call binaries
/// like busybox dispatch on — else the static binary itself with `F` (argv[0] is then the
/// program's path).
pub fn interpreter(arch: &QemuArch, qemu: &Path) -> (PathBuf, &'static str) {
    let wrapper = PathBuf::from(format!("/usr/libexec/qemu-binfmt/{}-binfmt-P", arch.qemu));
    if wrapper.exists() {
        (wrapper, "POF")
    } else {
        (qemu.to_path_buf(), "F")
    }
}

/// The line to write to `binfmt_misc/register` for `arch` with `interpreter` and `flags`.
pub fn register_line(arch: &QemuArch, interpreter: &Path, flags: &str) -> String {
    let esc = |hex: &str| -> String {
        (0..hex.len())
            .step_by(2)
            .map(|i| format!("\\x{}", &hex[i..i + 2]))
            .collect()
    };
    format!(
        ":berth-qemu-{}:M::{}:{}:{}:{flags}",
        arch.qemu,
        esc(arch.magic),
        esc(arch.mask),
        interpreter.display()
    )
}

/// The handlers registered now (empty when `binfmt_misc` is not mounted).
pub fn handlers() -> Vec<Handler> {
    let Ok(dir) = std::fs::read_dir(BINFMT_DIR) else {
        return Vec::new();
    };
    let mut out: Vec<Handler> = dir
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            if name == "register" || name == "status" {
                return None;
            }
            parse_handler(&name, &std::fs::read_to_string(e.path()).ok()?)
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The static qemu binary for `arch`, if installed.
pub fn qemu_binary(arch: &QemuArch) -> Option<PathBuf> {
    let name = format!("qemu-{}-static", arch.qemu);
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/local/bin")])
        .map(|d| d.join(&name))
        .find(|p| p.is_file())
}

/// The host's OCI architecture.
pub fn host_arch() -> String {
    crate::Platform::host_linux().architecture
}

/// What would happen for `arch` without changing anything (for `berth doctor`).
pub fn status(oci_arch: &str) -> Result<Emulation, EmulationError> {
    if oci_arch == host_arch() {
        return Ok(Emulation::Native);
    }
    let arch =
        qemu_arch(oci_arch).ok_or_else(|| EmulationError::UnknownArchitecture(oci_arch.into()))?;
    let wanted = qemu_binary(arch).map(|q| interpreter(arch, &q));
    // A handler berth registered with another interpreter or flags (an older berth, or before
    // Debian's wrapper was installed) is replaced rather than used.
    let current = |h: &Handler| {
        !h.name.starts_with("berth-qemu-")
            || wanted
                .as_ref()
                .is_none_or(|(i, f)| Path::new(&h.interpreter) == i && h.flags == *f)
    };
    if let Some(h) = handlers()
        .into_iter()
        .find(|h| h.enabled && h.fixed_binary() && h.matches(arch) && current(h))
    {
        return Ok(Emulation::Binfmt {
            handler: h.name,
            registered: false,
        });
    }
    let qemu = qemu_binary(arch).ok_or_else(|| EmulationError::QemuMissing {
        arch: oci_arch.into(),
        binary: format!("qemu-{}-static", arch.qemu),
    })?;
    Ok(Emulation::Explicit {
        qemu,
        why: "no binfmt_misc handler with the F flag is registered".into(),
    })
}

/// `BERTH_QEMU=explicit` makes berth leave `binfmt_misc` alone (a kernel-wide setting some
/// hosts do not want changed) and run foreign RUN steps under qemu explicitly.
pub const MODE_VAR: &str = "BERTH_QEMU";

/// Makes RUN steps of `arch` possible: uses a registered handler with the `F` flag, else
/// mounts `binfmt_misc` (if needed) and registers one, else falls back to explicit qemu.
pub fn ensure(oci_arch: &str) -> Result<Emulation, EmulationError> {
    if std::env::var(MODE_VAR).is_ok_and(|v| v == "explicit") && oci_arch != host_arch() {
        let arch = qemu_arch(oci_arch)
            .ok_or_else(|| EmulationError::UnknownArchitecture(oci_arch.into()))?;
        let qemu = qemu_binary(arch).ok_or_else(|| EmulationError::QemuMissing {
            arch: oci_arch.into(),
            binary: format!("qemu-{}-static", arch.qemu),
        })?;
        return Ok(Emulation::Explicit {
            qemu,
            why: format!("{MODE_VAR}=explicit"),
        });
    }
    let now = status(oci_arch)?;
    let Emulation::Explicit { qemu, .. } = now else {
        return Ok(now);
    };
    let arch = qemu_arch(oci_arch).expect("status checked the architecture");
    let why = match try_register(arch, &qemu) {
        Ok(handler) => {
            return Ok(Emulation::Binfmt {
                handler,
                registered: true,
            });
        }
        Err(why) => why,
    };
    Ok(Emulation::Explicit { qemu, why })
}

fn try_register(arch: &QemuArch, qemu: &Path) -> Result<String, String> {
    let register = Path::new(BINFMT_DIR).join("register");
    if !register.exists() {
        let out = std::process::Command::new("mount")
            .args(["-t", "binfmt_misc", "binfmt_misc", BINFMT_DIR])
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "cannot mount binfmt_misc: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    let name = format!("berth-qemu-{}", arch.qemu);
    // A disabled or flag-less handler of ours from an older run is replaced.
    let existing = Path::new(BINFMT_DIR).join(&name);
    if existing.exists() {
        std::fs::write(&existing, "-1")
            .map_err(|e| format!("cannot remove the stale handler {name}: {e}"))?;
    }
    let (interp, flags) = interpreter(arch, qemu);
    std::fs::write(&register, register_line(arch, &interp, flags))
        .map_err(|e| format!("cannot register a binfmt_misc handler: {e}"))?;
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEBIAN_AARCH64: &str = "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: POF\noffset 0\nmagic 7f454c460201010000000000000000000200b700\nmask ffffffffffffff00fffffffffffffffffeffffff\n";

    #[test]
    fn debian_handler_file_is_read_and_matches_arm64_only() {
        let h = parse_handler("qemu-aarch64", DEBIAN_AARCH64).unwrap();
        assert!(h.enabled && h.fixed_binary());
        assert_eq!(h.interpreter, "/usr/libexec/qemu-binfmt/aarch64-binfmt-P");
        assert!(h.matches(qemu_arch("arm64").unwrap()));
        assert!(!h.matches(qemu_arch("riscv64").unwrap()));
        assert!(!h.matches(qemu_arch("arm").unwrap()));
    }

    #[test]
    fn handler_without_fix_binary_flag_is_not_usable_in_a_rootfs() {
        let text = DEBIAN_AARCH64.replace("flags: POF", "flags: OC");
        let h = parse_handler("qemu-aarch64", &text).unwrap();
        assert!(!h.fixed_binary());
    }

    #[test]
    fn non_magic_handlers_are_skipped() {
        assert!(
            parse_handler(
                "python3.11",
                "enabled\ninterpreter /usr/bin/python3.11\nflags: \nextension .pyc\n"
            )
            .is_none()
        );
    }

    #[test]
    fn register_line_has_escaped_magic_and_the_fix_binary_flag() {
        let line = register_line(
            qemu_arch("arm64").unwrap(),
            Path::new("/usr/bin/qemu-aarch64-static"),
            "F",
        );
        assert!(line.starts_with(":berth-qemu-aarch64:M::\\x7f\\x45\\x4c\\x46\\x02"));
        assert!(line.ends_with(":/usr/bin/qemu-aarch64-static:F"), "{line}");
        assert_eq!(line.matches("\\x").count(), 40);
    }

    #[test]
    fn unknown_architecture_is_named() {
        let err = status("mips64").unwrap_err();
        assert!(err.to_string().contains("\"mips64\""), "{err}");
    }
}
