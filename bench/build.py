#!/usr/bin/env python3
"""Build benchmark: berth build vs BuildKit and buildah, side by side in one run.

COPY-heavy app: a dependency tree of FILES small files (vendor/, like node_modules) and a small
source tree (src/, 50 files), built FROM busybox out of the test environment's registry:

    FROM 127.0.0.1:15000/library/busybox:latest
    COPY vendor /app/vendor
    COPY src /app/src
    CMD ["ls", "/app"]

RUN-heavy app (multi-stage): a Debian stage runs three real programs, identical for every tool
(workload.sh: generate a 4,000-file text tree with perl, tar | gzip it, sha256sum every file;
each prints its own time as PROGRAM-TIME), and a busybox stage copies the results:

    FROM 127.0.0.1:15000/library/debian:bookworm-slim AS build
    COPY workload.sh seed.txt /work/
    RUN bash /work/workload.sh gen
    RUN bash /work/workload.sh pack
    RUN bash /work/workload.sh sums
    FROM 127.0.0.1:15000/library/busybox:latest
    COPY --from=build /work/tree.tar.gz /work/SUMS /app/

Measures, each ROUNDS times, tool order rotated per round:

  cold     COPY-heavy build with empty stores/caches for every tool (each round fresh ones;
           base pulled too, no push): berth build --store EMPTY; a new buildkitd with an
           empty --root (started before the clock); buildah bud into an empty --root
  rebuild  one file of src/ changed, rebuild + push to the local registry, caches warm:
           berth build --push; buildctl build (push=true) on a warm buildkitd, and again
           with --import-cache/--export-cache type=local; buildah bud --layers + push
  multiarch (only when named) the two-platform Python app (MULTI_DOCKERFILE), bases cached,
           seed.txt changed each time: berth build --platform linux/amd64,linux/arm64;
           buildctl build --opt platform=... on the warm buildkitd (same qemu-user)
  run      RUN-heavy build, bases cached, seed.txt changed each time (so every RUN runs):
           berth build; buildctl build on the warm buildkitd; buildah bud --layers.
           Each RUN step's own time is read from the tools' output (berth and buildah: the
           time between their step lines; BuildKit: the vertex's started/completed times of
           --progress rawjson) and the program's from PROGRAM-TIME: the difference is the
           tool's overhead per RUN step.

buildah runs as root with the overlay storage driver and chroot isolation (the fastest setup
that works on this machine; vfs was slower) and --tls-verify=false for the local registry.
It is installed with apt-get when missing. buildkitd (v0.34.2, OCI worker on runc, overlayfs
snapshotter, as root, its state under the same work dir as berth's store) and buildctl are
built by `testenv/berth-testenv bench-tools`; the bench starts and stops buildkitd itself.

Medians and berth/anchor ratios are printed and, with --record, appended to bench/RESULTS.md.
Needs the test environment (testenv/berth-testenv up) and a release build of berth
(cargo build --release --bin berth); --berth names the binary.
"""
import argparse, base64, datetime, json, os, pathlib, re, shutil, signal, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from deploy import env_vars as deploy_env_vars  # noqa: E402  (one reader of the env file)

ROOT = pathlib.Path(__file__).resolve().parent.parent
REGISTRY = "127.0.0.1:15000"
# Nothing is deleted while measuring: this machine's root file system is ext4 without a
# journal, which scans recently freed inodes (freed < ~30 s ago) on every file creation, so
# removing the previous round's 20,000 files slowed the next round's creations 5-10x, for both
# tools, and measured the file system rather than the builders. Stores and buildah roots are
# removed after the last round.
QUIET = 35
BUILDKIT_VERSION = "v0.34.2"  # testenv/berth-testenv's BUILDKIT_VERSION

DOCKERFILE = f"""FROM {REGISTRY}/library/busybox:latest
COPY vendor /app/vendor
COPY src /app/src
CMD ["ls", "/app"]
"""

RUN_DOCKERFILE = f"""FROM {REGISTRY}/library/debian:bookworm-slim AS build
COPY workload.sh seed.txt /work/
RUN bash /work/workload.sh gen
RUN bash /work/workload.sh pack
RUN bash /work/workload.sh sums
FROM {REGISTRY}/library/busybox:latest
COPY --from=build /work/tree.tar.gz /work/SUMS /app/
CMD ["ls", "/app"]
"""
RUN_STEPS = 3

