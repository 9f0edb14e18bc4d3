#!/usr/bin/env bash
# The device check's command on a lent GPU machine, run from the repository root there:
#     bash benchmarks/device/device_run.sh --compare-budget 240
# Arguments go to benchmarks/device/device_check.py (a later --data replaces .device/cifar10, as device_prepare.py
# --subset does with the package's 5,000-image subset when the full parquet would not fit the 64 MiB that travels).
# `python -m benchmarks.device.device_prepare` packs .device/ on this side (CIFAR-10 parquet, the wheels the device
# image lacks, the commit) and prints the whole `run` call.
# Everything the check writes lands in $OUT (the device tool's return folder): the JSON after every part, the log,
# the GPU's nvidia-smi line and the package versions.
set -euo pipefail
cd "$(dirname "$0")/../.."  # the repository root: the check runs as the module benchmarks.device.device_check
: "${OUT:?set OUT to the folder whose files come back (the device tool sets it)}"
for needed in .device/COMMIT .device/wheels; do
    [[ -e $needed ]] || { echo "missing $needed: run python -m benchmarks.device.device_prepare first" >&2; exit 2; }
done

# the image's python3 holds torch; the packages it lacks travel as wheels (no registry is reachable there)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .device/wheels/*.whl
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
export HF_DATASETS_CACHE=/tmp/hf_datasets TIMM_SELFCON_DEVICE_CACHE=/tmp/timm_selfcon_device
TIMM_SELFCON_GIT_COMMIT="$(cat .device/COMMIT)"
export TIMM_SELFCON_GIT_COMMIT

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,power.limit --format=csv \
    | tee "$OUT/nvidia_smi.csv" || echo "nvidia-smi failed (no GPU?)" >&2
python3 - <<'EOF' | tee "$OUT/versions.txt"
import importlib

for name in ("torch", "torchvision", "timm", "accelerate", "datasets", "pyarrow", "fsspec", "huggingface_hub",
             "pydantic", "safetensors", "timm_selfcon"):
    try:
        print(name, importlib.import_module(name).__version__)
    except Exception as error:  # report every package, then let the check itself fail on the broken one
        print(name, "FAILED:", repr(error))
EOF
# its training runs go to a fresh temporary folder, so a rerun on a still-warm machine resumes none of the last call's
python3 -m benchmarks.device.device_check --data .device/cifar10 \
    --out "$OUT/device_check.json" "$@" 2>&1 | tee "$OUT/device_check.log"
