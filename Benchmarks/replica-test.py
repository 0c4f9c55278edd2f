#!/usr/bin/env python3
"""Daemon replicas (issue 8): two `trove daemon`s on two ports over one S3 bucket (radosgw) and
one PostgreSQL, behind one address (a round-robin TCP balancer here, a Kubernetes Service in a
cluster). N clients push and fetch their own projects through that address for D seconds; in
rounds, all of them race to move one shared ref; halfway, one replica is killed with SIGKILL and
its clients' requests go to the other. Reports failed commands, race winners per round, and
`trove daemon fsck --full` of every project, as one JSON line last.

    Benchmarks/replica-test.py --s3 s3://BUCKET/PREFIX?endpoint=URL --metadata postgres://… \
        [--clients 16] [--seconds 60] [--trove PATH] [--scratch DIR]

The S3 credentials come from the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY).
"""
import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import free_port, load_test_setup, prepare_client, push_fetch_loop  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--s3", required=True)
ap.add_argument("--metadata", required=True)
ap.add_argument("--races", type=int, default=3)
args, T, S, run, env = load_test_setup(ap, "trove-replicas", "replica-test")
# `run` reads this same dictionary: the daemon commands find the shared backends in it.
env.update(TROVE_OBJECTS=args.s3, TROVE_METADATA=args.metadata)


# --- one address in front of the replicas: each connection goes to the next replica that accepts it.
class Balancer:
    def __init__(self, backends):
        self.backends = backends
        self.next = 0
        # Per replica: connections it took, and connections it refused (then sent to the next).
        self.taken = {p: 0 for p in backends}
        self.refused = {p: 0 for p in backends}
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()
        self.ready.wait()

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", self.port))
        self.ready.set()
        self.loop.run_forever()

    async def _serve(self, reader, writer):
        start = self.next
        self.next += 1
        for k in range(len(self.backends)):
            port = self.backends[(start + k) % len(self.backends)]
            try:
                up_r, up_w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1)
                self.taken[port] += 1
                break
            except (OSError, asyncio.TimeoutError):
                self.refused[port] += 1
                continue
        else:
            writer.close()
            return

        async def pipe(r, w):
            try:
                while True:
                    data = await r.read(1 << 16)
                    if not data:
                        break
                    w.write(data)
                    await w.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                try:
                    w.close()
                except OSError:
                    pass

        await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))


# --- projects and tokens, in PostgreSQL through the CLI (any replica's root would do).
admin_root = os.path.join(S, "admin")
tokens = {}
for i in range(args.clients):
    run([T, "daemon", "project", "create", f"p{i}", "--root", admin_root], S)
    tokens[i] = run([T, "daemon", "token", "create", "--root", admin_root, "--project", f"p{i}", "--role", "write"], S).stdout.strip()
run([T, "daemon", "project", "create", "race", "--root", admin_root], S)
race_token = run([T, "daemon", "token", "create", "--root", admin_root, "--project", "race", "--role", "write"], S).stdout.strip()

