#!/usr/bin/env bash
# Whole forward steps of three more model shapes on one lent GPU (scripts/profile_step.py --model), for
# scripts/validate_measured.py's "Whole steps of other models" section. Run from anywhere in the repo on the GPU
# machine, with a python3 that has torch with CUDA (the repo's .venv is not needed):
#
#     OUT=/some/folder bash scripts/gpu_models_check.sh
#
# Writes $OUT/nvidia-smi.txt and, per model, $OUT/steps-<model>/{steps.csv,meta.json} (7 files); copy each
# steps-<model>/ to measurements/<gpu>/ afterwards. About a minute per model on an H100 (each under `timeout 150`);
# a model that fails or times out is reported and the next one runs. Full logs go to /tmp, not $OUT.
set -u -o pipefail
: "${OUT:?set OUT to the folder the results go to}"
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
MODELS=(llama-3.2-1b qwen2.5-7b qwen3-8b)
LOGS=$(mktemp -d /tmp/gpu_models_check.XXXXXX)
mkdir -p "$OUT"

nvidia-smi -L | tee "$OUT/nvidia-smi.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())" \
    || { echo "no usable torch with CUDA"; exit 1; }

failed=()
for model in "${MODELS[@]}"; do
    echo "=== $model: start at ${SECONDS}s"
    if timeout -k 5 150 python3 scripts/profile_step.py --model "$model" -o "$OUT/steps-$model" 2>&1 \
            | tee "$LOGS/$model.log" | grep --line-buffered -E "chunk attention|skipped|wrote|Error|error"; then
        echo "=== $model: done at ${SECONDS}s, $(($(wc -l < "$OUT/steps-$model/steps.csv") - 1)) steps"
        tail -n 3 "$LOGS/$model.log" | head -n 2
    else
        echo "=== $model: FAILED (exit ${PIPESTATUS[0]}, 124 = timed out) at ${SECONDS}s; last lines of its log:"
        tail -n 25 "$LOGS/$model.log"
        failed+=("$model")
    fi
done

echo "=== all done in ${SECONDS}s; failed: ${failed[*]:-none}"
ls -l "$OUT"/steps-*/ 2>/dev/null
[ ${#failed[@]} -eq 0 ]
