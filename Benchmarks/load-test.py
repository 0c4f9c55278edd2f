#!/usr/bin/env python3
"""Daemon under load (issue 3): N clients push and pull their own projects for D seconds
against one `trove daemon`, while a prober times the refs listing. Reports failed commands,
refs-listing p50/p99 latency, daemon peak RSS, and `fsck --full --store` of every project.

    Benchmarks/load-test.py [--clients 16] [--seconds 60] [--trove PATH] [--scratch DIR]
"""
import argparse
import http.client
import os
import sys
import random
import signal
import subprocess
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import free_port, load_test_setup, prepare_client, push_fetch_loop  # noqa: E402

args, T, S, run, env = load_test_setup(argparse.ArgumentParser(), "trove-load", "load")


root = os.path.join(S, "daemon")
port = free_port()
tokens = {}
for i in range(args.clients):
    run([T, "daemon", "project", "create", f"p{i}", "--root", root], S)
    tokens[i] = run([T, "daemon", "token", "create", "--root", root, "--project", f"p{i}", "--role", "write"], S).stdout.strip()
daemon = subprocess.Popen([T, "daemon", "--root", root, "--listen", f"127.0.0.1:{port}"], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
daemon.stdout.readline()  # "listening on ..."
url = lambda i: f"http://127.0.0.1:{port}/p{i}"

# Each client: a working store with a few files, pushed once before the clock starts.
rng = random.Random(20261127)
for i in range(args.clients):
    prepare_client(run, T, i, S, url(i), tokens[i], rng, 4 << 20, 50)

stop = time.time() + args.seconds
failures, ops = [], {"push": 0, "fetch": 0}
lock = threading.Lock()


def client(i):
    push_fetch_loop(run, T, i, os.path.join(S, f"c{i}"), os.path.join(S, f"r{i}"), tokens[i], 4 << 20, 64 << 10, stop, lock, failures, ops)


latencies = []


def prober():
    k = 0
    while time.time() < stop:
        i = k % args.clients
        k += 1
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        t0 = time.perf_counter()
        c.request("GET", f"/p{i}/v1/refs", headers={"Authorization": f"Bearer {tokens[i]}"})
        resp = c.getresponse()
        resp.read()
        dt = time.perf_counter() - t0
        c.close()
        with lock:
            latencies.append(dt)
            if resp.status != 200:
                failures.append((i, "GET refs", resp.status, ""))
        time.sleep(0.05)


threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)] + [threading.Thread(target=prober)]
for t in threads:
    t.start()
for t in threads:
    t.join()
hwm = [l for l in open(f"/proc/{daemon.pid}/status") if l.startswith("VmHWM")][0].split()[1]
daemon.send_signal(signal.SIGTERM)
daemon.wait(timeout=30)
bad = []
for i in range(args.clients):
    res = run([T, "fsck", "--full", "--store", os.path.join(root, "projects", f"p{i}")], S, check=False)
    if res.returncode != 0:
        bad.append((i, res.stdout[-300:]))
latencies.sort()
q = lambda p: latencies[min(len(latencies) - 1, int(len(latencies) * p))] * 1000
print(f"clients {args.clients}, {args.seconds:.0f} s: {ops['push']} pushes, {ops['fetch']} fetches, {len(failures)} failed commands/requests")
print(f"refs listing: {len(latencies)} requests, p50 {q(0.5):.1f} ms, p99 {q(0.99):.1f} ms, max {latencies[-1] * 1000:.1f} ms")
print(f"daemon peak RSS {int(hwm) / 1024:.0f} MiB; daemon exit status after SIGTERM {daemon.returncode}")
print(f"fsck --full of {args.clients} projects: {'all clean' if not bad else bad}")
for f in failures[:10]:
    print("failure:", f)