replicas = []
for name in ("a", "b"):
    port = free_port()
    p = subprocess.Popen([T, "daemon", "--root", os.path.join(S, "replica-" + name), "--listen", f"127.0.0.1:{port}"], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    if "listening" not in line:
        raise SystemExit(f"replica {name} did not start: {line} {p.stderr.read()}")
    replicas.append((name, port, p))
lb = Balancer([port for _, port, _ in replicas])
url = lambda project: f"http://127.0.0.1:{lb.port}/{project}"

# Each client: a working store with a model and small files, pushed once before the clock starts.
rng = random.Random(20261128)
for i in range(args.clients):
    prepare_client(run, T, i, S, url(f"p{i}"), tokens[i], rng, 2 << 20, 20)

# The race: every client holds a clone of `race` and commits on the same tip.
base = os.path.join(S, "race-base")
os.makedirs(base)
run([T, "init", "-q"], base)
with open(os.path.join(base, "README"), "w") as f:
    f.write("race\n")
run([T, "add", "-q", "."], base)
run([T, "commit", "-q", "-m", "base"], base)
run([T, "push", "-q", url("race"), "heads/main"], base, {"TROVE_TOKEN": race_token})
racers = []
for i in range(args.clients):
    d = os.path.join(S, f"race{i}")
    run([T, "clone", "-q", url("race"), d], S, {"TROVE_TOKEN": race_token})
    racers.append(d)

failures, ops, races = [], {"push": 0, "fetch": 0}, []
lock = threading.Lock()
start = time.time()
stop = start + args.seconds
kill_at = start + args.seconds / 2
killed = {}


def race_round(n):
    """Every racer commits on the tip it has and pushes at once: exactly one may win."""
    for i, d in enumerate(racers):
        run([T, "fetch", "-q"], d, {"TROVE_TOKEN": race_token})
        run([T, "checkout", "-q", "-f", "-b", f"r{n}", "remotes/origin/heads/main"], d)
        with open(os.path.join(d, f"r{n}-{i}"), "w") as f:
            f.write(f"{n} {i}\n")
        run([T, "add", "-q", "."], d)
        run([T, "commit", "-q", "-m", f"race {n} by {i}"], d)
    barrier = threading.Barrier(len(racers))
    results = [None] * len(racers)

    def push(i):
        barrier.wait()
        results[i] = run([T, "push", "-q", "origin", f"heads/r{n}:heads/main"], racers[i], {"TROVE_TOKEN": race_token}, check=False)

    ts = [threading.Thread(target=push, args=(i,)) for i in range(len(racers))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    won = [i for i, r in enumerate(results) if r.returncode == 0]
    lost_ok = all(r.returncode == 5 and ("non-fast-forward" in r.stderr or "moved" in r.stderr or "fetch first" in r.stderr)
                  for i, r in enumerate(results) if r.returncode != 0)
    races.append({"round": n, "winners": len(won), "losers_told_to_fetch": lost_ok,
                  "errors": [r.stderr.strip()[:200] for r in results if r.returncode not in (0, 5)]})


def client(i):
    push_fetch_loop(run, T, i, os.path.join(S, f"c{i}"), os.path.join(S, f"r{i}"), tokens[i], 2 << 20, 32 << 10, stop, lock, failures, ops)


def killer():
    while time.time() < kill_at:
        time.sleep(0.05)
    name, _, p = replicas[0]
    p.send_signal(signal.SIGKILL)
    p.wait()
    killed["replica"] = name
    killed["at"] = round(time.time() - start, 1)


threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)] + [threading.Thread(target=killer)]
for t in threads:
    t.start()
for n in range(args.races):
    race_round(n)
    time.sleep(max(0, (stop - time.time()) / (args.races - n + 1)))
for t in threads:
    t.join()

# Every client's last commit is its project's main, as a fresh fetch through the survivor sees it.
lost = []
for i in range(args.clients):
    w, r = os.path.join(S, f"c{i}"), os.path.join(S, f"r{i}")
    run([T, "remote", "add", "survivor", f"http://127.0.0.1:{replicas[1][1]}/p{i}"], r, check=False)
    run([T, "fetch", "-q", "survivor"], r, {"TROVE_TOKEN": tokens[i]}, check=False)
    mine = open(os.path.join(w, ".trove", "refs", "heads", "main")).read().strip()
    there = os.path.join(r, ".trove", "refs", "remotes", "survivor", "heads", "main")
    if not os.path.exists(there) or open(there).read().strip() != mine:
        lost.append(i)

survivor = replicas[1][2]
hwm = [line for line in open(f"/proc/{survivor.pid}/status") if line.startswith("VmHWM")][0].split()[1]
survivor.send_signal(signal.SIGTERM)
survivor.wait(timeout=30)

# What the replicas share, checked from a fresh root: packs in S3, refs in PostgreSQL.
bad = []
for project in [f"p{i}" for i in range(args.clients)] + ["race"]:
    res = run([T, "daemon", "fsck", project, "--full", "--root", os.path.join(S, "fsck")], S, check=False)
    if res.returncode != 0:
        bad.append((project, (res.stdout + res.stderr)[-300:]))
summary = {
    "clients": args.clients, "seconds": args.seconds, "pushes": ops["push"], "fetches": ops["fetch"],
    "failed": len(failures), "killed": killed, "races": races,
    "fsck_clean": not bad, "fsck_problems": bad, "lost_heads": lost, "survivor_peak_rss_mib": int(hwm) // 1024,
    "connections": {name: {"taken": lb.taken[port], "refused": lb.refused[port]} for name, port, _ in replicas},
}
print(f"{args.clients} clients, {args.seconds:.0f} s, two replicas behind one address: {ops['push']} pushes, {ops['fetch']} fetches, "
      f"{len(failures)} failed; replica {killed.get('replica')} killed at {killed.get('at')} s")
print("races (winners per round): " + ", ".join(str(r["winners"]) for r in races))
print("connections per replica: " + ", ".join(f"{n} took {lb.taken[p]}, refused {lb.refused[p]}" for n, p, _ in replicas))
print(f"daemon fsck --full of {args.clients + 1} projects: {'all clean' if not bad else bad}; heads lost: {lost}")
for f in failures[:10]:
    print("failure:", f)
print(json.dumps(summary))
