#!/usr/bin/env python3
"""MLflow client round trip against an MLflow-compatible tracking server (real mlflow or Trove).

Uses the unmodified mlflow fluent client. Configuration comes from the environment the
client already reads: MLFLOW_TRACKING_URI (required) and MLFLOW_TRACKING_TOKEN (optional,
sent as `Authorization: Bearer ...`).

usage: mlflow_script.py [EXPERIMENT_NAME]      (default: trove-bench)

Sequence: set_experiment, start_run, log_params, 1,000 log_metric("loss", v, step=i),
log_artifact of a 10 MB random file, set_tag, end_run; then search_runs, get_metric_history
and download_artifacts, checking what comes back. Prints `seconds=X.XXX` (wall time of the
whole sequence) and `run_id=...`; exits 1 with a message on the first mismatch.
"""
import hashlib
import os
import sys
import tempfile
import time

N_POINTS = 1000
ARTIFACT_BYTES = 10 * 1024 * 1024
ARTIFACT_NAME = "blob.bin"
PARAMS = {"lr": 0.001, "batch": 64, "optimizer": "adam"}


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def loss_at(i):
    return 2.0 / (1 + i / 100) + (i % 7) / 1000


def main():
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        fail("MLFLOW_TRACKING_URI is not set")
    experiment = sys.argv[1] if len(sys.argv) > 1 else "trove-bench"
    run_name = f"bench-{os.getpid()}-{int(time.time())}"

    import mlflow
    from mlflow.tracking import MlflowClient

    with tempfile.TemporaryDirectory(prefix="mlflow-script-") as tmp:
        src = os.path.join(tmp, "src")
        os.makedirs(src)
        blob_path = os.path.join(src, ARTIFACT_NAME)
        payload = os.urandom(ARTIFACT_BYTES)
        with open(blob_path, "wb") as f:
            f.write(payload)
        want_sha = hashlib.sha256(payload).hexdigest()

        t0 = time.perf_counter()

        mlflow.set_experiment(experiment)
        run = mlflow.start_run(run_name=run_name)
        run_id = run.info.run_id
        mlflow.log_params(PARAMS)
        for i in range(N_POINTS):
            mlflow.log_metric("loss", loss_at(i), step=i)
        mlflow.log_artifact(blob_path)
        mlflow.set_tag("stage", "bench")
        mlflow.end_run()

        # --- read back ---
        df = mlflow.search_runs(experiment_names=[experiment])
        if "run_id" not in df.columns:
            fail(f"search_runs DataFrame has no run_id column: {list(df.columns)}")
        rows = df[df["run_id"] == run_id]
        if len(rows) != 1:
            fail(f"search_runs found {len(rows)} rows for run {run_id} (of {len(df)})")
        row = rows.iloc[0]
        for k, v in PARAMS.items():
            got = row.get(f"params.{k}")
            if got != str(v):
                fail(f"param {k}: got {got!r}, want {str(v)!r}")
        last = row.get("metrics.loss")
        if last is None or abs(float(last) - loss_at(N_POINTS - 1)) > 1e-9:
            fail(f"metrics.loss: got {last!r}, want {loss_at(N_POINTS - 1)!r}")
        if row.get("tags.stage") != "bench":
            fail(f"tags.stage: got {row.get('tags.stage')!r}, want 'bench'")
        if row.get("tags.mlflow.runName") != run_name:
            fail(f"tags.mlflow.runName: got {row.get('tags.mlflow.runName')!r}, want {run_name!r}")
        if row.get("status") != "FINISHED":
            fail(f"status: got {row.get('status')!r}, want 'FINISHED'")

        hist = MlflowClient().get_metric_history(run_id, "loss")
        if len(hist) != N_POINTS:
            fail(f"get_metric_history: {len(hist)} points, want {N_POINTS}")
        got_steps = sorted(m.step for m in hist)
        if got_steps != list(range(N_POINTS)):
            fail("get_metric_history: steps are not 0..999")
        by_step = {m.step: m.value for m in hist}
        bad = [s for s in range(N_POINTS) if abs(by_step[s] - loss_at(s)) > 1e-9]
        if bad:
            fail(f"get_metric_history: wrong values at steps {bad[:5]}")

        dst = os.path.join(tmp, "dst")
        os.makedirs(dst)
        local = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=ARTIFACT_NAME, dst_path=dst)
        with open(local, "rb") as f:
            got = f.read()
        if len(got) != ARTIFACT_BYTES or hashlib.sha256(got).hexdigest() != want_sha:
            fail(f"downloaded artifact differs: {len(got)} bytes, want {ARTIFACT_BYTES}")

        seconds = time.perf_counter() - t0

    print(f"seconds={seconds:.3f}")
    print(f"run_id={run_id}")


if __name__ == "__main__":
    main()
