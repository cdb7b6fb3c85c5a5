#!/bin/bash
# The checks behind a speed-only change (docs/performance.md, rounds 4-6), from the repository root:
#
#   scripts/speed_ab.sh results DIR    # 15 `servesim simulate` runs into DIR: every policy, 4 and 16 replicas,
#                                      # 1P1D and 1P2D, prefix affinity, a roofline clock, a tight KV cache
#   diff -r BEFORE_DIR DIR             # a speed-only change leaves them byte-identical
#   scripts/speed_ab.sh instructions [REQUESTS]   # callgrind: instructions in ClusterRun.run (the event loop)
#                                      # of bench_phases.py with 16 replicas (default 20000 requests; counts vary
#                                      # by ~0.1% from run to run)
#
# SERVESIM_PURE=1 runs the Python sources instead of the compiled core. Needs valgrind for `instructions`, and
# ../shared/data for the Azure trace run (skipped without it).
set -euo pipefail
S=".venv/bin/servesim simulate --model llama-3.1-8b --gpu h100 --seed 1 --quiet"
case "${1:-}" in
results)
    O=${2:?usage: speed_ab.sh results DIR}
    mkdir -p "$O"
    AZ=$(find "$(realpath ../shared/data 2>/dev/null || echo /nonexistent)" -name AzureLLMInferenceTrace_conv.csv 2>/dev/null | head -1)
    $S --workload chat --requests 3000 -o "$O/chat" &
    if [ -n "$AZ" ]; then $S --trace "$AZ" --limit 3000 -o "$O/azure" & else echo "skipped: the Azure trace is absent"; fi
    wait
    $S --workload chat --requests 3000 --replicas 4 --router least-outstanding -o "$O/rep4" &
    $S --workload chat --requests 2000 --prefill-pool h100:1x1 --decode-pool h100:1x1 -o "$O/pd11" &
    wait
    $S --workload chat --requests 3000 --num-gpu-blocks 600 --max-model-len 8192 -o "$O/blocks600" &
    $S --workload chat --requests 20000 --replicas 16 --router least-outstanding --qps 80 -o "$O/rep16" &
    wait
    $S --workload chat --requests 3000 --num-gpu-blocks 600 --max-model-len 8192 --policy sarathi -o "$O/sarathi600" &
    $S --workload chat --requests 3000 --replicas 3 --router prefix-affinity -o "$O/affinity" &
    wait
    $S --workload chat --requests 2000 --prefill-pool h100:1x1 --decode-pool h100:1x2 --kv-layerwise -o "$O/pd12" &
    $S --workload chat --requests 2000 --clients a:0.5,b:0.5 --policy fair --cost-model roofline -o "$O/fair" &
    wait
    for p in orca static sglang priority splitfuse; do
        $S --workload chat --requests 1500 --num-gpu-blocks 800 --max-model-len 8192 --policy $p \
            --clients a:0.5:0,b:0.5:1 -o "$O/p_$p"
    done
    ;;
instructions)
    OUT=$(mktemp -d)
    valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.out" .venv/bin/python benchmarks/bench_phases.py \
        --requests "${2:-20000}" > "$OUT/log" 2>&1
    callgrind_annotate --inclusive=yes "$OUT/cg.out" > "$OUT/annotated" 2>/dev/null || true
    LOOP=$(grep -m1 "CPyDef_driver___ClusterRun___run " "$OUT/annotated" | sed -E 's/^ *([0-9,]+) .*/\1/' || true)
    if [ -n "$LOOP" ]; then
        echo "ClusterRun.run: $LOOP instructions"
        rm -rf "$OUT"
    else
        echo "no compiled ClusterRun.run in the profile (run \`make compile\`; the profile is $OUT/cg.out)"
    fi
    ;;
*)
    sed -n '2,12p' "$0"
    exit 2
    ;;
esac
