#!/usr/bin/env python3
"""Turns sync-bench.sh's results.tsv into the issue-3 bar table (Markdown)."""
import csv
import sys

rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
wall, val, ref_before = {}, {}, {}
last_ref = {}
for r in rows:
    key = (r["ds"], r["tool"], r["step"])
    if r["wall_s"]:
        wall[key] = float(r["wall_s"])
        if r["step"] == "ref_sha256":
            last_ref[(r["ds"], r["tool"])] = float(r["wall_s"])
        else:
            ref_before[key] = last_ref.get((r["ds"], r["tool"]))
    if r["bytes"]:
        val[key] = float(r["bytes"])


def w(ds, tool, step):
    return wall.get((ds, tool, step))


def fmt(x, unit="s"):
    return "–" if x is None else f"{x:.2f} {unit}".strip()


def ratio(a, b):
    return None if a is None or b in (None, 0) else a / b


bars = []


def bar(name, value, limit, shown, peer=""):
    ok = value is not None and value <= limit
    bars.append((name, shown, peer, "yes" if ok else ("–" if value is None else "NO")))


if ("A", "trove", "push_path_v1") in wall:
    lfs = w("A", "gitlfs", "push_v1")
    lfs_sync = (lfs or 0) + (w("A", "gitlfs", "sync_after_push_v1") or 0)
    p = w("A", "trove", "push_path_v1")
    h = w("A", "trove", "push_http_v1")
    r = ratio(p, lfs)
    bar("A push to a shared path ≤ 1.2× git lfs push", r, 1.2, f"{fmt(p)} = {r:.2f}×" if r else fmt(p), f"git lfs {fmt(lfs)} (+ sync {fmt(w('A', 'gitlfs', 'sync_after_push_v1'))})")
    rs = ratio(p + (w("A", "trove", "sync_after_push_path_v1") or 0), lfs_sync)
    bars.append(("  same, both with their sync (Trove fsyncs inside push)", f"{rs:.2f}×" if rs else "–", "", ""))
    r = ratio(h, lfs)
    bar("A push to the daemon (HTTP) ≤ 2.0× git lfs push", r, 2.0, f"{fmt(h)} = {r:.2f}×" if r else fmt(h), f"git lfs {fmt(lfs)}")
    share = ratio(val.get(("A", "trove", "remote_new_bytes_path_v2")), val.get(("A", "trove", "remote_bytes_path_v1")))
    bar("A v2 push sends ≤ 2 % of v1's bytes", share, 0.02, f"{share * 100:.2f} %" if share is not None else "–",
        f"git lfs {val.get(('A', 'gitlfs', 'remote_new_bytes_v2'), 0) / 1e6:.0f} MB")
    p2 = w("A", "trove", "push_path_v2")
    for peer in ("gitlfs", "dvc"):
        pr = w("A", peer, "push_v2")
        r = ratio(p2, pr)
        bar(f"A v2 push ≤ 0.1× {peer} v2 push", r, 0.1, f"{fmt(p2)} = {r:.3f}×" if r else fmt(p2), f"{peer} {fmt(pr)}")
    c = w("A", "trove", "clone_http")
    ref = ref_before.get(("A", "trove", "clone_http"))
    r = ratio(c, ref)
    bar("A clone + materialise from the daemon ≤ 2.0× sha256", r, 2.0, f"{fmt(c)} = {r:.2f}×" if r else fmt(c),
        f"git lfs clone {fmt(w('A', 'gitlfs', 'clone'))} = {ratio(w('A', 'gitlfs', 'clone'), ref_before.get(('A', 'gitlfs', 'clone'))) or 0:.1f}×")
if ("C", "trove", "push_http_v1") in wall:
    h = w("C", "trove", "push_http_v1")
    d = w("C", "dvc", "push_v1")
    r = ratio(h, d)
    bar("C push to the daemon ≤ 0.3× dvc push", r, 0.3, f"{fmt(h)} = {r:.2f}×" if r else fmt(h), f"dvc {fmt(d)}")
    n = w("C", "trove", "push_http_noop")
    bar("C no-op push ≤ 0.3 s", n, 0.3, fmt(n))
    share = ratio(val.get(("C", "trove", "partial_clone_bytes")), val.get(("C", "trove", "remote_bytes_http")))
    bar("C partial clone of 1 % of the paths moves ≤ 3 % of the bytes", share, 0.03,
        f"{share * 100:.2f} % in {fmt(w('C', 'trove', 'partial_clone'))}" if share is not None else "–")
    c = w("C", "trove", "clone_http")
    rr = w("C", "restic", "restore")
    r = ratio(c, rr)
    bar("C clone ≤ 0.7× restic restore", r, 0.7, f"{fmt(c)} = {r:.2f}×" if r else fmt(c), f"restic {fmt(rr)}")

print("| bar | Trove | peer (same run) | pass |")
print("|---|---|---|---|")
for b in bars:
    print("| " + " | ".join(b) + " |")
print()
print("| ds | tool | step | wall s | user s | sys s | max RSS MiB |")
print("|---|---|---|---|---|---|---|")
for r in rows:
    if r["wall_s"]:
        print(f"| {r['ds']} | {r['tool']} | {r['step']} | {r['wall_s']} | {r['user_s']} | {r['sys_s']} | {int(r['maxrss_kb']) // 1024} |")
    else:
        print(f"| {r['ds']} | {r['tool']} | {r['step']} | {r['bytes']} | | | |")
