"""The search space: every deployment shape the planner may choose, one candidate per replica configuration.

A candidate is one replica's hardware and engine knobs: a co-located replica (`Candidate`, prefill and
decode on the same GPUs) or a disaggregated unit (`DisaggCandidate`, xPyD: x prefill replicas and y decode
replicas, each pool with its own GPU type and TP, KV caches moving between them). How many replicas (units) a
deployment needs follows from the candidate's capacity and the target rate, so replicas are derived, not
enumerated. The search itself only uses what both kinds share: `id`, `mode`, `gpus_per_replica`,
`gpu_counts`, `run_config` and `cluster_config`.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, replace

from servesim.config import RunConfig
from servesim.engine.config import default_scheduler_limits
from servesim.errors import ServesimError
from servesim.hardware.catalog import get_device
from servesim.models.spec import ModelSpec
from servesim.perf.parallel import check_parallelism

VALID_TP = (1, 2, 4, 8)
DISAGG_MODES = ("off", "on", "only")  # co-located only, both, disaggregated only
POOL_FIELDS = ("prefill_gpu", "prefill_tp", "prefill_replicas", "decode_gpu", "decode_tp", "decode_replicas")


def _knob_id(c) -> str:
    chunk = f"-chunk{c.long_prefill_token_threshold}" if c.long_prefill_token_threshold else ""
    pp = f"-pp{c.pp}" if c.pp > 1 else ""
    return f"{pp}-{c.dtype}-seqs{c.max_num_seqs}-tokens{c.max_num_batched_tokens}{chunk}"


def _single(base: RunConfig) -> RunConfig:
    """The base settings as one replica: cluster settings in a plan's base config are the planner's to choose."""
    return replace(base, replicas=1, prefill_pool=None, decode_pool=None)


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

    def gpu_counts(self) -> dict[str, int]:
        """GPUs of each type in one replica (what it costs)."""
        return {self.gpu: self.gpus_per_replica}

    @property
    def id(self) -> str:
        return f"{self.gpu}-tp{self.tp}{_knob_id(self)}"

    def run_config(self, base: RunConfig) -> RunConfig:
        """The base run settings with this candidate's hardware and knobs: one replica."""
        return replace(_single(base), gpu=self.gpu, tp=self.tp, pp=self.pp, dtype=self.dtype,
                       max_num_seqs=self.max_num_seqs, max_num_batched_tokens=self.max_num_batched_tokens,
                       long_prefill_token_threshold=self.long_prefill_token_threshold)

    def cluster_config(self, base: RunConfig, replicas: int) -> RunConfig:
        """The whole deployment: `replicas` copies behind the base config's router."""
        return replace(self.run_config(base), replicas=replicas)

    def as_dict(self) -> dict:
        return {"id": self.id, "mode": self.mode, **asdict(self), **dict.fromkeys(POOL_FIELDS),
                "gpus_per_replica": self.gpus_per_replica}


@dataclass(frozen=True)
class Pool:
    """One pool of a disaggregated unit: `count` replicas of `tp` GPUs of type `gpu`."""

    gpu: str
    tp: int
    count: int

    def spec(self, units: int = 1) -> str:
        """`GPU:TPxN` as `--prefill-pool`/`--decode-pool` take it, for `units` copies of the unit."""
        return f"{self.gpu}:{self.tp}x{self.count * units}"


@dataclass(frozen=True)
class DisaggCandidate:
    """An xPyD unit: `prefill.count` prefill replicas and `decode.count` decode replicas (DistServe, Splitwise).
    Both pools share the engine knobs and the pipeline depth (one RunConfig drives both)."""

    prefill: Pool
    decode: Pool
    pp: int = 1
    dtype: str = "bf16"
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    long_prefill_token_threshold: int = 0

    @property
    def mode(self) -> str:
        return "disaggregated"

    @property
    def gpu(self) -> str:
        p, d = self.prefill.gpu, self.decode.gpu
        return p if p == d else f"{p}+{d}"

    @property
    def tp(self) -> None:
        return None  # per pool: prefill.tp, decode.tp

    @property
    def gpus_per_replica(self) -> int:
        return (self.prefill.tp * self.prefill.count + self.decode.tp * self.decode.count) * self.pp

    def gpu_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for pool in (self.prefill, self.decode):
            out[pool.gpu] = out.get(pool.gpu, 0) + pool.tp * pool.count * self.pp
        return out

    @property
    def id(self) -> str:
        p, d = self.prefill, self.decode
        return f"{p.count}P-{p.gpu}-tp{p.tp}+{d.count}D-{d.gpu}-tp{d.tp}{_knob_id(self)}"

    def run_config(self, base: RunConfig, units: int = 1) -> RunConfig:
        return replace(_single(base), gpu=self.prefill.gpu, tp=self.prefill.tp, pp=self.pp, dtype=self.dtype,
                       max_num_seqs=self.max_num_seqs, max_num_batched_tokens=self.max_num_batched_tokens,
                       long_prefill_token_threshold=self.long_prefill_token_threshold,
                       prefill_pool=self.prefill.spec(units), decode_pool=self.decode.spec(units))

    def cluster_config(self, base: RunConfig, replicas: int) -> RunConfig:
        """`replicas` units pooled: replicas x x prefill and replicas x y decode replicas behind the routers."""
        return self.run_config(base, replicas)

    def as_dict(self) -> dict:
        p, d = self.prefill, self.decode
        return {"id": self.id, "mode": self.mode, "gpu": self.gpu, "tp": None, "pp": self.pp, "dtype": self.dtype,
                "max_num_seqs": self.max_num_seqs, "max_num_batched_tokens": self.max_num_batched_tokens,
                "long_prefill_token_threshold": self.long_prefill_token_threshold,
                "prefill_gpu": p.gpu, "prefill_tp": p.tp, "prefill_replicas": p.count,
                "decode_gpu": d.gpu, "decode_tp": d.tp, "decode_replicas": d.count,
                "gpus_per_replica": self.gpus_per_replica}


