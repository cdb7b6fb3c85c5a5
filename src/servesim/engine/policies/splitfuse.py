"""DeepSpeed-FastGen's Dynamic SplitFuse (Holmes et al., arXiv:2401.08671).

Every forward pass aims at one fixed size, the token budget (default 768, DeepSpeed-MII's
`max_ragged_batch_size`): decodes first, then prompts, long prompts split into chunks over several passes
and short ones fused to fill the pass exactly; only a prompt's final chunk samples a token. Unlike Sarathi
(vLLM's block manager), FastGen allocates KV blocks as tokens are scheduled instead of reserving the whole
sequence at admission, so more prompts start and running out of blocks later forces recompute preemption.
"""

from __future__ import annotations

from typing import ClassVar

from servesim.engine.policies.sarathi import SarathiPolicy

FORWARD_SIZE = 768


class SplitFusePolicy(SarathiPolicy):
    name: ClassVar[str] = "splitfuse"

    @staticmethod
    def engine_defaults(max_model_len: int) -> dict:
        return {"max_num_batched_tokens": FORWARD_SIZE, "max_num_seqs": 512}  # DeepSpeed-MII's defaults
    reserve_full: ClassVar[bool] = False  # blocks for the scheduled chunk only