# Two platforms (--only multiarch): a Python app whose RUN steps really install, for amd64
# natively and for arm64 under the same qemu-user (binfmt_misc) for every tool. The host's CA
# bundle is copied in so pip trusts this machine's TLS-intercepting egress (BuildKit's RUN
# steps get no CA of the host's otherwise).
MULTI_DOCKERFILE = f"""FROM {REGISTRY}/library/debian:bookworm-slim
ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_CERT=/etc/bench-ca.crt
COPY ca.crt /etc/bench-ca.crt
COPY seed.txt /seed.txt
RUN apt-get update -o Acquire::Retries=3 && apt-get install -y --no-install-recommends python3-pip && rm -rf /var/lib/apt/lists/*
RUN pip install --break-system-packages --no-compile six==1.16.0
COPY app.py /app.py
CMD ["python3", "/app.py"]
"""
PLATFORMS = "linux/amd64,linux/arm64"

# The RUN-heavy build's programs: only what debootstrap's minbase has (bash, perl-base,
# coreutils, tar, gzip, findutils). Each step times itself with bash's `time`.
WORKLOAD = r"""#!/bin/bash
set -euo pipefail
TIMEFORMAT="PROGRAM-TIME %R"
cd /work
case "$1" in
  # 4,000 files of ~8 KB of words (32 MB) in 40 directories, seeded by seed.txt.
  gen) time perl -e '
    srand(unpack("%32C*", `cat /work/seed.txt`));
    mkdir "tree" or die "tree: $!";
    my @w = map { join "", map { chr(97 + int rand 26) } 1 .. 2 + int rand 8 } 1 .. 2000;
    for my $d (0 .. 39) {
      mkdir "tree/d$d" or die "tree/d$d: $!";
      for my $f (0 .. 99) {
        open my $fh, ">", "tree/d$d/f$f.txt" or die;
        my $n = 0; my $s = "";
        while ($n < 8192) { my $x = $w[rand @w] . (rand() < 0.1 ? "\n" : " "); $s .= $x; $n += length $x }
        print $fh $s; close $fh;
      }
    }' ;;
  pack) time (tar --sort=name -cf - tree | gzip -6 > tree.tar.gz) ;;
  sums) time (find tree -type f -print0 | sort -z | xargs -0 sha256sum > SUMS; sha256sum tree.tar.gz >> SUMS) ;;
esac
"""


def env_vars():
    env = deploy_env_vars()
    env.setdefault("BERTH_INSECURE_REGISTRIES", REGISTRY)
    return env


def ensure_buildah():
    if shutil.which("buildah"):
        return
    print("installing buildah (apt-get)", file=sys.stderr)
    subprocess.run(["apt-get", "install", "-y", "buildah"], check=True,
                   env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
                   stdout=subprocess.DEVNULL)


def buildkit_bin(env):
    bin_dir = pathlib.Path(env.get("BERTH_TESTENV_BIN", ""))
    found = [bin_dir / n for n in ("buildkitd", "buildctl")]
    missing = [str(f) for f in found if not os.access(f, os.X_OK)]
    if missing:
        sys.exit(f"BuildKit is not built: no {', '.join(missing)}.\n"
                 f"build buildkitd and buildctl {BUILDKIT_VERSION} with: "
                 "testenv/berth-testenv bench-tools (about 3-4 min cold on 2 cores), "
                 "or leave BuildKit out with --anchors buildah")
    if not shutil.which("runc"):
        sys.exit("buildkitd's OCI worker needs runc: apt-get install runc")
    return found


def make_context(dir, files):
    dir.mkdir(parents=True)
    (dir / "Dockerfile").write_text(DOCKERFILE)
    per_dir = 100
    for i in range(files):
        d = dir / "vendor" / f"pkg{i // per_dir:04d}"
        if i % per_dir == 0:
            d.mkdir(parents=True)
        (d / f"mod{i % per_dir:03d}.js").write_text(
            f"// module {i}\nmodule.exports = function m{i}() {{ return {i}; }};\n")
    (dir / "src").mkdir()
    for i in range(50):
        (dir / "src" / f"file{i:02d}.js").write_text(f"export const v{i} = {i};\n")