def pool_counts(max_pool: int) -> list[tuple[int, int]]:
    """(prefill, decode) replica counts of a unit: coprime pairs, since 2P2D is two 1P1D units, which the
    derived replica count already covers."""
    return [(x, y) for x in range(1, max_pool + 1) for y in range(1, max_pool + 1) if math.gcd(x, y) == 1]


@dataclass(frozen=True)
class SearchSpace:
    gpus: tuple[str, ...]
    tp: tuple[int, ...] = VALID_TP
    pp: tuple[int, ...] = (1,)
    dtype: tuple[str, ...] = ("bf16",)
    max_num_seqs: tuple[int | None, ...] = (None,)
    max_num_batched_tokens: tuple[int | None, ...] = (None,)
    long_prefill_token_threshold: tuple[int, ...] = (0,)
    disagg: str = "off"  # DISAGG_MODES
    disagg_max_pool: int = 4  # most replicas in one pool of a unit
    disagg_max_gpus: int = 8  # most GPUs in one unit (8: one node, KV over NVLink)
    disagg_mixed_gpus: bool = False  # pools of different GPU types (KV over the network)

    def as_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def check(self) -> None:
        for tp in self.tp:
            if tp not in VALID_TP:
                raise ServesimError(f"--tp {tp} is not supported; valid choices: {', '.join(map(str, VALID_TP))}")
        if self.disagg not in DISAGG_MODES:
            raise ServesimError(f"--disagg {self.disagg!r} is not a mode; valid choices: {', '.join(DISAGG_MODES)}")
        if self.disagg_max_pool < 1:
            raise ServesimError(f"--disagg-max-pool must be >= 1, got {self.disagg_max_pool}")
        if self.disagg_max_gpus < 2:
            raise ServesimError(f"--disagg-max-gpus must be >= 2 (one prefill and one decode GPU), "
                                f"got {self.disagg_max_gpus}")

    def candidates(self, model: ModelSpec) -> list[Candidate | DisaggCandidate]:
        """Every combination the model's shape allows (a layout vLLM would refuse is left out)."""
        self.check()
        devices = {d.name: d for d in (get_device(g) for g in self.gpus)}
        layouts = {}  # (gpu, tp, pp) -> vLLM accepts it for this model
        for gpu, tp, pp in itertools.product(devices, self.tp, self.pp):
            try:
                check_parallelism(model, devices[gpu], tp, pp)
                layouts[gpu, tp, pp] = True
            except ServesimError:
                layouts[gpu, tp, pp] = False
        knobs = list(itertools.product(self.dtype, self.max_num_seqs, self.max_num_batched_tokens,
                                       self.long_prefill_token_threshold))
        out: list[Candidate | DisaggCandidate] = []
        if self.disagg != "only":
            for (gpu, tp, pp), ok in layouts.items():
                for dtype, seqs, tokens, chunk in knobs if ok else ():
                    out.append(Candidate(gpu, tp, pp, dtype, *self._resolve(devices[gpu], seqs, tokens), chunk))
        if self.disagg != "off":
            out += self._disaggregated(devices, layouts, knobs)
        if not out:
            within = f" within --disagg-max-gpus {self.disagg_max_gpus}" if self.disagg == "only" else ""
            raise ServesimError(f"no layout in TP {list(self.tp)} x PP {list(self.pp)} suits {model.name} "
                                f"({model.num_heads} attention heads, {model.num_layers} layers){within}")
        return sorted(set(out), key=lambda c: c.id)

    def _disaggregated(self, devices, layouts, knobs) -> list[DisaggCandidate]:
        out = []
        pairs = [(p, d) for p in devices for d in devices if p == d or self.disagg_mixed_gpus]
        for (pgpu, dgpu), pp, ptp, dtp in itertools.product(pairs, self.pp, self.tp, self.tp):
            if not (layouts[pgpu, ptp, pp] and layouts[dgpu, dtp, pp]):
                continue
            for x, y in pool_counts(self.disagg_max_pool):
                if (x * ptp + y * dtp) * pp > self.disagg_max_gpus:
                    continue
                for dtype, seqs, tokens, chunk in knobs:
                    # "auto" knobs take the prefill GPU's default; both pools run the same values
                    seqs, tokens = self._resolve(devices[pgpu], seqs, tokens)
                    out.append(DisaggCandidate(Pool(pgpu, ptp, x), Pool(dgpu, dtp, y), pp, dtype, seqs, tokens, chunk))
        return out

    @staticmethod
    def _resolve(device, seqs, tokens) -> tuple[int, int]:
        """"auto" (None) is vLLM's default for the GPU: resolved, so equal configurations meet once."""
        default_tokens, default_seqs = default_scheduler_limits(device.mem_bytes, device.name)
        return (default_seqs if seqs is None else seqs), (default_tokens if tokens is None else tokens)
