"""The search space: every deployment shape the planner may choose, one Candidate per replica configuration.

A Candidate is one replica's hardware and engine knobs; how many replicas a deployment needs follows from
the candidate's capacity and the target rate, so replicas are derived, not enumerated. Disaggregated
prefill/decode pools plug in as another candidate kind once the cluster simulator serves them.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, replace

from servesim.config import RunConfig
from servesim.engine.config import default_scheduler_limits
from servesim.errors import ServesimError
from servesim.hardware.catalog import get_device
from servesim.models.spec import ModelSpec
from servesim.perf.parallel import check_parallelism

VALID_TP = (1, 2, 4, 8)


@dataclass(frozen=True)
class Candidate:
    gpu: str
    tp: int = 1
    pp: int = 1
    dtype: str = "bf16"
    max_num_seqs: int | None = None  # None: vLLM's default for the GPU
    max_num_batched_tokens: int | None = None
    long_prefill_token_threshold: int = 0  # vLLM's per-request prefill chunk cap; 0 = no cap

    @property
    def mode(self) -> str:
        return "colocated"

    @property
    def gpus_per_replica(self) -> int:
        return self.tp * self.pp

    @property
    def id(self) -> str:
        chunk = f"-chunk{self.long_prefill_token_threshold}" if self.long_prefill_token_threshold else ""
        pp = f"-pp{self.pp}" if self.pp > 1 else ""
        return f"{self.gpu}-tp{self.tp}{pp}-{self.dtype}-seqs{self.max_num_seqs}-tokens{self.max_num_batched_tokens}{chunk}"

    def run_config(self, base: RunConfig) -> RunConfig:
        """The base run settings with this candidate's hardware and knobs."""
        return replace(base, gpu=self.gpu, tp=self.tp, pp=self.pp, dtype=self.dtype, max_num_seqs=self.max_num_seqs,
                       max_num_batched_tokens=self.max_num_batched_tokens,
                       long_prefill_token_threshold=self.long_prefill_token_threshold)

    def as_dict(self) -> dict:
        return {"id": self.id, "mode": self.mode, **asdict(self), "gpus_per_replica": self.gpus_per_replica}


@dataclass(frozen=True)
class SearchSpace:
    gpus: tuple[str, ...]
    tp: tuple[int, ...] = VALID_TP
    pp: tuple[int, ...] = (1,)
    dtype: tuple[str, ...] = ("bf16",)
    max_num_seqs: tuple[int | None, ...] = (None,)
    max_num_batched_tokens: tuple[int | None, ...] = (None,)
    long_prefill_token_threshold: tuple[int, ...] = (0,)

    def as_dict(self) -> dict:
        return {k: list(v) for k, v in asdict(self).items()}

    def candidates(self, model: ModelSpec) -> list[Candidate]:
        """Every combination the model's shape allows (TP must divide the attention heads)."""
        for tp in self.tp:
            if tp not in VALID_TP:
                raise ServesimError(f"--tp {tp} is not supported; valid choices: {', '.join(map(str, VALID_TP))}")
        devices = {d.name: d for d in (get_device(g) for g in self.gpus)}
        out = []
        for gpu, tp, pp, dtype, seqs, tokens, chunk in itertools.product(
                devices, self.tp, self.pp, self.dtype, self.max_num_seqs, self.max_num_batched_tokens,
                self.long_prefill_token_threshold):
            try:
                check_parallelism(model, devices[gpu], tp, pp)
            except ServesimError:
                continue  # a layout vLLM would refuse for this model
            # "auto" (None) is vLLM's default for the GPU: resolve it so equal configurations meet once
            default_tokens, default_seqs = default_scheduler_limits(devices[gpu].mem_bytes, gpu)
            out.append(Candidate(gpu, tp, pp, dtype, default_seqs if seqs is None else seqs,
                                 default_tokens if tokens is None else tokens, chunk))
        if not out:
            raise ServesimError(f"no layout in TP {list(self.tp)} x PP {list(self.pp)} suits {model.name} "
                                f"({model.num_heads} attention heads, {model.num_layers} layers)")
        return sorted(set(out), key=lambda c: c.id)
