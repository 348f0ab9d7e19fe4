#!/usr/bin/env bash
# A/B on one GPU (about 3 minutes): the compiled bench rows of the paper preset with this tree's
# avlink_cli (new) and with an older copy in .ab_old/avlink_cli (old; `git archive REV avlink_cli |
# tar -x -C .ab_old`, carried), each compiled into its own inductor cache (warmed in parallel),
# then timed one row at a time: V2A batch 16, A2V batch 16, V2A batch 1 with CUDA graphs (new).
# usage (device tool, repo root, carry .ab_old): bash scripts/gpu_ab.sh   (writes into $OUT)
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
t0=$(date +%s)
stamp() { echo "[$(($(date +%s) - t0)) s] $*"; }
new() { PYTHONPATH=$PWD TORCHINDUCTOR_CACHE_DIR=/tmp/ind_new "$@"; }
old() { PYTHONPATH=$PWD/.ab_old TORCHINDUCTOR_CACHE_DIR=/tmp/ind_old "$@"; }
warm=()
for i in 4 5 7; do
  new env TORCHINDUCTOR_COMPILE_THREADS=3 python3 scripts/bench_table.py --warm --only $i >/tmp/wn$i.log 2>&1 &
  warm+=($!)
done
for i in 5 7; do
  old env TORCHINDUCTOR_COMPILE_THREADS=3 python3 scripts/bench_table.py --warm --only $i >/tmp/wo$i.log 2>&1 &
  warm+=($!)
done
wait "${warm[@]}"
stamp "warm-ups done"
tail -qn 1 /tmp/wn*.log /tmp/wo*.log | cut -c 1-160
for i in 5 7; do
  new timeout 40 python3 scripts/bench_table.py --only $i >>"$OUT/new.jsonl" 2>>"$OUT/err.log"
  stamp "new row $i"
  old timeout 40 python3 scripts/bench_table.py --only $i >>"$OUT/old.jsonl" 2>>"$OUT/err.log"
  stamp "old row $i"
done
new timeout 40 python3 scripts/bench_table.py --only 8 >>"$OUT/new.jsonl" 2>>"$OUT/err.log"
for f in new old; do echo "== $f"; python3 scripts/bench_table.py --print-table "$OUT/$f.jsonl"; done
tail -n 3 "$OUT/err.log"
stamp end
