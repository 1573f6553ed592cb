#!/usr/bin/env bash
# Issue 14 on one GPU: a cold and a cached compiled engine start (regional compilation: one graph
# per chunk length for all 40 blocks), and how soon a live session's first frames come with the
# short first chunk (--first-chunk-frames 4, the default).
#
# Run on the device machine from the repository root, the wheels carried in .whl/ (docs/perf-notes.md):
#   bash scripts/gpu/start_check.sh "$OUT" [PRECISION]
# 1. cold: an empty compile cache, --compile; warm-up builds the short first chunk's graphs and the
#    full chunk's; chunk times, first_frames_s, compile counts.
# 2. cached: the same cache folder, a new process, the same options: every graph should load from
#    the cache; the cached start and warm-up.
# Each run is one `flashtalk bench` JSON in OUT_DIR; a table of both is printed last.
set -u
OUT_DIR=${1:?usage: start_check.sh OUT_DIR [PRECISION]}
PRECISION=${2:-fp8}
PY=$(dirname "$(which torchrun)")/python
"$PY" -m pip install -q --no-deps .whl/*.whl || exit 1
export PYTHONUNBUFFERED=1 FLASHTALK_COMPILE_CACHE=/tmp/flashtalk-compile-cache
rm -rf "$FLASHTALK_COMPILE_CACHE"
"$PY" -m engine models make-tiny /tmp/tiny > /dev/null || exit 1
BENCH=("$PY" -m engine bench --backend flashtalk --random-weights 14b --model /tmp/tiny/SoulX-FlashTalk-14B
       --compile --precision "$PRECISION" --chunks 3)
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm --format=csv > "$OUT_DIR/gpu.csv"
timeout 330 "${BENCH[@]}" --json "$OUT_DIR/cold.json" > "$OUT_DIR/cold.log" 2>&1
echo "cold run exit $?"
timeout 200 "${BENCH[@]}" --json "$OUT_DIR/cached.json" > "$OUT_DIR/cached.log" 2>&1
echo "cached run exit $?"
"$PY" - "$OUT_DIR" <<'PYEOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
keys = ("load_s", "warm_up_s", "start_s", "fx_graphs_loaded", "fx_graphs_compiled", "aot_graphs_loaded",
        "aot_graphs_compiled", "first_chunk_frames", "first_frames_s", "first_frames_prepare_s")
for name in ("cold", "cached"):
    path = out / f"{name}.json"
    if not path.exists():
        print(f"{name}: no result (see {name}.log)")
        continue
    r = json.loads(path.read_text())
    stages = {k: round(v["median"]) for k, v in r["stages_ms"].items()}
    print(name, {k: round(r[k], 2) if isinstance(r[k], float) else r[k] for k in keys})
    print("  chunk median/p95 ms", round(r["chunk_wall_ms"]["median"]), round(r["chunk_wall_ms"]["p95"]),
          "fps", round(r["fps"], 2), "stages", stages)
    print("  first chunk stages ms", {k: round(v) for k, v in r["first_frames_stages_ms"].items()})
PYEOF
