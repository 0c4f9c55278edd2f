#!/usr/bin/env python3
"""Logging HTTP reverse proxy for recording MLflow client traffic (stdlib only).

usage: mlflow_traffic_proxy.py LISTEN_PORT UPSTREAM_HOST:PORT LOG.jsonl [--strip-prefix /myproject]
       mlflow_traffic_proxy.py --summary LOG.jsonl     (one sample per endpoint, with counts)

Every exchange is appended to LOG.jsonl as one JSON object: method, path (after stripping),
raw_path (as received), query, selected request headers, request body (first 500 bytes) and
length, response status, response headers, response body (first 800 bytes) and length.
With --strip-prefix, a request whose path does not start with the prefix gets a 599 and is
flagged `"prefix_missing": true` so a client that drops the prefix is caught.
"""
import collections
import http.client
import http.server
import json
import re
import socket
import sys
import threading
import time

HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"}
REQ_HEADERS = ("Content-Type", "Content-Length", "Authorization", "User-Agent", "Accept",
               "Accept-Encoding", "Transfer-Encoding", "Content-Encoding")


def summary(log_path):
    groups = collections.OrderedDict()
    for line in open(log_path):
        r = json.loads(line)
        path = re.sub(r"(/mlflow-artifacts/artifacts)/.*", r"\1/<path>", r["path"])
        groups.setdefault((r["method"], path), []).append(r)
    for (method, path), rs in groups.items():
        statuses = dict(collections.Counter(r["status"] for r in rs))
        r = rs[0]
        print(f"=== {method} {path}  count={len(rs)} statuses={statuses}")
        print(f"  request:  {r['raw_path'][:300]}")
        print(f"  headers:  {r['req_headers']}")
        if r["req_len"]:
            body = r["req_body"] if r["req_len"] <= 500 else f"<{r['req_len']} bytes>"
            print(f"  body:     {body}")
        ctype = r.get("resp_headers", {}).get("content-type", "")
        print(f"  response: {r['status']} {ctype} {r['resp_len']} bytes")
        if r["resp_len"] and "json" in ctype:
            print("  " + r["resp_body"].replace("\n", "\n  "))


def main():
    if sys.argv[1] == "--summary":
        return summary(sys.argv[2])
    listen = int(sys.argv[1])
    up_host, up_port = sys.argv[2].rsplit(":", 1)
    log_path = sys.argv[3]
    prefix = ""
    if "--strip-prefix" in sys.argv:
        prefix = sys.argv[sys.argv.index("--strip-prefix") + 1].rstrip("/")
    lock = threading.Lock()
    log = open(log_path, "a", buffering=1)

    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def setup(self):
            super().setup()
            # No Nagle: the proxy must not add a delayed-ACK stall of its own (see MLFLOW-TRAFFIC.md).
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def _body(self):
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                out = bytearray()
                while True:
                    n = int(self.rfile.readline().split(b";")[0].strip(), 16)
                    if n == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return bytes(out)
                    out += self.rfile.read(n)
                    self.rfile.readline()
            n = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(n) if n else b""

        def _handle(self):
            t0 = time.time()
            raw = self.path
            body = self._body()
            path, _, query = raw.partition("?")
            rec = {"t": t0, "method": self.command, "raw_path": raw, "query": query,
                   "req_headers": {k: self.headers[k] for k in REQ_HEADERS if self.headers.get(k)},
                   "req_len": len(body), "req_body": body[:500].decode("utf-8", "replace")}
            if prefix:
                if path == prefix or path.startswith(prefix + "/"):
                    path = path[len(prefix):] or "/"
                else:
                    rec.update(path=path, prefix_missing=True, status=599, resp_body="", resp_len=0)
                    self._reply(599, {"Content-Type": "text/plain"}, b"prefix missing\n")
                    self._log(rec)
                    return
            rec["path"] = path
            fwd = {k: v for k, v in self.headers.items() if k.lower() not in HOP and k.lower() != "host"}
            fwd["Host"] = f"{up_host}:{up_port}"
            fwd["Content-Length"] = str(len(body))
            conn = http.client.HTTPConnection(up_host, int(up_port), timeout=300)
            try:
                conn.request(self.command, path + (("?" + query) if query else ""), body=body, headers=fwd)
                r = conn.getresponse()
                data = r.read()
                hdrs = {k: v for k, v in r.getheaders() if k.lower() not in HOP and k.lower() != "content-length"}
                status = r.status
            finally:
                conn.close()
            rec.update(status=status, resp_headers=hdrs, resp_len=len(data),
                       resp_body=data[:800].decode("utf-8", "replace"), ms=round((time.time() - t0) * 1000, 1))
            self._reply(status, hdrs, data)
            self._log(rec)

        def _reply(self, status, hdrs, data):
            head = [f"HTTP/1.1 {status} {http.client.responses.get(status, 'Status')}"]
            head += [f"{k}: {v}" for k, v in hdrs.items()]
            head.append(f"Content-Length: {len(data)}")
            out = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
            self.wfile.write(out + (b"" if self.command == "HEAD" else data))  # one write

        def _log(self, rec):
            with lock:
                log.write(json.dumps(rec) + "\n")

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", listen), H)
    srv.daemon_threads = True
    print(f"proxy :{listen} -> {up_host}:{up_port} prefix={prefix or '-'} log={log_path}", flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
