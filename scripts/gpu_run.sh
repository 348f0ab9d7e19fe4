#!/usr/bin/env bash
# One prepared device run: train the default model within a budget, then time the paper preset.
# usage (device tool, repo root): bash scripts/gpu_run.sh   (writes into $OUT)
set -u
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}
python3 -m pip install -q --no-index --no-deps .carry/wheels/*.whl 2>&1 | tail -2
python3 -c "import torch; print(torch.__version__, torch.cuda.get_device_name())"
nproc
timeout "${TRAIN_TIMEOUT:-440}" python3 scripts/train_default.py --out /tmp/avsynth-s --budget-minutes "${BUDGET:-4}" \
  --device cuda --clips 8000 --val-clips 128 --workers 14 --cache /tmp/cache 2>&1 | tee "$OUT/train.log"
# the device tool returns at most 8 files of 16 MiB: the 7 files of the model folder + the log
cat /tmp/avsynth-s/TRAINING.json >> "$OUT/train.log"
cp /tmp/avsynth-s/model.json /tmp/avsynth-s/manifest.json /tmp/avsynth-s/*.safetensors "$OUT/"
[ -n "${SKIP_BENCH:-}" ] && exit 0
for d in v2a a2v; do
  for b in 1 16; do
    timeout 40 python3 -m avlink_cli bench --preset paper --device cuda --batch-size $b --steps 25 \
      --direction $d --json >> "$OUT/bench.jsonl" 2>> "$OUT/bench.err"
  done
done
timeout 90 python3 -m avlink_cli bench --preset paper --device cuda --batch-size 16 --steps 25 \
  --direction v2a --compile --json >> "$OUT/bench.jsonl" 2>> "$OUT/bench.err"
cat "$OUT/bench.jsonl"; tail -5 "$OUT/bench.err"
