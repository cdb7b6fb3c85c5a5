"""Engine knobs, named as vLLM names them, with vLLM's defaults."""

from __future__ import annotations

from dataclasses import astuple, dataclass

from servesim.errors import ServesimError

GiB = 1024**3


@dataclass(frozen=True)
class EngineConfig:
    num_gpu_blocks: int
    block_size: int = 16
    max_num_batched_tokens: int = 8192
    max_num_seqs: int = 1024
    max_model_len: int = 8192
    enable_prefix_caching: bool = True
    long_prefill_token_threshold: int = 0
    enable_chunked_prefill: bool = True
    watermark: float = 0.0
    # The OpenAI server rejects prompt + max_tokens > max_model_len with HTTP 400; the engine alone only
    # rejects prompt > max_model_len and stops a request when it reaches max_model_len.
    reject_overlong: bool = True

    def __reduce__(self):
        # Compiled by mypyc the class has no __dict__, and pickle's default restores state through the frozen
        # __setattr__, which refuses: rebuild from the fields instead (the same either way).
        return (EngineConfig, astuple(self))

    def validate(self) -> None:
        for name in ("num_gpu_blocks", "block_size", "max_num_batched_tokens", "max_num_seqs", "max_model_len"):
            if getattr(self, name) <= 0:
                raise ServesimError(f"{name} must be positive, got {getattr(self, name)}")
        if self.long_prefill_token_threshold < 0:
            raise ServesimError(f"long_prefill_token_threshold must be >= 0, got {self.long_prefill_token_threshold}")
        if not 0.0 <= self.watermark < 1.0:
            raise ServesimError(f"watermark must be in [0, 1), got {self.watermark}")
        capacity = (self.num_gpu_blocks - 1) * self.block_size
        if capacity < self.max_model_len:
            raise ServesimError(
                f"the KV cache holds {capacity} tokens ({self.num_gpu_blocks} blocks of {self.block_size}, one reserved) "
                f"but max_model_len is {self.max_model_len}: vLLM refuses to start; lower max_model_len or add memory"
            )
        if not self.enable_chunked_prefill and self.max_num_batched_tokens < self.max_model_len:
            raise ServesimError(
                f"without chunked prefill max_num_batched_tokens ({self.max_num_batched_tokens}) must be >= "
                f"max_model_len ({self.max_model_len}), as vLLM requires"
            )


def default_scheduler_limits(device_mem_bytes: float, device_name: str) -> tuple[int, int]:
    """vLLM's OpenAI-server defaults for (max_num_batched_tokens, max_num_seqs) by device memory."""
    if device_mem_bytes >= 160 * GiB:
        return 16384, 1024
    if device_mem_bytes >= 70 * GiB and "a100" not in device_name.lower():
        return 8192, 1024
    return 2048, 256
