#!/usr/bin/env python3
"""`trove serve` figures of issue 7 (Docs/performance.md §Serving), release build:
  1. overhead: 16 concurrent keep-alive connections (one asyncio process) for 15 s against the numpy
     fixture (fixtures/serving/worker.py, batches of 1, --workers W): per request, client latency minus
     the worker's own time for it (the `worker_ms` it reports); p50 and p99;
  2. batching: a worker whose cost is per batch (WORKER_BATCH_MS=20), one worker, 16 clients:
     throughput with --max-batch 1 and with --max-batch 16 --max-wait-ms 5, and their ratio.

    Benchmarks/serve-bench.py [--trove PATH] [--seconds 15]
"""
import argparse
import http.client
import json
import multiprocessing as mp
import os
import sys
import shutil
import subprocess
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import free_port  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ap = argparse.ArgumentParser()
ap.add_argument("--trove", default=os.path.join(ROOT, ".build", "release", "trove"))
ap.add_argument("--seconds", type=float, default=15)
args = ap.parse_args()
T = os.path.abspath(args.trove)
BODY = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]})


async def one_client(port, seconds, rows):
    """One keep-alive connection sending requests back to back (asyncio: 16 of them cost one
    process, so the load generator does not take the cores from what it measures)."""
    import asyncio
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    req = (f"POST /v2/models/toy/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           f"Content-Length: {len(BODY)}\r\n\r\n{BODY}").encode()
    end = time.time() + seconds
    while time.time() < end:
        t = time.perf_counter()
        writer.write(req)
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0].split(b":")[1])
        data = await reader.readexactly(length)
        dt = (time.perf_counter() - t) * 1000
        rows.append((dt, json.loads(data)["parameters"]["worker_ms"] if status == 200 else None))
    writer.close()


def client(port, seconds, out, connections):
    import asyncio
    rows = []

    async def main():
        await asyncio.gather(*(one_client(port, seconds, rows) for _ in range(connections)))
    asyncio.run(main())
    out.put(rows)


def run(store, serve_args, env_extra, clients=16, seconds=None):
    port = free_port()
    env = dict(os.environ, **env_extra)
    p = subprocess.Popen([T, "serve", "toy", "--listen", f"127.0.0.1:{port}"] + serve_args, cwd=store, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    for _ in range(300):
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/v2/models/toy/ready")
            if c.getresponse().status == 200:
                break
        except OSError:
            pass
        time.sleep(0.05)
    q = mp.Queue()
    procs = [mp.Process(target=client, args=(port, seconds or args.seconds, q, clients))]
    for pr in procs:
        pr.start()
    rows = []
    for _ in procs:
        rows += q.get()
    for pr in procs:
        pr.join()
    p.terminate()
    p.wait()
    return rows


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


scratch = tempfile.mkdtemp(prefix="trove-serve-bench-")
try:
    store = os.path.join(scratch, "w")
    os.makedirs(os.path.join(store, "toy"))
    for f in ("worker.py", "serving.json"):
        shutil.copy(os.path.join(ROOT, "fixtures", "serving", f), os.path.join(store, "toy", f))
    subprocess.run(["python3", "-c", "import numpy as np; np.savez('toy/weights.npz', W=np.arange(8, dtype=np.float32).reshape(4, 2), b=np.array([0.5, -0.5], dtype=np.float32))"], cwd=store, check=True)
    env = dict(os.environ, TROVE_PROGRESS="0", TROVE_AUTHOR_NAME="bench")
    subprocess.run([T, "init", "-q"], cwd=store, check=True, env=env)
    subprocess.run([T, "model", "import-hf", "toy", "--name", "toy", "-q"], cwd=store, check=True, env=env)

    for workers in (16, 4):
        rows = run(store, ["--workers", str(workers)], {})
        ok = [r for r in rows if r[1] is not None]
        over = [lat - w for lat, w in ok]
        print(f"overhead at concurrency 16, {workers} workers, {len(ok)} requests ({len(rows) - len(ok)} failed) in {args.seconds:.0f} s: "
              f"p50 {pct(over, 0.5):.3f} ms, p99 {pct(over, 0.99):.3f} ms (latency p50 {pct([r[0] for r in ok], 0.5):.3f} ms, worker p50 {pct([r[1] for r in ok], 0.5):.3f} ms)")
    # A worker with time of its own (5 ms a request, sleeping: the cores stay free): what is left
    # is the path through trove.
    rows = run(store, ["--workers", "16"], {"WORKER_ITEM_MS": "5"})
    ok = [r for r in rows if r[1] is not None]
    over = [lat - w for lat, w in ok]
    print(f"overhead at concurrency 16, 16 workers of 5 ms each, {len(ok)} requests: p50 {pct(over, 0.5):.3f} ms, p99 {pct(over, 0.99):.3f} ms "
          f"(latency p50 {pct([r[0] for r in ok], 0.5):.3f} ms, worker p50 {pct([r[1] for r in ok], 0.5):.3f} ms)")
    rows = run(store, ["--workers", "1"], {}, clients=1)
    ok = [r for r in rows if r[1] is not None]
    over = [lat - w for lat, w in ok]
    print(f"overhead at concurrency 1, 1 worker, {len(ok)} requests: p50 {pct(over, 0.5):.3f} ms, p99 {pct(over, 0.99):.3f} ms")

    one = run(store, ["--workers", "1", "--max-batch", "1"], {"WORKER_BATCH_MS": "20"}, seconds=10)
    batched = run(store, ["--workers", "1", "--max-batch", "16", "--max-wait-ms", "5"], {"WORKER_BATCH_MS": "20"}, seconds=10)
    a = len([r for r in one if r[1] is not None]) / 10
    b = len([r for r in batched if r[1] is not None]) / 10
    print(f"batching, one worker costing 20 ms per batch, 16 clients: {a:.0f} req/s unbatched, {b:.0f} req/s with --max-batch 16 --max-wait-ms 5: {b / a:.1f}x")
finally:
    shutil.rmtree(scratch, ignore_errors=True)
