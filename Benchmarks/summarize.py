#!/usr/bin/env python3
"""Turns Benchmarks/bench.sh's results.tsv into the Markdown tables of Docs/performance.md."""
import csv
import sys
from collections import defaultdict

rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
t = defaultdict(dict)  # (ds, tool) -> step -> row
for r in rows:
    t[(r["ds"], r["tool"])][r["step"]] = r

def wall(ds, tool, step):
    r = t[(ds, tool)].get(step)
    return float(r["wall_s"]) if r and r["wall_s"] and r["exit"] == "0" else None

def val(ds, tool, step):
    r = t[(ds, tool)].get(step)
    return int(r["bytes"]) if r and r["bytes"] else None

def rss(ds, tool, step):
    r = t[(ds, tool)].get(step)
    return int(r["maxrss_kb"]) / 1024 if r and r["maxrss_kb"] else None

def f(x, fmt="%.2f"):
    return "–" if x is None else fmt % x

tools = []
for (ds, tool) in t:
    if tool not in tools and ds != "BIG":
        tools.append(tool)
SIZE = {"A": 1 << 30, "B": 1 << 30}
out = []
bars = []

for ds in ["A", "B"]:
    if not any(k[0] == ds for k in t):
        continue
    out.append(f"\n### {ds} — 1 GiB {'random' if ds == 'A' else 'float32 weights'}\n")
    out.append("| tool | ingest v1 s (×sha) | new MB shift (% of file) | new MB in-place (% of file) | ingest in-place s | restore/clone s (×sha) | ingest RSS MiB | restore RSS MiB | verified |")
    out.append("|---|---|---|---|---|---|---|---|---|")
    for tool in tools:
        if (ds, tool) not in t:
            continue
        sha = wall(ds, tool, "ref_sha256")
        i1 = wall(ds, tool, "ingest_v1")
        cl = wall(ds, tool, "clone")
        ns, ni = val(ds, tool, "new_bytes_v2s"), val(ds, tool, "new_bytes_v2i")
        r = lambda x: None if x is None or not sha else x / sha
        pct = lambda b: "–" if b is None else "%.2f (%.3f%%)" % (b / 1e6, 100 * b / SIZE[ds])
        out.append(f"| {tool} | {f(i1)} ({f(r(i1))}×) | {pct(ns)} | {pct(ni)} | {f(wall(ds, tool, 'ingest_v2i'))} | {f(cl)} ({f(r(cl))}×) | "
                   f"{f(rss(ds, tool, 'ingest_v1'), '%.0f')} | {f(rss(ds, tool, 'clone'), '%.0f')} | {'yes' if val(ds, tool, 'clone_ok') == 1 else 'NO'} |")
    sha = wall(ds, "trove", "ref_sha256")
    if sha:
        peers = [x for x in tools if x != "trove" and (ds, x) in t]
        def best(step, key=lambda tool, step: wall(ds, tool, step)):
            vals = [(key(p, step), p) for p in peers if key(p, step) is not None]
            return min(vals) if vals else (None, "-")
        i1 = wall(ds, "trove", "ingest_v1"); cl = wall(ds, "trove", "clone")
        bi = best("ingest_v1", lambda p, s: (wall(ds, p, s) or 0) / (wall(ds, p, "ref_sha256") or 1) if wall(ds, p, s) else None)
        bc = best("clone", lambda p, s: (wall(ds, p, s) or 0) / (wall(ds, p, "ref_sha256") or 1) if wall(ds, p, s) else None)
        bars.append((f"{ds} ingest ≤ 1.5× sha256", f"{i1 / sha:.2f}×", f"{bi[1]} {f(bi[0])}×", i1 / sha <= 1.5))
        ni = val(ds, "trove", "new_bytes_v2i"); ns = val(ds, "trove", "new_bytes_v2s")
        bn = best("new_bytes_v2i", lambda p, s: val(ds, p, s))
        bs = best("new_bytes_v2s", lambda p, s: val(ds, p, s))
        bars.append((f"{ds} in-place v2 new bytes ≤ 1.5 %", f"{100 * ni / SIZE[ds]:.3f}%", f"{bn[1]} {100 * (bn[0] or 0) / SIZE[ds]:.3f}%", 100 * ni / SIZE[ds] <= 1.5))
        bars.append((f"{ds} shift v2 new bytes ≤ 0.05 %", f"{100 * ns / SIZE[ds]:.4f}%", f"{bs[1]} {100 * (bs[0] or 0) / SIZE[ds]:.4f}%", 100 * ns / SIZE[ds] <= 0.05))
        bars.append((f"{ds} restore ≤ 1.5× sha256", f"{cl / sha:.2f}×", f"{bc[1]} {f(bc[0])}×", cl / sha <= 1.5))
        ir, cr = rss(ds, "trove", "ingest_v1"), rss(ds, "trove", "clone")
        if ds == "A":
            bars.append(("A peak RSS ingest / restore ≤ 128 MiB", f"{ir:.0f} / {cr:.0f} MiB", "git-lfs ~25 MiB", ir <= 128 and cr <= 128))

