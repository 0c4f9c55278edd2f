#!/usr/bin/env python3
"""The smallest MLflow tracking server the mlflow 3.17 client accepts for mlflow_script.py.

An executable statement of the minimal response shapes in MLFLOW-TRAFFIC.md (in memory, stdlib
only; not a product). 404s everything the script does not need, including GET
/api/3.0/mlflow/server-info and POST /api/2.0/mlflow/logged-models/search, and answers
runs/update with {}. Also a dry-run target for Benchmarks/mlflow-bench.sh.

usage: mlflow_stub_server.py PORT [/PREFIX]   then MLFLOW_TRACKING_URI=http://127.0.0.1:PORT/PREFIX
"""
import json, os, sys, time, uuid, threading, urllib.parse, socket, http.server
PORT = int(sys.argv[1]); PREFIX = sys.argv[2] if len(sys.argv) > 2 and not sys.argv[2].startswith("--") else ""
EXPS = {}; RUNS = {}; FILES = {}; LOCK = threading.Lock()
def err(code, status, msg): return status, {"error_code": code, "message": msg}
def run_json(r):
    latest = {}
    for m in r["metrics"]:
        k = m["key"]; o = latest.get(k)
        if o is None or (m["step"], m["timestamp"]) >= (o["step"], o["timestamp"]): latest[k] = m
    info = {k: r[k] for k in ("run_id", "experiment_id", "run_name", "status", "start_time", "artifact_uri", "lifecycle_stage")}
    if r.get("end_time"): info["end_time"] = r["end_time"]
    return {"info": info, "data": {"metrics": list(latest.values()),
            "params": [{"key": k, "value": v} for k, v in r["params"].items()],
            "tags": [{"key": k, "value": v} for k, v in r["tags"].items()]}}
def api(method, path, q, body):
    b = json.loads(body) if body else {}
    if path == "/api/2.0/mlflow/experiments/get-by-name":
        e = [e for e in EXPS.values() if e["name"] == q.get("experiment_name")]
        return (200, {"experiment": e[0]}) if e else err("RESOURCE_DOES_NOT_EXIST", 404, "no such experiment")
    if path == "/api/2.0/mlflow/experiments/create":
        eid = str(len(EXPS) + 1); EXPS[eid] = {"experiment_id": eid, "name": b["name"], "lifecycle_stage": "active"}
        return 200, {"experiment_id": eid}
    if path == "/api/2.0/mlflow/experiments/get":
        e = EXPS.get(q.get("experiment_id"))
        return (200, {"experiment": e}) if e else err("RESOURCE_DOES_NOT_EXIST", 404, "no such experiment")
    if path == "/api/2.0/mlflow/runs/create":
        rid = uuid.uuid4().hex
        RUNS[rid] = {"run_id": rid, "experiment_id": b["experiment_id"], "run_name": b.get("run_name", ""), "status": "RUNNING",
                     "start_time": b.get("start_time", 0), "artifact_uri": f"mlflow-artifacts:/{b['experiment_id']}/{rid}/artifacts",
                     "lifecycle_stage": "active", "metrics": [], "params": {}, "tags": {t["key"]: t["value"] for t in b.get("tags", [])}}
        return 200, {"run": run_json(RUNS[rid])}
    rid = b.get("run_id") or q.get("run_id")
    if path.startswith("/api/2.0/mlflow/runs/") or path == "/api/2.0/mlflow/metrics/get-history":
        if path != "/api/2.0/mlflow/runs/search" and rid not in RUNS: return err("RESOURCE_DOES_NOT_EXIST", 404, "no such run")
    if path == "/api/2.0/mlflow/runs/log-metric":
        v = b["value"]; v = float(v) if isinstance(v, str) else v
        RUNS[rid]["metrics"].append({"key": b["key"], "value": v, "timestamp": b["timestamp"], "step": b.get("step", 0)}); return 200, {}
    if path == "/api/2.0/mlflow/runs/log-batch":
        for p in b.get("params", []): RUNS[rid]["params"][p["key"]] = p["value"]
        for t in b.get("tags", []): RUNS[rid]["tags"][t["key"]] = t["value"]
        for m in b.get("metrics", []): RUNS[rid]["metrics"].append({**m, "step": m.get("step", 0)})
        return 200, {}
    if path == "/api/2.0/mlflow/runs/set-tag": RUNS[rid]["tags"][b["key"]] = b["value"]; return 200, {}
    if path == "/api/2.0/mlflow/runs/get": return 200, {"run": run_json(RUNS[rid])}
    if path == "/api/2.0/mlflow/runs/update":
        RUNS[rid]["status"] = b.get("status", "FINISHED"); RUNS[rid]["end_time"] = b.get("end_time"); return 200, {}
    if path == "/api/2.0/mlflow/runs/search":
        return 200, {"runs": [run_json(r) for r in RUNS.values() if r["experiment_id"] in b["experiment_ids"]]}
    if path == "/api/2.0/mlflow/metrics/get-history":
        return 200, {"metrics": [m for m in RUNS[rid]["metrics"] if m["key"] == q.get("metric_key")]}
    if path == "/api/2.0/mlflow-artifacts/artifacts" and method == "GET":
        p = q.get("path", "").rstrip("/") + "/"
        names = sorted({k[len(p):].split("/")[0] for k in FILES if k.startswith(p)})
        files = [{"path": n, "is_dir": (p + n) not in FILES, **({"file_size": len(FILES[p + n])} if (p + n) in FILES else {})} for n in names]
        return 200, ({"files": files} if files else {})
    return err("ENDPOINT_NOT_FOUND", 404, f"not here: {method} {path}")
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def setup(self):
        super().setup(); self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    def h(self):
        u = urllib.parse.urlsplit(self.path); path = urllib.parse.unquote(u.path)
        if PREFIX:
            if not path.startswith(PREFIX + "/"): return self.send(404, "text/plain", b"no prefix")
            path = path[len(PREFIX):]
        q = dict(urllib.parse.parse_qsl(u.query))
        n = int(self.headers.get("Content-Length") or 0); body = self.rfile.read(n) if n else b""
        art = "/api/2.0/mlflow-artifacts/artifacts/"
        with LOCK:
            if path.startswith(art) and self.command == "PUT":
                FILES[path[len(art):]] = body; return self.send(200, None, b"")
            if path.startswith(art) and self.command == "GET":
                d = FILES.get(path[len(art):])
                return self.send(200, "application/octet-stream", d) if d is not None else self.send(404, "application/json", b'{"error_code":"RESOURCE_DOES_NOT_EXIST","message":"no"}')
            st, obj = api(self.command, path, q, body)
        self.send(st, "application/json", json.dumps(obj).encode())
    def send(self, st, ct, data):
        head = f"HTTP/1.1 {st} X\r\nContent-Length: {len(data)}\r\n" + (f"Content-Type: {ct}\r\n" if ct else "") + "\r\n"
        self.wfile.write(head.encode() + data)
    do_GET = do_POST = do_PUT = h
s = http.server.ThreadingHTTPServer(("127.0.0.1", PORT), H); s.daemon_threads = True; s.serve_forever()
