//! The seccomp profile of RUN steps and tests: containerd's and Docker's documented default,
//! resolved for berth's fixed capability set and the host's architecture.
//!
//! The documented default allows a list of ordinary syscalls and returns `EPERM` for
//! everything else (`SCMP_ACT_ERRNO`, errno 1). Some syscalls are allowed only when a
//! capability is granted (`mount`, `unshare`, `setns`... need `CAP_SYS_ADMIN`) or only on some
//! architectures. Docker evaluates those conditions when it starts a container; berth's
//! capability set ([`super::runtime::CAPABILITIES`]) is fixed, so they are evaluated here once:
//! of the capability-gated groups only `chroot` (`CAP_SYS_CHROOT`) is allowed, `clone` is
//! allowed without namespace flags, and `clone3` answers `ENOSYS` so that libc falls back to
//! `clone`. `keyctl`, `add_key`, `request_key`, `bpf`, `perf_event_open`, `userfaultfd`,
//! `kexec_load`, `mount`, `unshare`, `setns`, `reboot`, module loading and the clock setters are
//! refused (not in any list below).
//!
//! runc ignores names its libseccomp does not know (e.g. 32-bit names on an x86_64-only
//! build), so one list serves every architecture.

use serde_json::{Value, json};

/// Allowed on every architecture without a condition.
const ALLOWED: &[&str] = &[
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "bind",
    "brk",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futex",
    "futex_time64",
    "futex_waitv",
    "futimesat",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "get_robust_list",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "get_thread_area",
    "gettid",
    "gettimeofday",
    "getuid",
    "getuid32",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "ioctl",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "ioprio_get",
    "ioprio_set",
    "io_setup",
    "io_submit",
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "ipc",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listxattr",
    "llistxattr",
    "_llseek",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "madvise",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "mremap",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "name_to_handle_at",
    "nanosleep",
    "newfstatat",
    "_newselect",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "pselect6",
    "pselect6_time64",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "send",
    "sendfile",
    "sendfile64",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "set_robust_list",
    "setsid",
    "setsockopt",
    "set_thread_area",
    "set_tid_address",
    "setuid",
    "setuid32",
    "setxattr",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "sigprocmask",
    "sigreturn",
    "socketcall",
    "socketpair",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    "tkill",
    "truncate",
    "truncate64",
    "ugetrlimit",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "waitpid",
    "write",
    "writev",
    // Allowed by the default on kernels from 4.8 (whose seccomp cannot be bypassed through
    // ptrace); berth needs a newer kernel anyway.
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
    // Gated on CAP_SYS_CHROOT, which berth grants.
    "chroot",
];

/// Allowed on x86 (64-bit and x32).
const X86_64_ONLY: &[&str] = &["arch_prctl", "modify_ldt"];

/// Allowed on arm and arm64.
const ARM_ONLY: &[&str] = &[
    "arm_fadvise64_64",
    "arm_sync_file_range",
    "sync_file_range2",
    "breakpoint",
    "cacheflush",
    "set_tls",
];

/// `personality(2)` values the default allows: the Linux default, `UNAME26`,
/// `ADDR_NO_RANDOMIZE`, both, and the query `0xffffffff`.
const PERSONALITIES: &[u64] = &[0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// `clone(2)` flags that create namespaces (`CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|
/// NEWPID|NEWNET`): without `CAP_SYS_ADMIN`, a `clone` with any of them is refused.
const CLONE_NAMESPACE_FLAGS: u64 = 0x7e02_0000;

/// `AF_VSOCK`, the one socket family the default refuses.
const AF_VSOCK: u64 = 40;

/// The libseccomp architectures the filter is built for on this host: the native one and its
/// 32-bit companions (as the default's `archMap`).
fn architectures(arch: &str) -> Vec<&'static str> {
    match arch {
        "x86_64" => vec!["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "aarch64" => vec!["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
        _ => Vec::new(),
    }
}

/// The `linux.seccomp` object of an OCI runtime config for the host architecture
/// `std::env::consts::ARCH`.
pub fn profile() -> Value {
    profile_for(std::env::consts::ARCH)
}

/// [`profile`] for the architecture `arch` (`x86_64`, `aarch64`; another gets the native
/// architecture only, which libseccomp picks when the list is empty).
pub fn profile_for(arch: &str) -> Value {
    let mut names: Vec<&str> = ALLOWED.to_vec();
    match arch {
        "x86_64" => names.extend_from_slice(X86_64_ONLY),
        "aarch64" | "arm" => names.extend_from_slice(ARM_ONLY),
        _ => {}
    }
    let mut syscalls = vec![json!({"names": names, "action": "SCMP_ACT_ALLOW"})];
    syscalls.push(json!({
        "names": ["socket"],
        "action": "SCMP_ACT_ALLOW",
        "args": [{"index": 0, "value": AF_VSOCK, "op": "SCMP_CMP_NE"}]
    }));
    for p in PERSONALITIES {
        syscalls.push(json!({
            "names": ["personality"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": p, "op": "SCMP_CMP_EQ"}]
        }));
    }
    // s390 orders clone's arguments differently; berth runs on x86_64 and arm64 hosts.
    syscalls.push(json!({
        "names": ["clone"],
        "action": "SCMP_ACT_ALLOW",
        "args": [{"index": 0, "value": CLONE_NAMESPACE_FLAGS, "valueTwo": 0,
                  "op": "SCMP_CMP_MASKED_EQ"}]
    }));
    // ENOSYS (38), not EPERM: glibc then falls back to clone(2), whose flags can be checked.
    syscalls.push(json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}));
    json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "architectures": architectures(arch),
        "syscalls": syscalls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(p: &Value, name: &str) -> bool {
        p["syscalls"].as_array().unwrap().iter().any(|r| {
            r["action"] == "SCMP_ACT_ALLOW"
                && r.get("args").is_none()
                && r["names"].as_array().unwrap().iter().any(|n| n == name)
        })
    }

    #[test]
    fn default_profile_refuses_namespace_and_keyring_syscalls() {
        let p = profile_for("x86_64");
        assert_eq!(p["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(p["defaultErrnoRet"], 1);
        for refused in [
            "unshare", "setns", "mount", "keyctl", "add_key", "bpf", "reboot",
        ] {
            assert!(!allowed(&p, refused), "{refused} must not be allowed");
        }
        for ok in ["execve", "openat", "chroot", "arch_prctl", "ptrace"] {
            assert!(allowed(&p, ok), "{ok} must be allowed");
        }
        assert_eq!(
            p["architectures"],
            json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"])
        );
    }

    #[test]
    fn arm64_profile_has_arm_syscalls_and_no_x86_ones() {
        let p = profile_for("aarch64");
        assert!(allowed(&p, "set_tls"));
        assert!(!allowed(&p, "arch_prctl"));
        assert_eq!(
            p["architectures"],
            json!(["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"])
        );
    }
}