if any(k[0] == "C" for k in t):
    out.append("\n### C — 20,000 files, 1–64 KiB\n")
    out.append("| tool | ingest v1 s (×sha) | stored MB | ingest v2 s | new MB v2 | restore/clone s | ingest RSS MiB | verified |")
    out.append("|---|---|---|---|---|---|---|---|")
    for tool in tools:
        if ("C", tool) not in t:
            continue
        sha = wall("C", tool, "ref_sha256")
        i1 = wall("C", tool, "ingest_v1")
        out.append(f"| {tool} | {f(i1)} ({f(i1 / sha if i1 and sha else None)}×) | {f((val('C', tool, 'new_bytes_v1') or 0) / 1e6, '%.1f')} | "
                   f"{f(wall('C', tool, 'ingest_v2i'))} | {f((val('C', tool, 'new_bytes_v2i') or 0) / 1e6, '%.1f')} | {f(wall('C', tool, 'clone'))} | "
                   f"{f(rss('C', tool, 'ingest_v1'), '%.0f')} | {'yes' if val('C', tool, 'clone_ok') == 1 else 'NO'} |")
    ti, dv = wall("C", "trove", "ingest_v1"), wall("C", "dvc", "ingest_v1")
    if ti and dv:
        bars.append(("C add+commit ≤ 0.3× dvc add", f"{ti:.2f} s = {ti / dv:.2f}×", f"dvc {dv:.2f} s", ti / dv <= 0.3))
    ts, rs = val("C", "trove", "new_bytes_v1"), val("C", "restic", "new_bytes_v1")
    if ts and rs:
        bars.append(("C stored bytes ≤ restic", f"{ts / 1e6:.1f} MB", f"restic {rs / 1e6:.1f} MB", ts <= rs))
    tc, rc = wall("C", "trove", "clone"), wall("C", "restic", "clone")
    if tc and rc:
        bars.append(("C restore ≤ 0.7× restic restore", f"{tc:.2f} s = {tc / rc:.2f}×", f"restic {rc:.2f} s", tc / rc <= 0.7))
    st = wall("C", "trove", "status")
    if st is not None:
        bars.append(("C `trove status`, nothing changed ≤ 0.3 s", f"{st:.2f} s", "–", st <= 0.3))
    pk = val("C", "trove", "pack_files")
    if pk is not None:
        bars.append(("C pack + index files < 100", f"{pk}", "–", pk < 100))

if ("BIG", "trove") in t:
    a = rss("A", "trove", "ingest_v1") if ("A", "trove") in t else None
    b = rss("BIG", "trove", "ingest_4g")
    bars.append(("4 GiB ingest RSS ≤ 1 GiB ingest RSS (+10 %)", f"{b:.0f} MiB", f"1 GiB: {f(a, '%.0f')} MiB", a is not None and b <= a * 1.1))

print("## Bars\n")
print("| bar | Trove | best peer (same run) | pass |")
print("|---|---|---|---|")
for name, tv, pv, ok in bars:
    print(f"| {name} | {tv} | {pv} | {'yes' if ok else 'NO'} |")
print("\n## Detail")
print("\n".join(out))
