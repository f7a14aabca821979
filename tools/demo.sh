#!/usr/bin/env bash
# `make demo`: DreamFusion on the embedded primitives model, offline on a CPU, then a mesh export
# and the primitives R-precision of the test orbit.   usage: bash tools/demo.sh [STUDIO] [PROMPT]
set -euo pipefail
studio=${1:-.venv/bin/studio}
prompt=${2:-a red cube}
root=outputs/demo
started=$(date +%s)
"$studio" run dreamfusion-primitives "prompt=$prompt" "exp_root_dir=$root"
run=$(ls -dt "$root"/dreamfusion-primitives/*/ | head -n 1)
run=${run%/}
"$studio" export "$run"
"$studio" eval "$run"
video=$(ls -t "$run"/save/*-test.mp4 | head -n 1)
mesh=$(ls -dt "$run"/save/*-export | head -n 1)
echo
echo "demo finished in $(( $(date +%s) - started )) s"
echo "  run directory: $run"
echo "  test video:    $video"
echo "  mesh:          $mesh/$(cd "$mesh" && ls model.obj model.glb 2>/dev/null | head -n 1)"
echo "  evaluation:    $run/save/eval.json"