def make_run_context(dir):
    dir.mkdir(parents=True)
    (dir / "Dockerfile").write_text(RUN_DOCKERFILE)
    (dir / "workload.sh").write_text(WORKLOAD)
    (dir / "seed.txt").write_text("warm-up\n")


def make_multi_context(dir):
    dir.mkdir(parents=True)
    (dir / "Dockerfile").write_text(MULTI_DOCKERFILE)
    shutil.copy("/etc/ssl/certs/ca-certificates.crt", dir / "ca.crt")
    (dir / "seed.txt").write_text("warm-up\n")
    (dir / "app.py").write_text("import platform, six\nprint(platform.machine(), six.__version__)\n")


class Run:
    """One timed command: wall time, peak RSS of the process (wait4), output lines with the
    time each arrived (seconds from the start)."""

    def __init__(self, took, rss_kb, lines):
        self.took, self.rss_kb, self.lines = took, rss_kb, lines


def run(cmd, env):
    started = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         bufsize=1)
    lines = [(time.perf_counter() - started, line.rstrip("\n")) for line in p.stdout]
    _, status, usage = os.wait4(p.pid, 0)
    took = time.perf_counter() - started
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        out = "\n".join(text for _, text in lines)
        sys.exit(f"failed ({p.returncode}): {' '.join(map(str, cmd))}\n{out[-3000:]}")
    return Run(took, usage.ru_maxrss, lines)


PROGRAM_TIME = re.compile(r"PROGRAM-TIME ([0-9.]+)")


def timed_run_steps(lines, step=r"\[\d+/\d+\] ", end="built "):
    """[(step time, program time)] of each RUN step from a tool that prints one line per step
    (berth: `[i/n] RUN ...`; buildah: `STEP i/n: RUN ...`): from its RUN line to the next step
    line (or the `end` line), and the PROGRAM-TIME it printed."""
    steps, current = [], None
    for t, text in lines:
        is_step = re.match(step, text) is not None or text.startswith(end)
        if current and is_step:
            steps.append((t - current[0], current[1]))
            current = None
        if re.match(step + "RUN ", text):
            current = [t, None]
        elif current and (m := PROGRAM_TIME.search(text)):
            current[1] = float(m.group(1))
    return [s for s in steps if s[1] is not None]


def rfc3339(ts):
    """Seconds since the epoch of BuildKit's RFC 3339 timestamps (nanoseconds cut to micro)."""
    head, _, frac = ts.rstrip("Z").partition(".")
    return datetime.datetime.fromisoformat(head + "+00:00").timestamp() + float("0." + (frac or "0"))


def buildkit_run_steps(lines):
    """[(step time, program time)] of each RUN step from `--progress rawjson`: a vertex named
    `[...] RUN ...` with its `started` and `completed` times (nanoseconds), and the
    PROGRAM-TIME line in its logs."""
    vertexes, prog = {}, {}
    for _, text in lines:
        try:
            status = json.loads(text)
        except ValueError:
            continue
        for v in status.get("vertexes") or []:
            if re.match(r"\[[^\]]*\] RUN ", v.get("name", "")) and v.get("completed"):
                vertexes[v["digest"]] = rfc3339(v["completed"]) - rfc3339(v["started"])
        for log in status.get("logs") or []:
            if m := PROGRAM_TIME.search(base64.b64decode(log.get("data", "")).decode(errors="replace")):
                prog[log["vertex"]] = float(m.group(1))
    return [(vertexes[d], prog[d]) for d in vertexes if d in prog]


