#!/usr/bin/env bash
# One prepared device run (about 9 minutes on one H200) for issues 6 and 7:
#  A. the Fusion stage five times side by side: AV-Link as published and the four ablations, each
#     from the same frozen backbones (weights/avsynth-s), the same fresh Fusion init, data, steps,
#     batch, learning rate and seed; meanwhile the compiled bench rows fill inductor's disk cache;
#  B. then the paper-preset bench table (scripts/bench_table.py), one row at a time on the idle GPU.
# usage (device tool, repo root, carry .carry): bash scripts/gpu_figures.sh   (writes into $OUT)
set -u
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
STEPS=${STEPS:-1000}      # Fusion steps per variant
LIMIT=${LIMIT:-3.2}       # minutes per variant: a safety net; the summary says the steps reached
VARIANTS="default no-reinject rope-index uniform-t external"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .carry/wheels/*.whl
export PYTHONPATH=$PWD:/tmp/site
t0=$(date +%s)
stamp() { echo "[$(($(date +%s) - t0)) s] $*"; }
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__)"

# --- A ---------------------------------------------------------------------------------------
python3 scripts/fusion_variants.py weights/avsynth-s /tmp/var
cat >/tmp/cache.py <<'EOF'
from pathlib import Path
from avlink_cli.presets import get_preset
from avlink_cli.training.run import DataSpec, ensure_cache
if __name__ == "__main__":  # the same cache keys as `avlink train --clips 8000 --val-clips 128`
    spec = DataSpec("avsynth", train_count=8000, val_count=128, seed=0)
    for split in ("train", "val"):
        ensure_cache(spec, get_preset("avsynth-s"), split, Path("/tmp/cache"), workers=14)
EOF
python3 /tmp/cache.py
stamp "data cached"
warm=()
for i in 4 5 6 7 9 10 11; do  # the compiled rows (row 8 compiles the same graphs as row 4)
  TORCHINDUCTOR_COMPILE_THREADS=1 python3 scripts/bench_table.py --warm --only $i >/tmp/warm$i.log 2>&1 &
  warm+=($!)
done
train=()
for v in $VARIANTS; do
  ab=()
  [ "$v" != default ] && ab=(--ablation "$v")
  python3 -m avlink_cli train fusion --out /tmp/var/$v "${ab[@]}" --steps "$STEPS" --batch-size 64 \
    --lr 1e-3 --clips 8000 --val-clips 128 --cache /tmp/cache --workers 1 --device cuda \
    --time-limit "$LIMIT" --json >/tmp/train_$v.json 2>/tmp/train_$v.err &
  train+=($!)
done
wait "${train[@]}"
stamp "Fusion variants trained"
for v in $VARIANTS; do echo "$v $(cat /tmp/train_$v.json)"; done
for _ in $(seq 15); do  # give the cache warm-ups a little longer, then go on without them
  n=0
  for p in "${warm[@]}"; do kill -0 "$p" 2>/dev/null && n=$((n + 1)); done
  [ $n = 0 ] && break
  sleep 2
done
kill "${warm[@]}" 2>/dev/null
stamp "warm-ups done or stopped"
for v in $VARIANTS; do cp /tmp/var/$v/fusion.safetensors "$OUT/fusion_$v.safetensors"; done
cp /tmp/var/external/external.safetensors "$OUT/external_external.safetensors"

# --- B ---------------------------------------------------------------------------------------
timeout "${BENCH_TIMEOUT:-210}" python3 scripts/bench_table.py >"$OUT/bench.jsonl" 2>/tmp/bench.err
stamp "bench done (rc $?)"
python3 scripts/bench_table.py --print-table "$OUT/bench.jsonl"
tail -3 /tmp/bench.err
cd /tmp && tar czf "$OUT/logs.tgz" var/*/model.json var/*/manifest.json var/*/.train/fusion/train.log \
  train_*.json train_*.err warm*.log bench.err
stamp "end"
