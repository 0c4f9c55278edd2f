"""Helpers the Python benchmarks share (imported from the Benchmarks folder)."""
import socket


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def push_fetch_loop(run, trove, i, work, reader, token, size, edit, stop, lock, failures, ops):
    """One client of a load test, until time `stop`: overwrite `edit` bytes of its `size`-byte
    model.bin at a random place and add a small file, commit, push, then fetch into a second
    store. Failed commands go to `failures`, successful pushes and fetches count in `ops`."""
    import os
    import random
    import time
    local = random.Random(i)
    n = 0
    while time.time() < stop:
        n += 1
        with open(os.path.join(work, "model.bin"), "r+b") as f:
            f.seek(local.randrange(0, size))
            f.write(local.randbytes(edit))
        with open(os.path.join(work, "data", f"new{n}.txt"), "w") as f:
            f.write(f"round {n}\n")
        for cmd, cwd, kind in (([trove, "add", "-q", "."], work, None), ([trove, "commit", "-q", "-m", f"r{n}"], work, None),
                               ([trove, "push", "-q"], work, "push"), ([trove, "fetch", "-q"], reader, "fetch")):
            res = run(cmd, cwd, {"TROVE_TOKEN": token}, check=False)
            with lock:
                if res.returncode != 0:
                    failures.append((i, " ".join(cmd[1:3]), res.returncode, res.stderr.strip()[:300]))
                elif kind:
                    ops[kind] += 1


def prepare_client(run, trove, i, scratch, url, token, rng, size, small_files):
    """Client `i` of a load test: a working store `c{i}` with a `size`-byte model and small
    files, committed and pushed to `url` once, and an empty store `r{i}` that fetches from it."""
    import os
    w = os.path.join(scratch, f"c{i}")
    os.makedirs(os.path.join(w, "data"))
    run([trove, "init", "-q"], w)
    with open(os.path.join(w, "model.bin"), "wb") as f:
        f.write(rng.randbytes(size))
    for k in range(small_files):
        with open(os.path.join(w, "data", f"f{k}.txt"), "w") as f:
            f.write(f"client {i} file {k}\n" * 100)
    run([trove, "add", "-q", "."], w)
    run([trove, "commit", "-q", "-m", "start"], w)
    run([trove, "remote", "add", "origin", url], w)
    run([trove, "push", "-q"], w, {"TROVE_TOKEN": token})
    r = os.path.join(scratch, f"r{i}")
    os.makedirs(r)
    run([trove, "init", "-q"], r)
    run([trove, "remote", "add", "origin", url], r)


def load_test_setup(ap, scratch_name, author, extra_env=None):
    """The flags load tests share (--clients, --seconds, --trove, --scratch) added to `ap` and
    parsed; a fresh scratch folder; and `run(cmd, cwd, extra=None, check=True)`, which runs a
    command there without progress output. Returns (args, trove, scratch, run)."""
    import os
    import shutil
    import subprocess
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--trove", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".build", "release", "trove"))
    ap.add_argument("--scratch", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), scratch_name))
    args = ap.parse_args()
    scratch = args.scratch
    shutil.rmtree(scratch, ignore_errors=True)
    os.makedirs(scratch)
    env = dict(os.environ, TROVE_PROGRESS="0", TROVE_AUTHOR_NAME=author, HOME=scratch, **(extra_env or {}))

    def run(cmd, cwd, extra=None, check=True):
        r = subprocess.run(cmd, cwd=cwd, env=dict(env, **(extra or {})), capture_output=True, text=True)
        if check and r.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr}")
        return r

    return args, os.path.abspath(args.trove), scratch, run, env
