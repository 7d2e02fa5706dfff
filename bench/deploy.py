#!/usr/bin/env python3
"""Deploy benchmark: berth vs kubectl and helm, side by side in one run.

A 200-object release (50 services x Deployment, Service, ConfigMap, Ingress) is deployed
into a fresh namespace of the test environment and waited for, by:

  - berth deploy                                   (apply in phases + watch readiness)
  - kubectl apply --server-side + kubectl rollout status for each Deployment
  - helm upgrade --install --wait                  (same objects as a chart)

and then redeployed unchanged (no-op) by berth and by helm. Each measure runs ROUNDS times;
medians and ratios are printed and, with --record, written to bench/RESULTS.md.

Needs the test environment (testenv/berth-testenv up) and a release build of berth
(cargo build --release --bin berth).
"""
import argparse, os, pathlib, shutil, statistics, subprocess, sys, tempfile, time

ROOT = pathlib.Path(__file__).resolve().parent.parent
SERVICES = 50


def env_vars():
    home = os.environ.get("BERTH_TESTENV_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "berth-testenv")
    path = pathlib.Path(home, "run", "env")
    if not path.exists():
        sys.exit(f"berth's test environment is not running (no {path}).\n"
                 "start it with: testenv/berth-testenv up")
    env = dict(os.environ)
    for line in path.read_text().splitlines():
        k, _, v = line.partition("=")
        env[k] = v.replace("$PATH", os.environ["PATH"])
    return env


REAL_NODE_ANNOTATIONS = [
    "scheduler.alpha.kubernetes.io/node-selector=berth.dev/node=real",
    'scheduler.alpha.kubernetes.io/defaultTolerations=[{"key":"berth.dev/node","operator":"Equal","value":"real","effect":"NoSchedule"}]',
]


def objects(i, real_node=False):
    n = f"svc{i:02d}"
    # On the real node the pods really run: a web server that answers its readiness probe,
    # one replica each (50 pods), a short grace period so deleted namespaces go quickly.
    replicas = 1 if real_node else 2
    container = ("""      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: docker.io/library/busybox:latest
        command: ["httpd", "-f", "-p", "8080", "-h", "/etc"]
        readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}"""
                 if real_node else """      containers:
      - name: web
        image: docker.io/library/busybox:latest""")
    return f"""apiVersion: v1
kind: ConfigMap
metadata: {{name: {n}-config}}
data: {{GREETING: "hello {n}"}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {n}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {n}}}}}
  template:
    metadata: {{labels: {{app: {n}}}}}
    spec:
{container}
        envFrom: [{{configMapRef: {{name: {n}-config}}}}]
---
apiVersion: v1
kind: Service
metadata: {{name: {n}}}
spec:
  selector: {{app: {n}}}
  ports: [{{port: 80, targetPort: 8080}}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: {n}}}
spec:
  rules:
  - http:
      paths:
      - path: /{n}
        pathType: Prefix
        backend: {{service: {{name: {n}, port: {{number: 80}}}}}}
"""


def sh(cmd, env, **kw):
    r = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
    if r.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{r.stdout}\n{r.stderr}")
    return r


def timed(cmds, env):
    t = time.perf_counter()
    for c in cmds:
        sh(c, env)
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--record", action="store_true", help="write rows to bench/RESULTS.md")
    ap.add_argument("--real-node", action="store_true",
                    help="run the pods on the environment's real node (50 pods that really start)")
    args = ap.parse_args()
    env = env_vars()
    berth = str(ROOT / "target/release/berth")
    if not os.path.exists(berth):
        sys.exit("build berth first: cargo build --release --bin berth")
    work = pathlib.Path(tempfile.mkdtemp(prefix="berth-bench-"))
    manifests = work / "manifests"
    manifests.mkdir()
    for i in range(SERVICES):
        (manifests / f"svc{i:02d}.yaml").write_text(objects(i, args.real_node))
    chart = work / "chart"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: bench\nversion: 0.1.0\n")
    for f in manifests.iterdir():
        shutil.copy(f, chart / "templates" / f.name)
    deployments = [f"svc{i:02d}" for i in range(SERVICES)]

    results = {k: [] for k in ["berth", "kubectl", "helm", "berth-noop", "helm-noop"]}
    for r in range(args.rounds):
        suffix = f"{os.getpid()}-{r}"
        ns = {k: f"bench-{k}-{suffix}" for k in ["berth", "kubectl", "helm"]}
        for n in ns.values():
            sh(["kubectl", "create", "namespace", n], env)
            if args.real_node:
                sh(["kubectl", "annotate", "namespace", n, *REAL_NODE_ANNOTATIONS], env)
        runs = {
            "berth": [[berth, "deploy", "-r", "bench", "-n", ns["berth"], "-f", str(manifests),
                       "--timeout", "5m"]],
            "kubectl": [["kubectl", "apply", "--server-side", "-n", ns["kubectl"], "-f",
                         str(manifests)]]
            + [["kubectl", "rollout", "status", "-n", ns["kubectl"], f"deployment/{d}",
                "--timeout=5m"] for d in deployments],
            "helm": [["helm", "upgrade", "--install", "bench", str(chart), "-n", ns["helm"],
                      "--wait", "--timeout", "5m"]],
        }
        # Rotate the order each round: whoever runs first meets a quieter control plane.
        order = ["berth", "kubectl", "helm"]
        order = order[r % 3:] + order[:r % 3]
        for tool in order:
            results[tool].append(timed(runs[tool], env))
            if tool == "berth":
                results["berth-noop"].append(timed([[berth, "deploy", "-r", "bench", "-n", ns["berth"],
                                                     "-f", str(manifests)]], env))
            if tool == "helm":
                results["helm-noop"].append(timed([["helm", "upgrade", "--install", "bench", str(chart),
                                                    "-n", ns["helm"], "--wait"]], env))
            if args.real_node:
                # One node: the next tool starts on an empty node, not beside 50 running pods.
                sh(["kubectl", "delete", "namespace", ns[tool], "--wait=true", "--timeout=5m"], env)
        # Wait until the namespaces are gone so the next round starts on a quiet cluster.
        if not args.real_node:
            sh(["kubectl", "delete", "namespace", *ns.values(), "--wait=true", "--timeout=5m"], env)
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in results.items()),
              flush=True)
    shutil.rmtree(work)

    med = {k: statistics.median(v) for k, v in results.items()}
    cmd = f"python3 bench/deploy.py --rounds {args.rounds}" + (" --real-node" if args.real_node else "")
    where = " on the real node (50 pods)" if args.real_node else ""
    rows = [
        (f"deploy 200 objects + wait (fresh namespace){where}", "berth", "kubectl apply --server-side + rollout status x50", "kubectl", "<= 0.5"),
        (f"deploy 200 objects + wait (fresh namespace){where}", "berth", "helm upgrade --install --wait", "helm", "-"),
        (f"no-op redeploy of 200 objects{where}", "berth-noop", "helm upgrade --install --wait (no change)", "helm-noop", "<= 0.2"),
    ]
    lines = []
    for measure, b, anchor, a, target in rows:
        ratio = med[b] / med[a]
        lines.append(f"| {measure} | {med[b]:.2f} s | {anchor} | {med[a]:.2f} s | {ratio:.2f} | {target} | `{cmd}` |")
    print("\n".join(lines))
    if args.record:
        path = ROOT / "bench/RESULTS.md"
        kept = [l for l in path.read_text().splitlines()
                if not any(l.startswith(f"| {r[0]} |") and r[2] in l for r in rows)]
        end = max(i for i, l in enumerate(kept) if l.startswith("|"))
        path.write_text("\n".join(kept[:end + 1] + lines + kept[end + 1:]) + "\n")

if __name__ == "__main__":
    main()
