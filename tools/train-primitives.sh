#!/usr/bin/env bash
# Train the shipped primitives models (SD form and IF form) on one GPU, both at once.
#   usage: bash tools/train-primitives.sh DATA_DIR OUT_DIR [TIME_BUDGET_S [TRAIN-ARGS...]]
# DATA_DIR: a data set written by `studio primitives data` (the shipped weights used
#   --n 7680 --seed 0 --size 64). OUT_DIR receives, per form, train-FORM.log and FORM.tar.gz
#   (the saved pipeline folder plus its -training logs: loss.csv, samples.png, accuracy.json).
# TRAIN-ARGS go to every `studio primitives train` (e.g. --vae-steps 2 for a dry run);
# TRAIN_SD_ARGS / TRAIN_IF_ARGS (environment, split at spaces) go to one form only, e.g.
#   TRAIN_IF_ARGS="--init plugins/primitives/src/studio_primitives/weights/if" continues the
#   shipped IF model while the SD form starts afresh (--snr-gamma 5 adds min-SNR loss weights).
#   The shipped weights: one run from random weights, then one continuing both forms with
#   --snr-gamma 5 (IF at --batch 256, SD with --vae-steps 0); docs/primitives.md has both commands.
# Expects studio-core, studio-dreamfusion and studio-primitives importable (on the GPU machine:
#   the carried wheels and `pip install --no-deps -e ...`, as tools/gpu-check.sh does); the CLI
#   runs as `python -m studio` so the interpreter on PATH is the one that trains.
set -uo pipefail
data=${1:?data set folder}
out=${2:?output folder}
budget=${3:-450}
shift 3 2>/dev/null || shift $#
mkdir -p "$out"
work=$(mktemp -d)
export PYTHONUNBUFFERED=1
pids=()
for form in sd if; do
  if [ "$form" = sd ]; then read -r -a own <<< "${TRAIN_SD_ARGS:-}"; else read -r -a own <<< "${TRAIN_IF_ARGS:-}"; fi
  python -m studio primitives train --form "$form" --data "$data" --out "$work/$form" \
    --batch 128 --time-budget "$budget" "$@" "${own[@]}" > "$out/train-$form.log" 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
for form in sd if; do
  if [ -d "$work/$form" ]; then
    tar -C "$work" -czf "$out/$form.tar.gz" "$form" "$form-training"
  fi
done
exit $status
