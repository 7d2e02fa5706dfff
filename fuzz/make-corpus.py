#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets from berth's own examples and hand-made hostile
inputs. Run from fuzz/: python3 make-corpus.py (idempotent; the output is committed)."""
import glob, hashlib, io, json, os, tarfile

def put(target, data):
    if isinstance(data, str):
        data = data.encode()
    name = hashlib.sha1(data).hexdigest()[:16]
    with open(f"corpus/{target}/{name}", "wb") as f:
        f.write(data)

for p in glob.glob("../examples/**/Dockerfile*", recursive=True) + glob.glob("../crates/berth-build/tests/**/Dockerfile*", recursive=True):
    put("dockerfile", open(p, "rb").read())
put("dockerfile", "# syntax=docker/dockerfile:1\nFROM busybox AS a\nARG X=1\nRUN --mount=type=cache,target=/c <<EOF\necho $X\nEOF\nCOPY --from=a --chown=1:1 /a /b\nHEALTHCHECK CMD true\nONBUILD RUN x\n")
for p in glob.glob("../examples/**/.dockerignore", recursive=True):
    put("dockerignore", b"a/b/c\n" + open(p, "rb").read())
put("dockerignore", "node_modules/x\n**/*.log\n!keep.log\nnode_modules\n!node_modules/x\n")
for p in glob.glob("../examples/**/berth.yaml", recursive=True) + ["../crates/berth-config/berth.example.yaml"]:
    put("berth_yaml", open(p, "rb").read())

push = {"ref": "refs/heads/main", "before": "0" * 40, "after": "a" * 40,
        "repository": {"full_name": "team/web", "clone_url": "https://git.example/team/web.git"},
        "commits": [{"id": "a" * 40, "added": ["web/app.py"], "modified": [], "removed": []}]}
for pick in (0, 1, 2, 3):
    put("webhook", bytes([pick]) + json.dumps(push).encode())
put("webhook", bytes([0x80]) + b"payload=" + json.dumps(push).encode())

put("masker", b"\x00COPY public.users (id, email, name) FROM stdin;\n1\tfuzz-original@example.org\tAda\n\\.\n")
put("masker", b"\x01INSERT INTO `users` (`id`, `email`) VALUES (1,'fuzz-original@example.org'),(2,'b\\'c');\n")

BASE = "/tmp/berth-fuzz-layer"
def layer(entries):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for kind, name, arg in entries:
            ti = tarfile.TarInfo(name)
            ti.mtime = 0
            if kind == "sym":
                ti.type, ti.linkname = tarfile.SYMTYPE, arg
                t.addfile(ti)
            elif kind == "hard":
                ti.type, ti.linkname = tarfile.LNKTYPE, arg
                t.addfile(ti)
            elif kind == "dir":
                ti.type = tarfile.DIRTYPE
                t.addfile(ti)
            else:
                data = (arg or "x").encode()
                ti.size = len(data)
                t.addfile(ti, io.BytesIO(data))
    put("layer", buf.getvalue())

for link in (f"{BASE}/outside", "../outside", "../../tmp/berth-fuzz-layer/outside", "/"):
    inner = "tmp/berth-fuzz-layer/outside/" if link == "/" else ""
    layer([("sym", "x", link), ("file", f"x/{inner}.wh.victim", "")])
    layer([("sym", "x", link), ("file", f"x/{inner}.wh..wh..opq", "")])
    layer([("sym", "x", link), ("file", f"x/{inner}victim", "overwritten")])
    layer([("sym", "x", link), ("file", f"x/{inner}new", "planted")])
    layer([("sym", "x", link), ("dir", f"x/{inner}d", None)])
    layer([("sym", "x", link), ("sym", f"x/{inner}victim", "/etc/hostname")])
layer([("file", "../outside/victim", "overwritten")])
layer([("file", f"{BASE}/outside/victim", "overwritten")])
layer([("hard", "h", f"{BASE}/outside/victim"), ("file", "h", "through the hardlink")])
layer([("hard", "h", "../outside/victim"), ("file", "h", "through the hardlink")])
chain = [("sym", f"l{i}", f"l{i + 1}") for i in range(45)] + [("sym", "l45", f"{BASE}/outside"), ("file", "l0/.wh.victim", "")]
layer(chain)
layer([("dir", "etc", None), ("file", "etc/passwd", "root:x:0:0::/root:/bin/sh\n"), ("sym", "bin", "usr/bin"), ("file", "etc/.wh.passwd", "")])
