#!/usr/bin/env python3
"""Inner-loop benchmark: `berth dev` on the bundled example, save -> new pods Ready.

Copies examples/hello into a fresh git repository (image in its own registry repository),
starts `berth dev -o json` into a fresh namespace, then changes web/index.html SAVES times and
measures, for each save, the time from the write until berth reports the run finished (built,
pushed, deployed, every pod of the new revision Ready). Prints median and p90; --record
writes the row to bench/RESULTS.md.

Needs the test environment (testenv/berth-testenv up) and a release build of berth.
"""
import argparse, json, os, pathlib, shutil, signal, statistics, subprocess, sys, tempfile, time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
sys.path.insert(0, str(ROOT / "bench"))
from deploy import env_vars  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--saves", type=int, default=20)
    ap.add_argument("--record", action="store_true")
    ap.add_argument("--real-node", action="store_true",
                    help="deploy onto the environment's real node and time each save until "
                         "the new page is served over HTTP through the Service")
    args = ap.parse_args()
    env = env_vars()
    berth = ROOT / "target/release/berth"
    if not berth.exists():
        sys.exit("build berth first: cargo build --release --bin berth")
    work = pathlib.Path(tempfile.mkdtemp(prefix="berth-dev-bench-"))
    proj = work / "hello"
    shutil.copytree(ROOT / "examples/hello", proj)
    repo = f"{env['BERTH_REGISTRY']}/bench/dev-{os.getpid()}"
    for f in ["berth.yaml", "k8s/app.yaml"]:
        p = proj / f
        p.write_text(p.read_text().replace("127.0.0.1:15000/examples/hello-web", repo))
    git = ["git", "-C", str(proj), "-c", "user.name=b", "-c", "user.email=b@example.invalid"]
    subprocess.run(git + ["init", "-q", "-b", "main"], check=True)
    subprocess.run(git + ["add", "-A"], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "bench"], check=True)
    ns = f"bench-dev-{os.getpid()}"
    env["BERTH_STORE"] = str(work / "store")
    if args.real_node:
        from deploy import REAL_NODE_ANNOTATIONS
        subprocess.run(["kubectl", "create", "namespace", ns], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        subprocess.run(["kubectl", "annotate", "namespace", ns, *REAL_NODE_ANNOTATIONS],
                       env=env, check=True, stdout=subprocess.DEVNULL)
    proc = subprocess.Popen([str(berth), "dev", "-c", str(proj / "berth.yaml"), "-n", ns, "-o", "json"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)

    def wait_result():
        for line in proc.stdout:
            try:
                doc = json.loads(line)
            except json.JSONDecodeError:
                continue
            if "result" in doc:
                if doc["result"] != "ok":
                    sys.exit(f"run failed: {doc}")
                return doc
        sys.exit("berth dev exited")

    def served(want, deadline):
        """Until three answers in a row through the Service carry `want`."""
        ip = subprocess.run(["kubectl", "get", "svc", "hello", "-n", ns, "-o",
                             "jsonpath={.spec.clusterIP}"], env=env, check=True,
                            stdout=subprocess.PIPE, text=True).stdout.strip()
        in_a_row = 0
        while in_a_row < 3:
            if time.perf_counter() > deadline:
                sys.exit(f"{want!r} was not served through Service hello ({ip}) in time")
            try:
                with NO_PROXY.open(f"http://{ip}/", timeout=2) as r:
                    body = r.read().decode()
            except OSError:
                body = ""
            if want in body:
                in_a_row += 1
            else:
                in_a_row = 0
                time.sleep(0.02)

    wait_result()  # the first run (cold build)
    times, ready = [], []
    for i in range(args.saves):
        time.sleep(0.3)
        t = time.perf_counter()
        (proj / "web/index.html").write_text(f"<h1>save {i}</h1>\n")
        doc = wait_result()
        ready.append(time.perf_counter() - t)
        if args.real_node:
            served(f"save {i}", t + 60)
        times.append(time.perf_counter() - t)
        if not doc.get("built"):
            sys.exit(f"save {i} did not rebuild: {doc}")
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    subprocess.run(["kubectl", "delete", "namespace", ns, "--wait=false"], env=env,
                   stdout=subprocess.DEVNULL)
    shutil.rmtree(work)
    times.sort()
    med = statistics.median(times)
    p90 = times[int(0.9 * (len(times) - 1))]
    if args.real_node:
        ready.sort()
        row = (f"| dev loop on the real node: save -> new page served over HTTP by the new pods "
               f"({args.saves} saves; p90 {p90:.2f} s; berth's run done at median "
               f"{statistics.median(ready):.2f} s) | {med:.2f} s | - (no Skaffold here) | - | - "
               f"| < 2 s median | `python3 bench/dev.py --saves {args.saves} --real-node` |")
        prefix = "| dev loop on the real node:"
    else:
        row = (f"| dev loop: save -> new pods Ready ({args.saves} saves; p90 {p90:.2f} s) | {med:.2f} s "
               f"| - (no Skaffold here) | - | - | < 2 s median | `python3 bench/dev.py --saves {args.saves}` |")
        prefix = "| dev loop: save"
    print(f"median {med:.3f}s p90 {p90:.3f}s min {times[0]:.3f}s max {times[-1]:.3f}s")
    print(row)
    if args.record:
        path = ROOT / "bench/RESULTS.md"
        lines = path.read_text().splitlines()
        table_end = max(i for i, l in enumerate(lines) if l.startswith("|"))
        lines = [l for l in lines if not l.startswith(prefix)]
        table_end = max(i for i, l in enumerate(lines) if l.startswith("|"))
        lines.insert(table_end + 1, row)
        path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
