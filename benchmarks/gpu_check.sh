#!/usr/bin/env bash
# The prepared GPU check (issue 18): is simpleclip trainable on one GPU, and how fast?
#
#   benchmarks/gpu_check.sh OUT          # on the GPU machine, from a copy of the working tree
#   benchmarks/gpu_check.sh OUT --cpu    # the dry run tests/test_gpu_check.py does (tiny, CPU)
#
# Writes OUT/gpu_check.json (every figure, see benchmarks/gpu_check.py) and OUT/gpu_check.log
# (everything printed), and exits non-zero when a check failed. At most 8 minutes on the GPU
# machine: ~20 s here, then gpu_check.py, which keeps to a 430 s budget and is killed at 455 s.
# The GPU machine has no internet and lacks albumentations and its dependencies: they travel as
# wheels in .whl/ (benchmarks/fetch_gpu_wheels.sh) and are installed into /tmp/site.
# PYTHON picks the interpreter (default python3); GPU_CHECK_LIMIT_S the hard limit.
set -uo pipefail

OUT=${1:?usage: benchmarks/gpu_check.sh OUT [--cpu]}
shift
cd "$(dirname "$0")/.." || exit 2
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
PY=${PYTHON:-python3}
LIMIT=${GPU_CHECK_LIMIT_S:-455}
[[ " $* " == *" --cpu "* ]] && LIMIT=${GPU_CHECK_LIMIT_S:-900}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1
export NO_ALBUMENTATIONS_UPDATE=1 TQDM_DISABLE=1 # no update check online, no progress bars

check() {
    local start=$SECONDS
    if [[ -d .whl ]] && ! "$PY" -c "import albumentations" 2>/dev/null; then
        echo "[gpu_check.sh] installing $(ls .whl/*.whl | wc -l) wheels from .whl/ into /tmp/site"
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD
    fi
    echo "[gpu_check.sh] $(date -u +%FT%TZ) python: $("$PY" --version 2>&1), limit ${LIMIT} s"
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version \
        --format=csv,noheader
    echo "[gpu_check.sh] C compiler for torch.compile: $(command -v gcc || command -v cc || echo none)"
    "$PY" -c "
import albumentations, cv2, pandas, timm, tokenizers, torch, torchvision, transformers
print('[gpu_check.sh] torch', torch.__version__, 'cuda', torch.version.cuda,
      'available', torch.cuda.is_available(), '| torchvision', torchvision.__version__,
      '| timm', timm.__version__, '| transformers', transformers.__version__,
      '| albumentations', albumentations.__version__)" || {
        echo "[gpu_check.sh] FAILED: a package is missing (see above); nothing measured"
        return 3
    }
    timeout -k 10 "$LIMIT" "$PY" benchmarks/gpu_check.py "$OUT" "$@"
    local status=$?
    [[ $status == 124 || $status == 137 ]] && echo "[gpu_check.sh] FAILED: killed at ${LIMIT} s"
    echo "[gpu_check.sh] exit status ${status} after $((SECONDS - start)) s; figures: ${OUT}/gpu_check.json"
    return "$status"
}

check "$@" 2>&1 | tee "$OUT/gpu_check.log"
exit "${PIPESTATUS[0]}"
