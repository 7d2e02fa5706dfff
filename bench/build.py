#!/usr/bin/env python3
"""Build benchmark: berth build vs buildah, side by side in one run.

The app is COPY-heavy: a dependency tree of FILES small files (vendor/, like node_modules)
and a small source tree (src/, 50 files), built FROM busybox out of the test environment's
registry:

    FROM 127.0.0.1:15000/library/busybox:latest
    COPY vendor /app/vendor
    COPY src /app/src
    CMD ["ls", "/app"]

Measures, each ROUNDS times, tool order alternating per round:

  cold     build with empty stores/caches for both tools (each round gets fresh ones):
           berth build --store EMPTY  vs  buildah bud into an empty --root (base pulled too)
  rebuild  one file of src/ changed, rebuild + push to the local registry, caches warm:
           berth build --push         vs  buildah bud --layers && buildah push

buildah runs as root with the overlay storage driver and chroot isolation (the fastest setup
that works on this machine; vfs was slower) and --tls-verify=false for the local registry.
It is installed with apt-get when missing.

Medians and berth/buildah ratios are printed and, with --record, appended to bench/RESULTS.md.
Needs the test environment (testenv/berth-testenv up) and a release build of berth
(cargo build --release --bin berth); --berth names the binary.
"""
import argparse, os, pathlib, shutil, statistics, subprocess, sys, tempfile, time

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

DOCKERFILE = f"""FROM {REGISTRY}/library/busybox:latest
COPY vendor /app/vendor
COPY src /app/src
CMD ["ls", "/app"]
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


def run(cmd, env):
    started = time.perf_counter()
    p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    took = time.perf_counter() - started
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {' '.join(map(str, cmd))}\n{p.stdout[-3000:]}")
    return took


class Berth:
    name = "berth"

    def __init__(self, binary, env, work, compression):
        self.binary, self.env, self.work = binary, env, work
        self.flags = ["--compression", compression]

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
        return time.perf_counter() - started


def fmt(s):
    return f"{s:.2f} s"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--files", type=int, default=20000)
    ap.add_argument("--berth", default=os.environ.get("BERTH_BIN") or str(
        pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release" / "berth"))
    ap.add_argument("--only", choices=["cold", "rebuild"])
    ap.add_argument("--tmpfs", action="store_true",
                    help="put context, stores and buildah roots on a tmpfs mounted for the run "
                    "(the machine's disk is shared with other jobs and noisy)")
    ap.add_argument("--compression", choices=["gzip", "zstd"], default="gzip",
                    help="berth's layer compression (buildah always writes gzip)")
    ap.add_argument("--record", action="store_true", help="append rows to bench/RESULTS.md")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: berth's RUN and buildah's storage need it")
    if not pathlib.Path(args.berth).exists():
        sys.exit(f"no berth binary at {args.berth}; cargo build --release --bin berth")
    env = env_vars()
    ensure_buildah()
    work = pathlib.Path(tempfile.mkdtemp(prefix="berth-bench-build-"))
    if args.tmpfs:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8g", "berth-bench", work], check=True)
    tools = [Berth(args.berth, env, work, args.compression), Buildah(env, work)]
    try:
        ctx = work / "ctx"
        make_context(ctx, args.files)
        # Files deleted in the last half minute make ext4 without a journal (this machine's
        # root) allocate inodes slowly; start quiet.
        if not args.tmpfs:
            time.sleep(QUIET)
        results = {}
        zstd = " --compression zstd" if args.compression == "zstd" else ""
        command = f"`python3 bench/build.py --rounds {args.rounds}{' --tmpfs' if args.tmpfs else ''}{zstd}`"

        if args.only in (None, "cold"):
            times = {t.name: [] for t in tools}
            for rnd in range(args.rounds):
                order = tools if rnd % 2 == 0 else tools[::-1]
                for t in order:
                    times[t.name].append(t.cold(ctx, rnd))
                print(f"cold round {rnd}: " + ", ".join(
                    f"{k} {v[-1]:.2f}s" for k, v in times.items()), file=sys.stderr)
            results["cold"] = times

        if args.only in (None, "rebuild"):
            # Warm both: one full build + push each, untimed.
            for t in tools:
                t.rebuild_push(ctx, -1)
            times = {t.name: [] for t in tools}
            changed = ctx / "src" / "file00.js"
            for rnd in range(args.rounds):
                order = tools if rnd % 2 == 0 else tools[::-1]
                for t in order:
                    changed.write_text(f"export const v0 = {rnd}; // {t.name}\n")
                    times[t.name].append(t.rebuild_push(ctx, rnd))
                print(f"rebuild round {rnd}: " + ", ".join(
                    f"{k} {v[-1]:.2f}s" for k, v in times.items()), file=sys.stderr)
            results["rebuild"] = times

        rows = []
        labels = {
            "cold": (f"cold build, COPY {args.files:,} small files (empty stores)",
                     "buildah bud (overlay, chroot)", "<= 0.5"),
            "rebuild": ("one-file change rebuild + push (warm cache)",
                        "buildah bud --layers + buildah push", "<= 0.2 and < 1 s"),
        }
        for key, times in results.items():
            b = statistics.median(times["berth"])
            a = statistics.median(times["buildah"])
            label, anchor, target = labels[key]
            if zstd:
                label += ", berth with zstd layers (buildah gzip)"
            rows.append(f"| {label} | {fmt(b)} | {anchor} | {fmt(a)} | {b / a:.2f} | {target} "
                        f"| {command} |")
            print(f"{key}: berth {times['berth']} buildah {times['buildah']}", file=sys.stderr)
        print("\n".join(rows))
        if args.record:
            results_md = ROOT / "bench" / "RESULTS.md"
            text = results_md.read_text()
            head, sep, notes = text.partition("\n## Notes")
            head = head.rstrip("\n") + "\n" + "\n".join(rows) + "\n"
            results_md.write_text(head + sep + notes if sep else head)
    finally:
        for root in tools[1].roots:
            tools[1].cleanup(root)
        if args.tmpfs:
            subprocess.run(["umount", work], check=False)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
