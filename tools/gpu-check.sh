#!/usr/bin/env bash
# One command for the GPU machine: install the carried wheels and the workspace, run the
# gpu-marked tests and the GPU benchmarks, write logs and tables under OUT_DIR.
#   usage: bash tools/gpu-check.sh [OUT_DIR]      (default: $OUT if set, else gpu-check-out)
# Expects the wheels from ../shared/tools/device-wheels.sh in .device/wheels (carried along).
set -uo pipefail
out=${1:-${OUT:-gpu-check-out}}
mkdir -p "$out"
export PIP_ROOT_USER_ACTION=ignore PYTHONUNBUFFERED=1
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
status=0

if compgen -G ".device/wheels/*.whl" > /dev/null; then
  python -m pip install -q --no-index --no-deps .device/wheels/*.whl 2>&1 | tail -n 3
fi
editables=(-e core)
for plugin in plugins/*/; do editables+=(-e "$plugin"); done
python -m pip install -q --no-deps --no-build-isolation "${editables[@]}" 2>&1 | tail -n 3

python -m studio doctor 2>&1 | tee "$out/doctor.txt"
python -m pytest -m gpu -q -rs -p no:cacheprovider tests 2>&1 | tee "$out/pytest-gpu.log" || status=1
for bench in bench/*.py; do
  name=$(basename "$bench" .py)
  python "$bench" 2>&1 | tee "$out/bench-$name.txt" || status=1
done
exit $status