class Berth:
    name = "berth"

    def __init__(self, binary, env, work, compression, network=None):
        self.binary, self.env, self.work = binary, env, work
        self.flags = ["--compression", compression]
        if network:
            self.flags += ["--network", network]

    def cold(self, ctx, rnd):
        # A new store each round; all are removed at the end (see QUIET).
        store = self.work / f"berth-cold-{rnd}"
        return run([self.binary, "build", ctx, "--store", store, *self.flags,
                    "-t", f"{REGISTRY}/bench/berth-cold:r{rnd}"], self.env)

    def warm_store(self):
        return self.work / "berth-warm"

    def rebuild_push(self, ctx, rnd):
        return run([self.binary, "build", ctx, "--store", self.warm_store(), "--push",
                    *self.flags, "-t", f"{REGISTRY}/bench/berth-app:latest"], self.env)

    def run_heavy(self, ctx, rnd):
        r = run([self.binary, "build", ctx, "--store", self.warm_store(), *self.flags,
                 "-t", f"{REGISTRY}/bench/berth-run:latest"], self.env)
        r.steps = timed_run_steps(r.lines)
        return r

    def multiarch(self, ctx, rnd):
        return run([self.binary, "build", ctx, "--store", self.warm_store(), *self.flags,
                    "--platform", PLATFORMS, "-t", f"{REGISTRY}/bench/berth-multi:latest"], self.env)


class BuildKit:
    """buildkitd as root with the OCI worker (runc) and the overlayfs snapshotter, its state
    (--root) in the bench's work dir, on the same disk as berth's store. Plain-HTTP access to
    the test registry is configured in buildkitd.toml. `export_cache` adds
    --import-cache/--export-cache type=local (mode=max) on the warm daemon."""

    def __init__(self, binaries, env, work, export_cache=False):
        self.buildkitd, self.buildctl = binaries
        self.env, self.work, self.export_cache = env, work, export_cache
        self.name = "buildkit+localcache" if export_cache else "buildkit"
        self.daemons = {}

    def start(self, root):
        if root in self.daemons:
            return self.daemons[root][1]
        root.mkdir(parents=True, exist_ok=True)
        config = root / "buildkitd.toml"
        config.write_text(f'[registry."{REGISTRY}"]\n  http = true\n  insecure = true\n\n'
                          '[worker.oci]\n  enabled = true\n  snapshotter = "overlayfs"\n'
                          '  gc = false\n\n[worker.containerd]\n  enabled = false\n')
        addr = f"unix://{root}/buildkitd.sock"
        log = open(root / "buildkitd.log", "w")
        proc = subprocess.Popen([self.buildkitd, "--root", root / "state", "--addr", addr,
                                 "--config", config], stdout=log, stderr=subprocess.STDOUT,
                                env=self.env, start_new_session=True)
        deadline = time.monotonic() + 60
        while subprocess.run([self.buildctl, "--addr", addr, "debug", "workers"], env=self.env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode:
            if proc.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"buildkitd did not start; see {root / 'buildkitd.log'}:\n"
                         + (root / "buildkitd.log").read_text()[-2000:])
            time.sleep(0.2)
        self.daemons[root] = (proc, addr)
        return addr

    def stop(self, root):
        proc, _ = self.daemons.pop(root)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def stop_all(self):
        for root in list(self.daemons):
            self.stop(root)

    def build(self, addr, ctx, output, cache=None, progress="plain"):
        cmd = [self.buildctl, "--addr", addr, "build", "--progress", progress,
               "--frontend", "dockerfile.v0", "--local", f"context={ctx}",
               "--local", f"dockerfile={ctx}", "--output", output]
        if cache is not None:
            if (cache / "index.json").exists():
                cmd += ["--import-cache", f"type=local,src={cache}"]
            cmd += ["--export-cache", f"type=local,dest={cache},mode=max"]
        return run(cmd, self.env)

    def cold(self, ctx, rnd):
        # A new daemon with an empty state each round, started before the clock.
        root = self.work / f"{self.name}-cold-{rnd}"
        addr = self.start(root)
        try:
            return self.build(addr, ctx, f"type=image,name={REGISTRY}/bench/buildkit-cold:r{rnd},push=false")
        finally:
            self.stop(root)

    def warm_root(self):
        return self.work / f"{self.name}-warm"

    def cache_dir(self):
        return self.work / f"{self.name}-cache" if self.export_cache else None

    def rebuild_push(self, ctx, rnd):
        addr = self.start(self.warm_root())
        return self.build(addr, ctx, f"type=image,name={REGISTRY}/bench/{self.name.replace('+', '-')}-app:latest,"
                          "push=true,registry.insecure=true", self.cache_dir())

    def run_heavy(self, ctx, rnd):
        addr = self.start(self.warm_root())
        r = self.build(addr, ctx, f"type=image,name={REGISTRY}/bench/{self.name.replace('+', '-')}-run:latest,push=false",
                       self.cache_dir(), progress="rawjson")
        r.steps = buildkit_run_steps(r.lines)
        return r

    def multiarch(self, ctx, rnd):
        addr = self.start(self.warm_root())
        cmd = [self.buildctl, "--addr", addr, "build", "--progress", "plain",
               "--frontend", "dockerfile.v0", "--local", f"context={ctx}",
               "--local", f"dockerfile={ctx}", "--opt", f"platform={PLATFORMS}",
               "--output", f"type=image,name={REGISTRY}/bench/{self.name.replace('+', '-')}-multi:latest,push=false"]
        return run(cmd, self.env)


