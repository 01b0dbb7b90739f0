#!/usr/bin/env bash
# The one prepared device call for issues 16 and 17: both GPU benchmarks, results in $OUT (default results/gpu).
#
#   here, once:  echo /.whl/ >> .git/info/exclude
#                python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#                    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .whl transformers==5.24.0 \
#                    huggingface_hub==2.4.0      # transformers 5.24 checks huggingface_hub >= 1.31 at import
#   device run:  command "bash benchmarks/gpu_run.sh", carry [".whl"], timeout_s 600
#   CPU twin:    SMOKE=1 bash benchmarks/gpu_run.sh   (tiny shapes, capture replaced by its CPU twin)
#
# The device image has its own torch and transformers 5.17; the wheel brings the transformers this project tests
# (5.24). gpu_eagle3_step.py runs first (under a minute), then gpu_assisted.py (about 6 minutes on an H200, with a
# budget that skips optional parts past 7 minutes); each writes its JSON as it goes, so a timeout still returns data.
set -uo pipefail
out="${OUT:-results/gpu}"
python="${PYTHON:-python3}"
mkdir -p "$out"
export PYTHONPATH="$PWD"
if ls .whl/*.whl >/dev/null 2>&1; then
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
  export PYTHONPATH="/tmp/site:$PWD"
fi
export PYTHONUNBUFFERED=1
smoke=()
[ "${SMOKE:-0}" = "1" ] && smoke=(--smoke)
# one line and exit 1 when the stack does not import (e.g. a huggingface_hub older than transformers wants)
if ! "$python" -c "import torch, transformers, huggingface_hub; print('torch', torch.__version__, 'transformers',
      transformers.__version__, 'huggingface_hub', huggingface_hub.__version__,
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA device')" 2>"$out/preflight.err"; then
  echo "gpu_run: torch/transformers do not import here: $(tail -n 1 "$out/preflight.err")" >&2
  echo "gpu_run: carry the wheels of transformers 5.24 and huggingface_hub in .whl/ (see the header)" >&2
  exit 1
fi
timeout 90 "$python" benchmarks/gpu_eagle3_step.py "${smoke[@]}" --out "$out" 2>&1 | tee "$out/eagle3_step.log"
timeout 480 "$python" benchmarks/gpu_assisted.py "${smoke[@]}" --out "$out" --budget-s 400 2>&1 \
  | grep -v "Loading weights" | tee "$out/gpu_assisted.log"
