#!/usr/bin/env bash
# The main job, end to end: a ~256 MiB model-like file and a few thousand small files are
# committed, 1 % of the model changes, and the first version is restored and verified.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
swift build -c release
TROVE="$PWD/.build/release/trove"
REPO="$PWD"
DEMO=${TROVE_DEMO_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/trove-demo.XXXXXX")}
mkdir -p "$DEMO/work" && cd "$DEMO/work"
echo "== demo folder: $DEMO"

python3 - <<'PY'
import os, random
random.seed(20240601)
# ~256 MiB of float32-like weights: random mantissas, exponents of small values.
size = 256 << 20
with open("model.safetensors", "wb") as f:
    block = 8 << 20
    for _ in range(size // block):
        b = bytearray(os.urandom(block))
        b[3::4] = bytes(0x3C | (x & 0x80) for x in b[3::4])
        f.write(b)
words = "the of and model data tensor layer weight bias epoch loss train test step value".split()
for i in range(3000):
    d = "dataset/shard%02d" % (i // 100)
    os.makedirs(d, exist_ok=True)
    with open("%s/sample%05d.txt" % (d, i), "w") as f:
        f.write(" ".join(random.choice(words) for _ in range(random.randint(50, 1500))))
PY

"$TROVE" init
"$TROVE" add .
"$TROVE" commit -m "first training run: model and dataset"
sha256sum model.safetensors > "$DEMO/v1.sha256"
(cd dataset && find . -type f -exec sha256sum {} + | sort -k2) > "$DEMO/v1-dataset.sha256"

python3 - <<'PY'
import os
size = os.path.getsize("model.safetensors")
with open("model.safetensors", "r+b") as f:   # 1 % of the weights change, in 20 places
    for k in range(20):
        f.seek(k * (size // 20) + 4096)
        f.write(os.urandom(size // 100 // 20))
PY
"$TROVE" add model.safetensors
"$TROVE" commit -m "fine-tune: 1% of the weights changed"

echo; echo "== trove log"; "$TROVE" log
echo "== trove diff HEAD~1 HEAD"; "$TROVE" diff HEAD~1 HEAD
echo; echo "== trove du"; "$TROVE" du
echo; echo "== restore the first version to $DEMO/restored and verify"
"$TROVE" restore HEAD~1 --to "$DEMO/restored"
(cd "$DEMO/restored" && sha256sum -c "$DEMO/v1.sha256")
(cd "$DEMO/restored/dataset" && find . -type f -exec sha256sum {} + | sort -k2) | cmp - "$DEMO/v1-dataset.sha256"
echo "dataset: all $(wc -l < "$DEMO/v1-dataset.sha256") files identical"
"$TROVE" fsck --full

echo; echo "== sync: a daemon on 127.0.0.1, a push, a partial clone elsewhere"
"$TROVE" daemon project create demo --root "$DEMO/daemon" >/dev/null
export TROVE_TOKEN=$("$TROVE" daemon token create --root "$DEMO/daemon" --project demo --role write 2>/dev/null)
"$TROVE" daemon --root "$DEMO/daemon" --listen 127.0.0.1:0 > "$DEMO/daemon.out" 2> "$DEMO/daemon.err" &
DAEMON=$!
trap 'kill $DAEMON 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q listening "$DEMO/daemon.out" 2>/dev/null && break; sleep 0.05; done
URL=$(sed -n 's/^trove daemon listening on \([^ ]*\).*/\1/p' "$DEMO/daemon.out")/demo
"$TROVE" remote add origin "$URL"
"$TROVE" push
"$TROVE" clone --include dataset/shard07 "$URL" "$DEMO/partial"
echo "partial clone: $(find "$DEMO/partial/dataset" -type f | wc -l) of 3000 dataset files written, $(du -sh "$DEMO/partial/.trove/packs" | cut -f1) fetched"
"$TROVE" -C "$DEMO/partial" status
kill $DAEMON; wait $DAEMON 2>/dev/null || true
unset TROVE_TOKEN

echo; echo "== git: the same model through git add / commit / push / clone (Trove as the filter)"
ln -sf trove "$(dirname "$TROVE")/git-trove"          # `git trove ...` works too
export PATH="$(dirname "$TROVE"):$PATH" HOME="$DEMO/home" GIT_CONFIG_NOSYSTEM=1
mkdir -p "$HOME"
git config --global user.name "Trove Demo"; git config --global user.email demo@example.invalid
git config --global init.defaultBranch main
trove install --global
git init -q --bare "$DEMO/git-remote.git"
git init -q "$DEMO/git-work" && cd "$DEMO/git-work"
trove install
trove track '*.safetensors'
cp "$DEMO/work/model.safetensors" .
git add .gitattributes model.safetensors && git commit -qm "model v2"
echo "git stores a pointer:"; git show HEAD:model.safetensors
git remote add origin "$DEMO/git-remote.git"
git push -q origin main            # pre-push sends the chunks to $DEMO/git-remote.git/trove first
git clone -q "$DEMO/git-remote.git" "$DEMO/git-clone"
cmp "$DEMO/work/model.safetensors" "$DEMO/git-clone/model.safetensors" && echo "git clone: model.safetensors identical"
git trove ls-files

echo; echo "== runs: a recorded run, a sweep with early stopping, the runs compared"
cat > train.sh <<'SH'
#!/bin/sh
# A stand-in for training: the loss falls with the step, worse for a large lr.
for step in 1 2 3 4 5 6; do
  echo "{\"step\": $step, \"loss\": $(python3 -c "print(round($TROVE_PARAM_LR * 10 / $step, 4))")}" >> "$TROVE_METRICS_FILE"
  sleep 0.3
done
echo "weights lr=$TROVE_PARAM_LR" > "$TROVE_OUTPUT_DIR/model.txt"
SH
chmod +x train.sh
trove run -q -p lr=0.05 --name baseline -- ./train.sh
trove sweep -p lr=0.01,0.02,0.5,0.9 --parallel 4 --early-stop median:loss,min-step=2,min-runs=2 -- ./train.sh || true
trove runs
trove runs compare $(trove runs --where status=succeeded --json | python3 -c 'import json,sys; print(" ".join(r["id"] for r in json.load(sys.stdin)[:2]))')

echo; echo "== models: the best run published with its lineage; a model served over the Open Inference Protocol"
BEST=$(trove runs --where status=succeeded --sort metrics.loss --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
printf '# Demo model\n\nThe best run of the sweep.\n' > card.md
trove model publish demo-model --from-run "$BEST" --card card.md --meta task=demo --alias staging
trove model lineage demo-model@staging
mkdir -p "$DEMO/linear" && cp "$REPO/fixtures/serving/worker.py" "$REPO/fixtures/serving/serving.json" "$DEMO/linear/"
python3 -c "import numpy as np; np.savez('$DEMO/linear/weights.npz', W=np.arange(8, dtype=np.float32).reshape(4, 2), b=np.array([0.5, -0.5], dtype=np.float32))"
trove model import-hf "$DEMO/linear" --name linear --alias prod
trove serve linear@prod --listen 127.0.0.1:0 --workers 2 --max-batch 8 --max-wait-ms 2 > "$DEMO/serve.out" 2> "$DEMO/serve.err" &
SERVE=$!
for _ in $(seq 200); do grep -q "trove serve:" "$DEMO/serve.out" 2>/dev/null && break; sleep 0.05; done
SERVE_URL=$(sed -n 's/.* on \(http[^ ]*\).*/\1/p' "$DEMO/serve.out")
for _ in $(seq 100); do curl -sf "$SERVE_URL/v2/models/linear/ready" >/dev/null && break; sleep 0.05; done
echo "POST $SERVE_URL/v2/models/linear/infer:"
curl -s -X POST "$SERVE_URL/v2/models/linear/infer" -H 'Content-Type: application/json' \
  -d '{"id": "demo", "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}'; echo
kill $SERVE; wait $SERVE 2>/dev/null || true
echo "== demo OK"
