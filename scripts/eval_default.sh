#!/usr/bin/env bash
# Score a model on AVSynth test clips: V2A (dub, scored against the true events and the reference
# audio) and A2V (animate the clips' own sound, scored against the true events).
# usage: bash scripts/eval_default.sh [MODEL] [COUNT] [WORKDIR]
#        EXTRA="--cfg 0" bash scripts/eval_default.sh ...   # the floor: the generator alone
set -euo pipefail
model=${1:-avsynth-s}; count=${2:-100}; work=${3:-eval-work}
avlink synth "$work/test" --split test --count "$count" --seed 0 --overwrite
avlink dub "$work/test" -o "$work/v2a" --model "$model" --overwrite ${EXTRA:-}
avlink eval "$work/v2a" --reference "$work/test" --mode v2a --json > "$work/v2a.json"
avlink animate "$work"/test/*.mp4 -o "$work/a2v" --model "$model" --overwrite ${EXTRA:-}
avlink eval "$work/a2v" --reference "$work/test" --mode a2v --json > "$work/a2v.json"
# eval --json writes JSON Lines: one record a clip, then the summary
python3 -c "import json; [print(m, l) for m in ('v2a', 'a2v') for l in open('$work/' + m + '.json') if json.loads(l).get('type') == 'summary']"
