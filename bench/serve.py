#!/usr/bin/env python3
"""Delivery-server benchmark: `berth serve` on the test environment.

Measures, in one run:

  latency   webhook -> run started, over PUSHES signed GitHub push webhooks sent one after
            another (each for a commit that does not exist, so the run fails at once at its
            fetch step and the next push finds the lane free): the time from sending the
            request to the run's `started_at` (same machine clock), p50 and p99. The anchor is
            `git fetch` of the same bare repository into the same kind of mirror — the first
            thing any webhook-driven runner does — so the ratio says what the server adds on
            top of the cheapest possible reaction.
  parallel  RUNS runs of a tiny manifests-only service (a ConfigMap), one per environment (so
            all may run at once), queued through the API with --concurrency RUNS: wall time
            until all are done. Anchor: RUNS `berth run` processes of the same project started
            at once (the same engine without the server).
  rss       the server's resident memory idle (after start, before any run) and its peak while
            the parallel runs go (sampled from /proc every 20 ms).

Medians and ratios are printed and, with --record, appended to bench/RESULTS.md.
Needs the test environment (testenv/berth-testenv up) and a build of berth
(cargo build --release --bin berth); --berth names the binary.
"""
import argparse, hashlib, hmac, json, os, pathlib, socket, statistics, subprocess, sys, tempfile, threading, time
import urllib.request
from datetime import datetime

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from deploy import env_vars  # noqa: E402  (one reader of the env file)

ROOT = pathlib.Path(__file__).resolve().parent.parent
SECRET = "bench-secret"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def git(d, *args):
    subprocess.run(["git", "-C", str(d), "-c", "user.name=b", "-c", "user.email=b@example.invalid", *args],
                   check=True, capture_output=True)


def project(root, envs, ns_prefix):
    work = root / "work"
    (work / "k8s").mkdir(parents=True)
    (work / "k8s" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: tiny\ndata:\n  greeting: hello\n")
    lines = ["services:", "  - name: tiny", "    manifests:", "      path: [k8s]", "environments:"]
    for i in range(envs):
        lines += [f"  - name: e{i}", f"    namespace: {ns_prefix}-{i}"]
    # e0 deploys branch main automatically (the latency measure's webhooks name main).
    text = "\n".join(lines) + "\n"
    text = text.replace("  - name: e0\n", "  - name: e0\n    branch: main\n", 1)
    (work / "berth.yaml").write_text(text)
    git(work, "init", "-q", "-b", "main")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "tiny")
    bare = root / "tiny.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
    return work, bare


