"""How servesim expresses each row of ../shared/data/published/ground_truth.csv (1-based data rows).

Each entry: `run` (RunConfig settings of one simulation) and `metric` (what to read from its summary), or
`step` (a single step priced by the cost model, for per-iteration timings), or `kernel`/`spec` (a kernel
prediction or catalog value, reported apart from the end-to-end rows), or `skip` (why servesim cannot express
it). `check` guards the alignment with the CSV (model substring, published value).

Choices the sources leave open are servesim assumptions, stated in `note`: NIM's backend (TensorRT-LLM),
trtllm-bench's batch size (2048), Splitwise's engine (vLLM's kernels), static batching as one closed-loop
batch with an unlimited step budget.
"""

TRT_V1 = {"engine": "trtllm", "dtype": "fp8", "kv_cache_dtype": "fp8", "gpu_memory_utilization": 0.95,
          "max_num_seqs": 2048, "max_num_batched_tokens": 8192}
NIM_FP8 = {"engine": "trtllm", "dtype": "fp8", "kv_cache_dtype": "fp8"}


def offline(isl, osl, n, **kw):
    return {"isl": isl, "osl": osl, "requests": n, "concurrency": n, "workload": None, **kw}


def static_batch(isl, osl, batch, **kw):
    return {"isl": isl, "osl": osl, "requests": batch, "concurrency": batch, "workload": None, "max_num_seqs": batch,
            "max_num_batched_tokens": batch * (isl + 1), **kw}


def closed(isl, osl, c, n, **kw):
    return {"isl": isl, "osl": osl, "requests": n, "concurrency": c, "workload": None, **kw}


def sharegpt(qps, n, **kw):
    return {"workload": "sharegpt", "qps": qps, "arrival": "poisson", "requests": n, "max_model_len": 4096, **kw}


L8, L70, L405, L2_7, L2_70 = "llama-3.1-8b", "llama-3.1-70b", "llama-3.1-405b", "llama-2-7b", "llama-2-70b"
V1_NOTE = "FP8 KV cache assumed (ModelOpt FP8 checkpoints); trtllm-bench batch size not given: 2048 assumed"
STATIC = "static batching as one batch, whole prefill in one step"
NIM = "NIM backend not stated: TensorRT-LLM kernels and FP8 KV cache assumed"
SHAREGPT = ("servesim's sharegpt preset (Vidur's ShareGPT conversations, mean prompt 2,340 tokens) is longer than "
            "sglang.bench_serving's ShareGPT sampling")
VLLM060 = "vLLM 0.6.0 ran --num-scheduler-steps 10 (multi-step), which servesim does not model"

