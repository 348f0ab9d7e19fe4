#!/usr/bin/env bash
# Issue 7 acceptance: dub a folder of N AVSynth clips, interrupt it (SIGINT, like Ctrl-C) once
# about half the outputs exist, run the same command again, then check: N outputs, each decodes
# with video and audio streams, and the manifest shows every input generated exactly once.
# usage: bash scripts/interrupt_resume.sh [N] [WORKDIR]
set -euo pipefail
n=${1:-50}; work=${2:-interrupt-work}
rm -rf "$work"; mkdir -p "$work"
avlink synth "$work/in" --split test --count "$n" --seed 0 > /dev/null
cmd=(avlink dub "$work/in" -o "$work/out" --batch-size 4 --manifest "$work/manifest.jsonl")
set -m  # job control: a background job of a script otherwise ignores SIGINT
"${cmd[@]}" > "$work/run1.log" 2>&1 &
pid=$!
set +m
while [ "$(find "$work/out" -name '*.mp4' ! -name '.*' 2>/dev/null | wc -l)" -lt $((n / 2)) ]; do sleep 0.2; done
kill -INT "$pid"; wait "$pid" && rc=0 || rc=$?
first=$(find "$work/out" -name '*.mp4' ! -name '.*' | wc -l)
echo "first run: interrupted with $first/$n outputs (exit $rc); temporary files left: $(find "$work/out" -name '.*' | wc -l)"
"${cmd[@]}" > "$work/run2.log" 2>&1
python3 - "$work" "$n" <<'PY'
import collections, json, sys
from pathlib import Path
from avlink_cli.media import probe

work, n = Path(sys.argv[1]), int(sys.argv[2])
outs = sorted((work / "out").glob("*.mp4"))
bad = []
for p in outs:
    try:
        info = probe(p)
        if not (info.has_video and info.has_audio):
            bad.append(p.name)
    except Exception as e:  # noqa: BLE001 - a report, not a program
        bad.append(f"{p.name}: {e}")
rows = [json.loads(line) for line in open(work / "manifest.jsonl")]
done = collections.Counter(r["input"] for r in rows if r.get("status") == "ok")
print(f"outputs {len(outs)}/{n}; undecodable {len(bad)}; inputs generated once {sum(c == 1 for c in done.values())}, "
      f"more than once {sum(c > 1 for c in done.values())}; statuses {collections.Counter(r.get('status') for r in rows)}")
sys.exit(0 if len(outs) == n and not bad and all(c == 1 for c in done.values()) and len(done) == n else 1)
PY