class Buildah:
    name = "buildah"

    def __init__(self, env, work):
        self.env, self.work = env, work
        self.roots = [self.warm_root()]

    def base(self, root):
        return ["buildah", "--root", root / "root", "--runroot", root / "run",
                "--storage-driver", "overlay"]

    def bud(self, root, ctx, tag, layers):
        cmd = self.base(root) + ["bud", "--isolation", "chroot", "--tls-verify=false",
                                 "-t", tag]
        if layers:
            cmd.append("--layers")
        return cmd + [ctx]

    def cleanup(self, root):
        subprocess.run(self.base(root) + ["rmi", "-a", "-f"], env=self.env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(root, ignore_errors=True)

    def cold(self, ctx, rnd):
        root = self.work / f"buildah-cold-{rnd}"
        self.roots.append(root)
        return run(self.bud(root, ctx, "bench/buildah-cold", False), self.env)

    def warm_root(self):
        return self.work / "buildah-warm"

    def rebuild_push(self, ctx, rnd):
        root = self.warm_root()
        started = time.perf_counter()
        run(self.bud(root, ctx, "bench/buildah-app", True), self.env)
        run(self.base(root) + ["push", "--tls-verify=false", "bench/buildah-app",
                               f"docker://{REGISTRY}/bench/buildah-app:latest"], self.env)
        return Run(time.perf_counter() - started, 0, [])

    def run_heavy(self, ctx, rnd):
        r = run(self.bud(self.warm_root(), ctx, "bench/buildah-run", True), self.env)
        # Each step ends with its commit (`--> ID`) before the next STEP line.
        r.steps = timed_run_steps(r.lines, r"(\[\d+/\d+\] )?STEP \d+/\d+: ", "Successfully tagged")
        return r


def fmt(s):
    return f"{s:.2f} s"


def rotated(tools, rnd):
    k = rnd % len(tools)
    return tools[k:] + tools[:k]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--files", type=int, default=20000)
    ap.add_argument("--berth", default=os.environ.get("BERTH_BIN") or str(
        pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release" / "berth"))
    ap.add_argument("--only", choices=["cold", "rebuild", "run", "multiarch"], action="append",
                    help="run only this measure (repeatable); multiarch (BuildKit only, about "
                    "3 min a build) runs only when named")
    ap.add_argument("--anchors", default="buildkit,buildah",
                    help="comma-separated anchors: buildkit, buildah (default both)")
    ap.add_argument("--tmpfs", action="store_true",
                    help="put context, stores, buildah roots and buildkitd's state on a tmpfs "
                    "mounted for the run (the machine's disk is shared with other jobs and noisy)")
    ap.add_argument("--compression", choices=["gzip", "zstd"], default="gzip",
                    help="berth's layer compression (buildah and BuildKit write gzip)")
    ap.add_argument("--network", choices=["isolated", "none", "host"],
                    help="network of berth's RUN steps (default berth's own, isolated: a "
                    "namespace with slirp4netns); buildkitd's OCI worker uses the host network "
                    "when no CNI is configured, as here, and buildah's chroot isolation too")
    ap.add_argument("--record", action="store_true", help="append rows to bench/RESULTS.md")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: berth's RUN, buildah's storage and buildkitd need it")
    if not pathlib.Path(args.berth).exists():
        sys.exit(f"no berth binary at {args.berth}; cargo build --release --bin berth")
    anchors = [a for a in args.anchors.split(",") if a]
    if unknown := set(anchors) - {"buildkit", "buildah"}:
        sys.exit(f"unknown anchors {sorted(unknown)}: choose from buildkit, buildah")
    only = args.only or ["cold", "rebuild", "run"]
    if "multiarch" in only and "buildkit" not in anchors:
        sys.exit("--only multiarch compares with BuildKit: keep buildkit in --anchors")
    env = env_vars()
    if "buildah" in anchors:
        ensure_buildah()
    work = pathlib.Path(tempfile.mkdtemp(prefix="berth-bench-build-"))
    if args.tmpfs:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8g", "berth-bench", work], check=True)
    berth = Berth(args.berth, env, work, args.compression, args.network)
    tools, buildkits, buildah = [berth], [], None
    if "buildkit" in anchors:
        binaries = buildkit_bin(env)
        buildkits = [BuildKit(binaries, env, work), BuildKit(binaries, env, work, export_cache=True)]
        tools.append(buildkits[0])
    if "buildah" in anchors:
        buildah = Buildah(env, work)
        tools.append(buildah)
    try:
        ctx = work / "ctx"
        make_context(ctx, args.files)
        run_ctx = work / "run-ctx"
        make_run_context(run_ctx)
        multi_ctx = work / "multi-ctx"
        make_multi_context(multi_ctx)
        # Files deleted in the last half minute make ext4 without a journal (this machine's
        # root) allocate inodes slowly; start quiet.
        if not args.tmpfs:
            time.sleep(QUIET)
        results, steps, rss = {}, {}, {}
        zstd = " --compression zstd" if args.compression == "zstd" else ""
        flags = f"--rounds {args.rounds}{' --tmpfs' if args.tmpfs else ''}{zstd}"
        if args.anchors != "buildkit,buildah":
            flags += f" --anchors {args.anchors}"
        if args.network:
            flags += f" --network {args.network}"
        if args.only:
            flags += "".join(f" --only {o}" for o in args.only)
        command = f"`python3 bench/build.py {flags}`"

        def measure(key, tools, fn, change=None):
            times = {t.name: [] for t in tools}
            for rnd in range(args.rounds):
                for t in rotated(tools, rnd):
                    if change:
                        change(rnd, t)
                    r = fn(t)(rnd)
                    times[t.name].append(r.took)
                    if t is berth:
                        rss.setdefault(key, []).append(r.rss_kb)
                    if hasattr(r, "steps"):
                        steps.setdefault(t.name, []).extend(r.steps)
                print(f"{key} round {rnd}: " + ", ".join(
                    f"{k} {v[-1]:.2f}s" for k, v in times.items()), file=sys.stderr)
            results[key] = times

        if "cold" in only:
            measure("cold", tools, lambda t: lambda rnd: t.cold(ctx, rnd))

        if "rebuild" in only or "run" in only:
            rtools = tools + buildkits[1:]
            # Warm every tool: one full build (+ push) of each app, untimed.
            for t in rtools:
                if "rebuild" in only:
                    t.rebuild_push(ctx, -1)
                if "run" in only:
                    t.run_heavy(run_ctx, -1)
            if "rebuild" in only:
                changed = ctx / "src" / "file00.js"
                measure("rebuild", rtools, lambda t: lambda rnd: t.rebuild_push(ctx, rnd),
                        lambda rnd, t: changed.write_text(f"export const v0 = {rnd}; // {t.name}\n"))
            if "run" in only:
                seed = run_ctx / "seed.txt"
                measure("run", rtools, lambda t: lambda rnd: t.run_heavy(run_ctx, rnd),
                        lambda rnd, t: seed.write_text(f"round {rnd} {t.name}\n"))
        if "multiarch" in only:
            mtools = [berth] + buildkits[:1]
            for t in mtools:
                t.multiarch(multi_ctx, -1)
            seed = multi_ctx / "seed.txt"
            measure("multiarch", mtools, lambda t: lambda rnd: t.multiarch(multi_ctx, rnd),
                    lambda rnd, t: seed.write_text(f"round {rnd} {t.name}\n"))
        for b in buildkits:
            b.stop_all()

        rows = []
        labels = {
            "cold": (f"cold build, COPY {args.files:,} small files (empty stores)", {
                "buildah": ("buildah bud (overlay, chroot)", "<= 0.5"),
                "buildkit": (f"BuildKit {BUILDKIT_VERSION} (buildctl, new buildkitd, OCI worker, overlayfs)", "<= 0.5")}),
            "rebuild": ("one-file change rebuild + push (warm cache)", {
                "buildah": ("buildah bud --layers + buildah push", "<= 0.2 and < 1 s"),
                "buildkit": (f"BuildKit {BUILDKIT_VERSION}, warm buildkitd, push=true", "<= 0.3"),
                "buildkit+localcache": (f"BuildKit {BUILDKIT_VERSION}, warm buildkitd + --import/--export-cache type=local", "-")}),
            "run": (f"RUN-heavy multi-stage build ({RUN_STEPS} RUN steps in a Debian stage, result copied into busybox; bases cached, every RUN re-run)", {
                "buildah": ("buildah bud --layers (chroot)", "-"),
                "buildkit": (f"BuildKit {BUILDKIT_VERSION}, warm buildkitd", "<= 0.8"),
                "buildkit+localcache": (f"BuildKit {BUILDKIT_VERSION}, warm buildkitd + --import/--export-cache type=local", "-")}),
            "multiarch": ("two-platform build (linux/amd64 native + linux/arm64 under qemu-user) of a Python app: RUN apt-get install python3-pip, RUN pip install six; bases cached, every RUN re-run", {
                "buildkit": (f"BuildKit {BUILDKIT_VERSION}, warm buildkitd, --opt platform=linux/amd64,linux/arm64", "-")}),
        }
        for key, times in results.items():
            b = statistics.median(times["berth"])
            label, anchors_of = labels[key]
            if zstd:
                label += ", berth with zstd layers (anchors gzip)"
            if not args.tmpfs:
                label += ", shared disk"
            if args.network and key == "run":
                label += f", berth --network {args.network}"
            for name, (anchor, target) in anchors_of.items():
                if name not in times:
                    continue
                a = statistics.median(times[name])
                rows.append(f"| {label} | {fmt(b)} | {anchor} | {fmt(a)} | {b / a:.2f} | {target} "
                            f"| {command} |")
            print(f"{key}: " + " ".join(f"{k} {[round(x, 2) for x in v]}" for k, v in times.items()),
                  file=sys.stderr)
            if key in rss:
                print(f"{key}: berth peak RSS {[round(k / 1024, 1) for k in rss[key]]} MB", file=sys.stderr)
        overhead = {name: [step - prog for step, prog in s] for name, s in steps.items() if s}
        for name in ("buildkit", "buildah"):
            if "berth" not in overhead or name not in overhead:
                continue
            b, a = statistics.median(overhead["berth"]), statistics.median(overhead[name])
            prog = statistics.median(p for _, p in steps["berth"])
            label = (f"RUN step overhead (step time minus the program's own, median of "
                     f"{len(overhead['berth'])} steps; program median {prog:.2f} s)")
            if zstd:
                label += ", berth with zstd layers"
            if not args.tmpfs:
                label += ", shared disk"
            rows.append(f"| {label} | {fmt(b)} | {labels['run'][1][name][0]} | {fmt(a)} "
                        f"| {b / a:.2f} | small | {command} |")
        if steps:
            for name, s in steps.items():
                if s:
                    print(f"run steps {name}: " + ", ".join(f"{st:.2f}/{p:.2f}" for st, p in s)
                          + " (step/program s)", file=sys.stderr)
        if "cold" in rss:
            rows.append(f"| berth peak RSS, cold build of {args.files:,} files | "
                        f"{statistics.median(rss['cold']) / 1024:.1f} MB | - | - | - | - | {command} |")
        print("\n".join(rows))
        if args.record:
            results_md = ROOT / "bench" / "RESULTS.md"
            text = results_md.read_text()
            head, sep, notes = text.partition("\n## Notes")
            head = head.rstrip("\n") + "\n" + "\n".join(rows) + "\n"
            results_md.write_text(head + sep + notes if sep else head)
    finally:
        for b in buildkits:
            b.stop_all()
        if buildah:
            for root in buildah.roots:
                buildah.cleanup(root)
        if args.tmpfs:
            subprocess.run(["umount", work], check=False)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
