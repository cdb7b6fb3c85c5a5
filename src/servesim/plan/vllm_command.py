"""The `vllm serve` command line that deploys a planned replica, with vLLM's flag names."""

from __future__ import annotations

from servesim.config import RunConfig
from servesim.plan.space import Candidate


def vllm_serve(candidate: Candidate, cfg: RunConfig, model_id: str, engine: dict) -> str:
    args = [f"vllm serve {model_id}", f"--tensor-parallel-size {candidate.tp}"]
    if candidate.pp > 1:
        args.append(f"--pipeline-parallel-size {candidate.pp}")
    if cfg.dtype == "fp8":
        args.append("--quantization fp8")
    if cfg.kv_cache_dtype:
        args.append(f"--kv-cache-dtype {cfg.kv_cache_dtype}")
    args += [f"--max-model-len {engine['max_model_len']}", f"--max-num-seqs {engine['max_num_seqs']}",
             f"--max-num-batched-tokens {engine['max_num_batched_tokens']}"]
    if cfg.long_prefill_token_threshold:
        args.append(f"--long-prefill-token-threshold {cfg.long_prefill_token_threshold}")
    if cfg.gpu_memory_utilization != 0.9:
        args.append(f"--gpu-memory-utilization {cfg.gpu_memory_utilization}")
    if cfg.block_size != 16:
        args.append(f"--block-size {cfg.block_size}")
    if not cfg.enable_prefix_caching:
        args.append("--no-enable-prefix-caching")
    if not cfg.enable_chunked_prefill:
        args.append("--no-enable-chunked-prefill")
    if cfg.enforce_eager:
        args.append("--enforce-eager")
    return " ".join(args)
