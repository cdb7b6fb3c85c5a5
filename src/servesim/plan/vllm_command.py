"""The `vllm serve` command lines that deploy a planned replica, with vLLM's flag names; for a disaggregated
unit one line per pool, with vLLM's NIXL KV connector (`--kv-transfer-config`) and the placeholders a user
fills in (hosts, ports) and the P/D-aware proxy that must sit in front."""

from __future__ import annotations

import json

from servesim.config import RunConfig

NIXL_DOCS = "https://docs.vllm.ai/en/latest/features/nixl_connector_usage.html"
FILL_IN = ("<HOST>: each instance's address, reachable from the other pool (VLLM_NIXL_SIDE_CHANNEL_HOST)",
           "<PORT>, <SIDE_PORT>: a free HTTP port and a free NIXL side-channel port per instance",
           "the P/D proxy in front: it sends each request to a prefill instance with max_tokens=1, then to a "
           "decode instance with the KV transfer parameters the prefill returned (vLLM's "
           "tests/v1/kv_connector/nixl_integration/toy_proxy_server.py --prefiller-hosts ... --decoder-hosts ..., "
           "llm-d or NVIDIA Dynamo in production)",
           f"the NIXL transport: `pip install nixl`, UCX_TLS / UCX_NET_DEVICES for the KV link ({NIXL_DOCS})")


def vllm_serve(candidate, cfg: RunConfig, model_id: str, engine: dict, tp: int | None = None) -> str:
    args = [f"vllm serve {model_id}", f"--tensor-parallel-size {candidate.tp if tp is None else tp}"]
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


def pool_command(candidate, cfg: RunConfig, model_id: str, engine: dict, role: str) -> str:
    """One instance of a pool: vLLM's NIXL connector, the side channel this instance listens on."""
    pool = candidate.prefill if role == "prefill" else candidate.decode
    kv_role = "kv_producer" if role == "prefill" else "kv_consumer"
    connector = json.dumps({"kv_connector": "NixlConnector", "kv_role": kv_role}, separators=(",", ":"))
    return (f"VLLM_NIXL_SIDE_CHANNEL_HOST=<HOST> VLLM_NIXL_SIDE_CHANNEL_PORT=<SIDE_PORT> "
            f"{vllm_serve(candidate, cfg, model_id, engine, tp=pool.tp)} --port <PORT> "
            f"--kv-transfer-config '{connector}'")


def deployment(candidate, cfg: RunConfig, model_id: str, engine: dict, replicas: int) -> dict:
    """What to run for `replicas` replicas (units) of a candidate: `vllm_serve` (the command text), `deploy`
    (how many copies, where), and for a disaggregated unit the per-pool lines and what to fill in."""
    if candidate.mode == "colocated":
        return {"vllm_serve": vllm_serve(candidate, cfg, model_id, engine),
                "deploy": f"{replicas} replica(s) of this command, one per {candidate.gpus_per_replica} GPU(s), "
                          "behind a load balancer"}
    p, d = candidate.prefill, candidate.decode
    lines = {role: pool_command(candidate, cfg, model_id, engine, role) for role in ("prefill", "decode")}
    text = "\n".join([f"# fill in: {item}" for item in FILL_IN]
                     + [f"# prefill pool: {p.count * replicas} instance(s) of {p.tp} x {p.gpu}, each:", lines["prefill"],
                        f"# decode pool: {d.count * replicas} instance(s) of {d.tp} x {d.gpu}, each:", lines["decode"]])
    return {"vllm_serve": text, "vllm_serve_pools": lines, "fill_in": list(FILL_IN),
            "deploy": f"{replicas} unit(s) of {p.count} prefill + {d.count} decode instances, i.e. {p.count * replicas} "
                      f"prefill instance(s) of {p.tp} {p.gpu} GPU(s) and {d.count * replicas} decode instance(s) of "
                      f"{d.tp} {d.gpu} GPU(s), behind a P/D proxy"}
