#!/usr/bin/env bash
# Download the wheels the GPU machine lacks into .whl/ (git-ignored), for benchmarks/gpu_check.sh.
#
# The GPU machine (Python 3.12, x86_64, no internet) already has torch, torchvision, timm,
# transformers, tokenizers, numpy, pandas, OpenCV, matplotlib, PyYAML, tqdm, Pillow, safetensors,
# huggingface_hub and pytest. simpleclip also imports albumentations, which brings albucore,
# simsimd, stringzilla, pydantic (with pydantic-core, annotated-types, typing-inspection and a
# recent typing_extensions) and scipy (albumentations imports scipy.special); the check's shards
# section reads them with webdataset (and braceexpand). The versions are
# those of requirements.txt and the team's .venv. --no-deps: only this list, nothing else.
#
#   bash benchmarks/fetch_gpu_wheels.sh            # run from anywhere; writes <repo>/.whl/
#   bash benchmarks/fetch_gpu_wheels.sh --no-scipy # if the GPU machine turns out to have scipy
set -euo pipefail

cd "$(dirname "$0")/.."
WHEELS=(
    albumentations==2.0.8
    albucore==0.0.24
    simsimd==6.5.16
    stringzilla==5.3.2
    pydantic==2.14.4
    pydantic-core==2.50.5
    annotated-types==0.8.0
    typing-inspection==0.4.5
    typing-extensions==4.16.0
    webdataset==1.0.2
    braceexpand==0.1.7
)
if [[ "${1:-}" != "--no-scipy" ]]; then
    WHEELS+=(scipy==1.17.1)
fi
PLATFORMS=(manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64
    manylinux1_x86_64)

mkdir -p .whl
for wheel in "${WHEELS[@]}"; do
    python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp "${PLATFORMS[@]/#/--platform=}" -d .whl "$wheel"
done
ls -l .whl
total=$(du -cb .whl/*.whl | tail -1 | cut -f1)
echo "$(ls .whl/*.whl | wc -l) wheels, $((total / 1024 / 1024)) MiB in .whl/ (the device copy allows 64 MiB in all)"