ROWS = {
    1: dict(run=offline(128, 128, 30000, model=L8, gpu="h100", **TRT_V1), metric="output_tps", note=V1_NOTE),
    2: dict(run=offline(1000, 1000, 3000, model=L8, gpu="h100", **TRT_V1), metric="output_tps", note=V1_NOTE),
    3: dict(run=offline(2048, 128, 3000, model=L8, gpu="h100", **TRT_V1), metric="output_tps", note=V1_NOTE),
    4: dict(run=offline(20000, 2000, 1000, model=L8, gpu="h100", **TRT_V1), metric="output_tps", note=V1_NOTE),
    5: dict(run=offline(1000, 1000, 3000, model=L8, gpu="h200", **TRT_V1), metric="output_tps",
            note=V1_NOTE + "; H200 extrapolated from H100 kernels"),
    6: dict(run=offline(1000, 1000, 3000, model=L70, gpu="h100", tp=2, **TRT_V1), metric="output_tps",
            note=V1_NOTE + "; Llama-3.3-70B = Llama-3.1-70B architecture"),
    7: dict(run=offline(128, 2048, 3000, model=L70, gpu="h100", tp=2, **TRT_V1), metric="output_tps", note=V1_NOTE),
    8: dict(run=offline(5000, 500, 1500, model=L70, gpu="h100", tp=2, **TRT_V1), metric="output_tps", note=V1_NOTE),
    9: dict(run=offline(1000, 1000, 3000, model=L70, gpu="h200", **TRT_V1), metric="output_tps",
            note=V1_NOTE + "; H200 extrapolated"),
    10: dict(run=offline(1000, 1000, 3000, model=L405, gpu="h100", tp=8, **TRT_V1), metric="output_tps",
             note=V1_NOTE),
    11: dict(run=static_batch(128, 128, 768, model=L2_7, gpu="h100", engine="trtllm", dtype="fp8",
                              kv_cache_dtype="fp8"), metric="output_tps_per_gpu", note=STATIC),
    12: dict(run=static_batch(128, 128, 1024, model=L2_70, gpu="h100", tp=2, engine="trtllm", dtype="fp8"),
             metric="output_tps_per_gpu", note=STATIC),
    13: dict(run=static_batch(128, 128, 384, model=L2_7, gpu="a100", engine="trtllm"), metric="output_tps",
             note=STATIC),
    14: dict(run=static_batch(2048, 128, 120, model=L2_70, gpu="a100", tp=4, engine="trtllm"), metric="output_tps",
             note=STATIC + "; the published 79 tok/s looks per user, not total"),
    15: dict(run=closed(2048, 1, 1, 3, model=L2_7, gpu="h100", engine="trtllm", dtype="fp8"), metric="ttft_mean"),
    16: dict(run=closed(2048, 1, 1, 3, model=L2_70, gpu="h100", tp=4, engine="trtllm", dtype="fp8"),
             metric="ttft_mean"),
    17: dict(run=closed(2048, 1, 1, 3, model=L2_7, gpu="a100", engine="trtllm"), metric="ttft_mean"),
    18: dict(run=closed(2048, 1, 1, 3, model=L2_70, gpu="a100", tp=4, engine="trtllm"), metric="ttft_mean"),
    19: dict(run=closed(128, 1, 1, 3, model=L2_70, gpu="a100", tp=4, engine="trtllm"), metric="ttft_mean"),
    20: dict(run=closed(5000, 500, 1, 10, model=L70, gpu="h100", tp=2, **NIM_FP8),
             metric="ttft_mean", note=NIM),
    21: dict(run=closed(5000, 500, 1, 10, model=L70, gpu="h100", tp=2, **NIM_FP8),
             metric="itl_mean", note=NIM),
    22: dict(run=closed(5000, 500, 50, 500, model=L70, gpu="h100", tp=2, **NIM_FP8),
             metric="ttft_mean", note=NIM),
    23: dict(run=closed(5000, 500, 50, 500, model=L70, gpu="h100", tp=2, **NIM_FP8),
             metric="itl_mean", note=NIM),
    24: dict(run=closed(5000, 500, 100, 1000, model=L70, gpu="h100", tp=2, **NIM_FP8),
             metric="ttft_mean", note=NIM),
    25: dict(run=closed(5000, 500, 100, 1000, model=L70, gpu="h100", tp=2, **NIM_FP8),
             metric="itl_mean", note=NIM),
    26: dict(run=closed(5000, 500, 100, 1000, model=L70, gpu="h100", tp=2, **NIM_FP8),
             metric="output_tps", note=NIM),
    27: dict(run=closed(500, 2000, 1, 10, model=L70, gpu="h100", tp=2, **NIM_FP8),
             metric="ttft_mean", note=NIM),
    28: dict(run=sharegpt(4, 1200, model=L8, gpu="a100"), metric="ttft_p50", note=VLLM060 + "; " + SHAREGPT),
    29: dict(run=sharegpt(4, 1200, model=L8, gpu="a100"), metric="tpot_p50", note=VLLM060 + "; " + SHAREGPT),
    30: dict(run=sharegpt(4, 1200, model=L8, gpu="a100", engine="sglang"), metric="ttft_p50", note=SHAREGPT),
    31: dict(run=sharegpt(8, 2400, model=L70, gpu="h100", tp=4), metric="tpot_p50", note=VLLM060 + "; " + SHAREGPT),
    32: dict(run=sharegpt(8, 2400, model=L70, gpu="h100", tp=4, engine="sglang"), metric="ttft_p50", note=SHAREGPT),
    33: dict(run=dict(sharegpt(None, 5000, model=L8, gpu="a100"), qps=None, arrival=None, concurrency=5000),
             metric="output_tps", note=VLLM060 + "; " + SHAREGPT),
    34: dict(run=dict(sharegpt(None, 5000, model=L70, gpu="h100", tp=4, gpu_memory_utilization=0.88), qps=None,
                      arrival=None, concurrency=5000), metric="output_tps", note=VLLM060 + "; " + SHAREGPT),
    35: dict(skip="MLPerf OpenOrca request lengths are not in the shared data"),
    36: dict(skip="MLPerf OpenOrca request lengths are not in the shared data"),
    37: dict(skip="MLPerf OpenOrca request lengths are not in the shared data"),
    38: dict(skip="MLPerf OpenOrca request lengths are not in the shared data"),
    39: dict(skip="DeepSpeed-FastGen engine; SLA thresholds scale with each request's length"),
    40: dict(skip="SLA thresholds scale with each request's length (servesim's SLOs are fixed)"),
    41: dict(skip="DeepSpeed-FastGen engine; client count and length panel not stated"),
    42: dict(skip="DeepSpeed-FastGen engine; client count not stated"),
    43: dict(step=dict(model=L2_70, gpu="h100", tp=8, kind="prefill", batch=1, prompt=1024), metric="step_ms",
             note="engine not stated: vLLM kernels"),
    44: dict(step=dict(model=L2_70, gpu="h100", tp=8, kind="decode", batch=1, prompt=1024), metric="step_ms",
             note="engine not stated: vLLM kernels"),
    45: dict(step=dict(model=L2_70, gpu="a100", tp=8, kind="prefill", batch=1, prompt=2048), metric="step_ms",
             note="engine not stated: vLLM kernels"),
    46: dict(step=dict(model=L2_70, gpu="a100", tp=8, kind="decode", batch=1, prompt=2048), metric="step_ms",
             note="engine not stated: vLLM kernels"),
    47: dict(step=dict(model=L2_70, gpu="h100", tp=4, kind="decode", batch=64, prompt=512), metric="step_ms",
             note="engine not stated: vLLM kernels"),
    48: dict(step=dict(model=L2_70, gpu="a100", tp=4, kind="decode", batch=64, prompt=512), metric="step_ms",
             note="engine not stated: vLLM kernels"),
    49: dict(step=dict(model=L2_70, gpu="h100", tp=2, kind="prefill", batch=1, prompt=8192), metric="step_ms",
             note="engine not stated: vLLM kernels"),
    50: dict(spec=("h100", "bf16_flops", 1e-12)),
    51: dict(spec=("h100", "mem_bandwidth", 1e-9)),
    52: dict(spec=("a100", "bf16_flops", 1e-12)),
    53: dict(kernel=("h100", 4096, 4096, 4096)),
    54: dict(kernel=("h100", 8192, 8192, 8192)),
    55: dict(kernel=("h100", 1, 8192, 8192)),
    56: dict(kernel=("a100", 8192, 8192, 8192)),
    57: dict(kernel=("a100", 1, 8192, 8192)),
}
