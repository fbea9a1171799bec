#!/usr/bin/env bash
# The wheels benchmarks/jax_gpu_step.py needs on a machine that has JAX but neither
# TensorFlow nor Keras, and no network (docs/gpu.md): Keras and the pure-Python packages
# it imports, and optree (compiled; one wheel per CPython 3.10-3.13, pip picks the one
# that fits). h5py is not needed: nothing on that path saves or loads weights.
#
#   bash benchmarks/jax_gpu_wheels.sh          # -> wheels/ (git-ignored), about 6 MB
#   # on the GPU machine, from the repository root:
#   pip install --no-index --find-links wheels --no-deps keras absl-py namex packaging \
#       rich markdown-it-py mdurl pygments typing_extensions optree
set -euo pipefail
cd "$(dirname "$0")/.."
KERAS=$(python -c "import keras; print(keras.__version__)" 2>/dev/null || echo 3.15.1)
mkdir -p wheels
pip download -q --no-deps -d wheels "keras==$KERAS" absl-py namex packaging rich \
    markdown-it-py mdurl pygments typing_extensions
for version in 3.10 3.11 3.12 3.13; do
    pip download -q --no-deps -d wheels --only-binary=:all: --python-version "$version" \
        --platform manylinux2014_x86_64 optree
done
ls wheels
