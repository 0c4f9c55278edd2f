#!/usr/bin/env python3
"""Concurrent readers of the daemon's JSON API (issue 6): N threads, each with its own
keep-alive connection, loop over a mix of routes (runs pages sorted by a metric, a run, its
downsampled metric history, the project page) for D seconds. Prints requests, errors and
latency percentiles; exits 1 on any error.

    Benchmarks/api-readers.py --url http://127.0.0.1:PORT --project P --token T [--readers 50] [--seconds 30]
"""
import argparse
import http.client
import json
import random
import threading
import time
import urllib.parse

ap = argparse.ArgumentParser()
ap.add_argument("--url", required=True)
ap.add_argument("--project", required=True)
ap.add_argument("--token", required=True)
ap.add_argument("--readers", type=int, default=50)
ap.add_argument("--seconds", type=float, default=30)
args = ap.parse_args()
u = urllib.parse.urlparse(args.url)
headers = {"Authorization": "Bearer " + args.token}
base = "/api/v1/projects/" + args.project


def get(conn, path):
    conn.request("GET", path, headers=headers)
    r = conn.getresponse()
    body = r.read()
    return r.status, body


conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
status, body = get(conn, base + "/runs?limit=100&sort=-metrics.loss")
assert status == 200, body
ids = [r["id"] for r in json.loads(body)["runs"]]
curve = [r["id"] for r in json.loads(get(conn, base + "/runs?limit=1&filter=metrics.loss%3E-1&sort=-seconds")[1])["runs"]]
routes = [base + "/runs?limit=50&sort=-metrics.loss", base + "/runs?limit=50&sort=params.lr&filter=params.lr%3C0.001",
          base, base + "/runs?limit=50&cursor=o5000&sort=metrics.acc"]
routes += [base + "/runs/" + i for i in ids[:20]]
routes += [base + "/runs/" + i + "/metrics/loss?points=1000" for i in ids[:5]]
lock = threading.Lock()
latencies, errors, count = [], [], [0]
stop = time.time() + args.seconds


def reader(k):
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    rnd = random.Random(k)
    while time.time() < stop:
        path = rnd.choice(routes)
        t = time.perf_counter()
        try:
            s, b = get(c, path)
            ok = s == 200
        except Exception as e:  # noqa: BLE001 - every failure counts
            ok, s, b = False, str(e), b""
            c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        dt = time.perf_counter() - t
        with lock:
            count[0] += 1
            latencies.append(dt)
            if not ok:
                errors.append((path, s, b[:200]))


threads = [threading.Thread(target=reader, args=(k,)) for k in range(args.readers)]
for t in threads:
    t.start()
for t in threads:
    t.join()
latencies.sort()
p = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000  # noqa: E731
print(f"readers={args.readers} seconds={args.seconds:.0f} requests={count[0]} errors={len(errors)} "
      f"rate={count[0] / args.seconds:.0f}/s p50={p(0.5):.1f}ms p99={p(0.99):.1f}ms max={latencies[-1] * 1000:.1f}ms")
for e in errors[:5]:
    print("error:", e)
raise SystemExit(1 if errors else 0)
