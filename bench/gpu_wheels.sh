#!/usr/bin/env bash
# The Python packages bench/gpu_check.py needs that the device machine's image lacks, as wheels for its
# Python 3.12 / x86-64, in .whl/ (git-ignored): trl and datasets (GRPO recovery) with the two of datasets'
# needs the image has not (dill, multiprocess); about 1.8 MB. The image's own torch, transformers (5.17
# when last listed), accelerate and huggingface_hub are used as they are: transformers 5.25 would bring
# huggingface_hub 2.x, which needs httpx2 and kernels, neither on the image (checked 2026-12-04).
#   bash bench/gpu_wheels.sh            # here, once
# then each device run starts with (README, "The accelerator check"):
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
mkdir -p .whl
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform manylinux1_x86_64 -d .whl \
  trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19
ls -la .whl
