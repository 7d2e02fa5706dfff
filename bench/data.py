#!/usr/bin/env python3
"""Masked logical copy benchmark: berth data copy vs plain pg_dump | psql, side by side.

One source database of ROWS rows over three tables with foreign keys (users with personal
columns, orders referencing users by id and by email, events with free text nobody masks) is
copied into a fresh target database, each round, by:

  - pg_dump --format=plain --clean --if-exists --no-owner --no-privileges SRC
      | psql --single-transaction -v ON_ERROR_STOP=1 -f - DST          (the anchor: no masking)
  - berth data copy --from-url-env ... --mask users.email=email ...    (same flags, plus the
      masker: 5 masked columns, ~40% of the rows' cells rewritten)

Medians over the rounds (order alternating), rows/s and MB/s of the dump stream, and the ratio
berth/anchor are printed; with --record they are added to bench/RESULTS.md. Target: the
masked copy costs less than 1.5x the unmasked one.

Needs PostgreSQL (BERTH_TEST_POSTGRES_URL, a superuser URL; the test environment serves one)
and a release build of berth (cargo build --release --bin berth).
"""
import argparse, json, os, pathlib, statistics, subprocess, sys, time

ROOT = pathlib.Path(__file__).resolve().parent.parent
MASKS = ["users.email=email", "users.name=name", "users.phone=phone", "users.note=text",
         "orders.customer_email=email"]


def admin_url():
    url = os.environ.get("BERTH_TEST_POSTGRES_URL")
    if url:
        return url
    home = os.environ.get("BERTH_TESTENV_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "berth-testenv")
    path = pathlib.Path(home, "run", "env")
    if path.exists():
        for line in path.read_text().splitlines():
            k, _, v = line.partition("=")
            if k == "BERTH_TEST_POSTGRES_URL":
                return v
    sys.exit("no PostgreSQL: start the test environment (testenv/berth-testenv up) or set "
             "BERTH_TEST_POSTGRES_URL to a superuser URL")


def psql(url, sql):
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql, url], check=True,
                   stdout=subprocess.DEVNULL)


def db_url(admin, name):
    return admin.rsplit("/", 1)[0] + "/" + name


def seed(admin, name, rows):
    users, orders = rows // 4, rows // 2
    events = rows - users - orders
    psql(admin, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    psql(admin, f"CREATE DATABASE {name}")
    psql(db_url(admin, name), f"""
      CREATE TABLE users (id int PRIMARY KEY, email text UNIQUE NOT NULL, name text, phone text,
        note text, created timestamptz NOT NULL);
      CREATE TABLE orders (id int PRIMARY KEY, user_id int NOT NULL REFERENCES users(id),
        customer_email text NOT NULL REFERENCES users(email), total numeric(10,2), placed date);
      CREATE TABLE events (id bigint PRIMARY KEY, order_id int REFERENCES orders(id),
        kind text, payload text);
      INSERT INTO users SELECT i, 'customer' || i || '@mail.example.org', 'First' || i || ' Last',
        '+49 30 ' || (1000000 + i), 'likes tea, ' || md5(i::text), now() FROM generate_series(1, {users}) i;
      INSERT INTO orders SELECT i, 1 + i % {users}, 'customer' || (1 + i % {users}) || '@mail.example.org',
        (i % 1000) / 7.0, date '2024-01-01' + i % 365 FROM generate_series(1, {orders}) i;
      INSERT INTO events SELECT i, 1 + i % {orders}, 'shipped', repeat(md5(i::text), 2)
        FROM generate_series(1, {events}) i;""")
    psql(db_url(admin, name), "VACUUM ANALYZE")


def timed(cmd, env, shell=False):
    t = time.monotonic()
    out = subprocess.run(cmd, env=env, shell=shell, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    if out.returncode != 0:
        sys.exit(f"failed: {cmd}\n{out.stderr}")
    return time.monotonic() - t, out.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--berth", default=str(ROOT / "target/release/berth"))
    ap.add_argument("--record", action="store_true")
    a = ap.parse_args()
    admin = admin_url()
    src, dst = "berth_bench_src", "berth_bench_dst"
    print(f"seeding {a.rows} rows ...", flush=True)
    seed(admin, src, a.rows)
    env = dict(os.environ, SRC=db_url(admin, src), DST=db_url(admin, dst),
               BERTH_MASK_KEY="bench-masking-key-0123456789")
    anchor = ("pg_dump --format=plain --clean --if-exists --no-owner --no-privileges "
              '"$SRC" | psql -X -q --single-transaction -v ON_ERROR_STOP=1 -f - "$DST" >/dev/null')
    berth = [a.berth, "data", "copy", "--from-url-env", "SRC", "--to-url-env", "DST", "-o", "json"]
    for m in MASKS:
        berth += ["--mask", m]
    times = {"berth": [], "anchor": []}
    stats = None
    for r in range(a.rounds):
        order = ["berth", "anchor"] if r % 2 == 0 else ["anchor", "berth"]
        for tool in order:
            psql(admin, f"DROP DATABASE IF EXISTS {dst} WITH (FORCE)")
            psql(admin, f"CREATE DATABASE {dst}")
            if tool == "berth":
                t, out = timed(berth, env)
                stats = json.loads(out.strip().splitlines()[-1])
            else:
                t, _ = timed(anchor, env, shell=True)
            times[tool].append(t)
            print(f"round {r + 1} {tool:6} {t:6.2f} s", flush=True)
    psql(admin, f"DROP DATABASE IF EXISTS {dst} WITH (FORCE)")
    psql(admin, f"DROP DATABASE IF EXISTS {src} WITH (FORCE)")
    mb, rows = stats["bytes"] / 1e6, stats["rows"]
    b, an = statistics.median(times["berth"]), statistics.median(times["anchor"])
    ratio = b / an
    print(f"berth  median {b:.2f} s  {rows / b:,.0f} rows/s  {mb / b:.1f} MB/s "
          f"({stats['masked_cells']:,} masked cells)")
    print(f"anchor median {an:.2f} s  {rows / an:,.0f} rows/s  {mb / an:.1f} MB/s")
    print(f"ratio {ratio:.2f} (target < 1.5)")
    if a.record:
        cmd = f"`python3 bench/data.py --rounds {a.rounds}`"
        row = (f"| masked copy of {rows:,} rows / {mb:.0f} MB, 3 tables with FKs "
               f"({rows / b:,.0f} rows/s, {mb / b:.1f} MB/s; anchor {rows / an:,.0f} rows/s) "
               f"| {b:.2f} s | pg_dump \\| psql (unmasked) | {an:.2f} s | {ratio:.2f} | < 1.5 | {cmd} |")
        p = ROOT / "bench/RESULTS.md"
        text = p.read_text()
        marker = "\n## Notes"
        i = text.index(marker)
        p.write_text(text[:i].rstrip("\n") + "\n" + row + "\n" + text[i:])
        print("recorded in bench/RESULTS.md")


if __name__ == "__main__":
    main()