class Server:
    def __init__(self, berth, root, bare, port, env, concurrency):
        self.port = port
        cfg = root / "berth-serve.yaml"
        cfg.write_text(
            f"listen: 127.0.0.1:{port}\ndata_dir: {root / 'data'}\nconcurrency: {concurrency}\n"
            f"repositories:\n  - name: tiny\n    url: {bare}\n"
            f"    webhook: {{ provider: github, secret_env: BENCH_HOOK_SECRET }}\n")
        self.env = {**env, "BENCH_HOOK_SECRET": SECRET, "BERTH_SERVE_CONFIG": str(cfg)}
        out = subprocess.run([berth, "serve", "token", "create", "bench", "--role", "deployer"],
                             env=self.env, check=True, capture_output=True, text=True)
        self.token = out.stdout.strip()
        self.log = open(root / "serve.log", "w")
        self.proc = subprocess.Popen([berth, "serve"], env=self.env, stdout=subprocess.PIPE,
                                     stderr=self.log, text=True)
        line = self.proc.stdout.readline()
        assert line.startswith("listening on"), line
        threading.Thread(target=lambda: self.proc.stdout.read(), daemon=True).start()

    def rss_kb(self):
        for line in open(f"/proc/{self.proc.pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def call(self, method, path, body=None, headers=None):
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        req.add_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def wait(self, run_id, timeout=300):
        deadline = time.time() + timeout
        while time.time() < deadline:
            _, r = self.call("GET", f"/api/runs/{run_id}")
            if r["state"] not in ("queued", "running"):
                return r
            time.sleep(0.02)
        raise SystemExit(f"run {run_id} did not finish")

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def push_payload(i):
    after = hashlib.sha1(f"missing-{i}".encode()).hexdigest()
    return json.dumps({
        "ref": "refs/heads/main", "before": "0" * 40, "after": after, "created": False,
        "deleted": False, "forced": False, "compare": "",
        "repository": {"id": 1, "name": "tiny", "full_name": "bench/tiny", "clone_url": "file:///tiny.git",
                       "ssh_url": "git@example.invalid:bench/tiny.git", "html_url": "http://example.invalid/bench/tiny",
                       "default_branch": "main", "owner": {"login": "bench", "name": "bench"}},
        "pusher": {"name": "bench", "email": "b@example.invalid"},
        "sender": {"login": "bench"},
        "head_commit": {"id": after, "message": "x", "timestamp": "2026-01-01T00:00:00Z",
                        "author": {"name": "b", "email": "b@example.invalid"},
                        "committer": {"name": "b", "email": "b@example.invalid"},
                        "added": [], "modified": [], "removed": [], "url": "", "tree_id": after, "distinct": True},
        "commits": [],
    }).encode()


def ts(s):
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def where_the_time_goes(srv, t0, runs):
    """One line per step (median and max of its `millis` over the runs), then when the runs
    started and finished relative to the first request: the profile of the parallel measure."""
    steps = {}
    for r in runs:
        _, events = srv.call("GET", f"/api/runs/{r['id']}/events?limit=5000")
        for e in events:
            ev = e["event"]
            if ev.get("event") == "step_finished":
                step = ev["step"] if isinstance(ev["step"], str) else json.dumps(ev["step"])
                steps.setdefault(step, []).append(ev["millis"])
    lines = ["where the time goes (server, per run):"]
    for step, ms in sorted(steps.items(), key=lambda kv: -statistics.median(kv[1])):
        lines.append(f"  {step:<24} median {statistics.median(ms):7.1f} ms  max {max(ms):7.1f} ms  ({len(ms)} runs)")
    started = sorted(ts(r["started_at"]) - t0 for r in runs if r.get("started_at"))
    ended = sorted(ts(r["finished_at"]) - t0 for r in runs if r.get("finished_at"))
    if started and ended:
        lines.append(f"  started between {started[0]:.2f} s and {started[-1]:.2f} s; "
                     f"finished between {ended[0]:.2f} s and {ended[-1]:.2f} s after the first request")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--berth", default=str(ROOT / "target/release/berth"))
    ap.add_argument("--pushes", type=int, default=200)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--record", action="store_true")
    a = ap.parse_args()
    env = {**os.environ, **env_vars()}
    root = pathlib.Path(tempfile.mkdtemp(prefix="berth-bench-serve-"))
    ns = f"bench-serve-{os.getpid()}"
    work, bare = project(root, a.runs, ns)
    port = free_port()
    srv = Server(a.berth, root, bare, port, env, a.runs)
    time.sleep(1.0)
    idle_kb = srv.rss_kb()

    # Latency: webhook -> run started.
    lat = []
    for i in range(a.pushes):
        body = push_payload(i)
        sig = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        t0 = time.time()
        s, r = srv.call("POST", "/hooks/tiny", body,
                        {"X-GitHub-Event": "push", "X-GitHub-Delivery": f"bench-{os.getpid()}-{i}",
                         "X-Hub-Signature-256": sig})
        assert s == 202, (s, r)
        run = srv.wait(r["runs"][0])
        lat.append(ts(run["started_at"]) - t0)
    fetch = []
    for i in range(20):
        mirror = root / f"mirror-{i}"
        t0 = time.time()
        subprocess.run(["git", "clone", "-q", "--mirror", str(bare), str(mirror)], check=True)
        fetch.append(time.time() - t0)

    # Parallel runs through the server, with RSS sampling.
    peak = [0]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], srv.rss_kb())
            time.sleep(0.02)
    threading.Thread(target=sample, daemon=True).start()
    t0 = time.time()
    ids = []
    for i in range(a.runs):
        s, r = srv.call("POST", "/api/repositories/tiny/runs", {"branch": "main", "environment": f"e{i}"})
        assert s == 202, (s, r)
        ids.append(r["id"])
    submitted = time.time() - t0
    finished = [srv.wait(x, 600) for x in ids]
    states = [r["state"] for r in finished]
    server_parallel = time.time() - t0
    stop.set()
    breakdown = where_the_time_goes(srv, t0, finished) + f"\n  the {a.runs} requests took {submitted:.2f} s"
    srv.stop()
    bad = [s for s in states if s != "succeeded"]
    assert not bad, f"{len(bad)} runs did not succeed: {bad[:3]} (see {root}/serve.log)"

    # Anchor: the same runs as parallel `berth run` processes, first deploys into namespaces of
    # their own.
    t0 = time.time()
    procs = [subprocess.Popen([a.berth, "run", "-c", str(work / "berth.yaml"), "-e", f"e{i}",
                               "-n", f"{ns}-cli-{i}"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in range(a.runs)]
    codes = [p.wait() for p in procs]
    cli_parallel = time.time() - t0
    for i in range(a.runs):
        for n in (f"{ns}-{i}", f"{ns}-cli-{i}"):
            subprocess.run(["kubectl", "delete", "namespace", n, "--wait=false"], env=env,
                           capture_output=True)

    p50, p99 = pct(lat, 50) * 1000, pct(lat, 99) * 1000
    fetch_med = statistics.median(fetch) * 1000
    rows = [
        f"| webhook -> run started, p50 ({a.pushes} pushes) | {p50:.1f} ms | git clone --mirror of the repository (the least any runner does) | {fetch_med:.1f} ms | {p50 / fetch_med:.2f} | - | `python3 bench/serve.py` |",
        f"| webhook -> run started, p99 ({a.pushes} pushes) | {p99:.1f} ms | - | - | - | < 50 ms | `python3 bench/serve.py` |",
        f"| {a.runs} concurrent runs of a tiny service (first deploy), wall | {server_parallel:.2f} s | {a.runs} parallel `berth run` processes (first deploys; exit codes {sorted(set(codes))}) | {cli_parallel:.2f} s | {server_parallel / cli_parallel:.2f} | - | `python3 bench/serve.py` |",
        f"| berth serve RSS idle | {idle_kb / 1024:.1f} MB | - | - | - | < 60 MB | `python3 bench/serve.py` |",
        f"| berth serve RSS peak, {a.runs} runs at once | {peak[0] / 1024:.1f} MB | - | - | - | - | `python3 bench/serve.py` |",
    ]
    print("\n".join(rows))
    print(breakdown)
    if a.record:
        res = ROOT / "bench" / "RESULTS.md"
        text = res.read_text()
        marker = "\n## Notes"
        text = text.replace(marker, "\n".join(rows) + "\n" + marker, 1) if marker in text else text + "\n".join(rows) + "\n"
        res.write_text(text)


if __name__ == "__main__":
    main()
