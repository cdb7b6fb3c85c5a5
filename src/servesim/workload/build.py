"""Turn a run configuration's workload settings into a Workload."""

from __future__ import annotations

import numpy as np

from servesim.errors import ServesimError
from servesim.workload import arrivals, clients, lengths, presets, traces
from servesim.workload.workload import Workload

DEFAULT_REQUESTS = 1000


def _streams(seed: int) -> dict[str, np.random.Generator]:
    """Independent generators per component, so changing one setting does not reshuffle the others."""
    seqs = np.random.SeedSequence(seed).spawn(4)
    return {"lengths": np.random.default_rng(seqs[0]), "arrivals": np.random.default_rng(seqs[1]),
            "prefix": np.random.default_rng(seqs[2]), "clients": np.random.default_rng(seqs[3])}


def _parse_pair(text: str, what: str) -> tuple[float, float]:
    try:
        a, b = text.split("-") if "-" in text else (text, text)
        return float(a), float(b)
    except ValueError:
        raise ServesimError(f"{what}: {text!r} is not LOW-HIGH") from None


def _lengths_from_spec(spec: str, n: int, rng: np.random.Generator):
    """--lengths uniform:PLO-PHI,OLO-OHI | lognormal:PMEDIAN,PSIGMA,OMEDIAN,OSIGMA | empirical:FILE"""
    kind, _, arg = spec.partition(":")
    if kind == "uniform":
        parts = arg.split(",")
        if len(parts) != 2:
            raise ServesimError(f"--lengths {spec!r}: write uniform:PROMPT_LO-PROMPT_HI,OUTPUT_LO-OUTPUT_HI")
        (plo, phi), (olo, ohi) = (_parse_pair(p, "--lengths") for p in parts)
        return lengths.uniform((int(plo), int(olo)), (int(phi), int(ohi)), n, rng)
    if kind == "lognormal":
        try:
            pm, ps, om, osig = (float(x) for x in arg.split(","))
        except ValueError:
            raise ServesimError(f"--lengths {spec!r}: write lognormal:PROMPT_MEDIAN,PROMPT_SIGMA,OUTPUT_MEDIAN,OUTPUT_SIGMA") from None
        return lengths.lognormal((pm, om), (ps, osig), n, rng)
    if kind == "empirical":
        prompts, outputs = traces.load_lengths(arg)
        return lengths.empirical(prompts, outputs, n, rng)
    raise ServesimError(f"--lengths {spec!r}: unknown kind {kind!r}; valid choices: uniform, lognormal, empirical")


def build_workload(cfg) -> Workload:
    """cfg: a RunConfig (or anything with its workload fields)."""
    classes = clients.parse_clients(cfg.clients) if getattr(cfg, "clients", None) else None
    w = _build(cfg)
    if classes:
        w.client, w.priority = clients.assign_clients(len(w), classes, _streams(cfg.seed)["clients"])
        w.client_names = [c.name for c in classes]
        w.source["clients"] = cfg.clients
    return w


def _build(cfg) -> Workload:
    if cfg.qps is not None and cfg.qps <= 0:
        raise ServesimError(f"--qps must be > 0 req/s, got {cfg.qps}")
    if cfg.concurrency is not None and cfg.concurrency < 1:
        raise ServesimError(f"--concurrency must be >= 1, got {cfg.concurrency}")
    if cfg.requests is not None and cfg.requests < 1:
        raise ServesimError(f"--requests must be >= 1, got {cfg.requests}")
    if cfg.qps is not None and cfg.concurrency is not None:
        raise ServesimError("--qps (open loop) and --concurrency (closed loop) exclude each other: give one")
    rng = _streams(cfg.seed)
    if cfg.trace:
        limit = cfg.limit if cfg.limit is not None else cfg.requests  # --requests N replays the first N rows
        w = traces.load_trace(cfg.trace, cfg.trace_format, limit, cfg.time_scale)
        if cfg.concurrency is not None:
            w.arrival, w.concurrency = None, cfg.concurrency
        elif cfg.qps is not None and len(w) > 1 and w.arrival[-1] > 0:
            w.arrival = w.arrival * ((len(w) - 1) / w.arrival[-1] / cfg.qps)
            w.source["rescaled_to_qps"] = cfg.qps
        return w

    preset = cfg.workload if cfg.workload else None
    if cfg.isl is not None or cfg.osl is not None:
        if cfg.isl is None or cfg.osl is None:
            raise ServesimError("give both --isl and --osl for fixed lengths")
        preset = None
    if cfg.lengths:
        preset = None

    if cfg.concurrency is not None:
        n = cfg.requests or max(DEFAULT_REQUESTS, 10 * cfg.concurrency)
    else:
        rate = presets.require_rate(preset, cfg.qps) if preset else cfg.qps
        if rate is None:
            raise ServesimError("give --qps R (open loop) or --concurrency N (closed loop)")
        if cfg.requests is not None:
            n = cfg.requests
        elif cfg.duration is not None:
            n = arrivals.count_for_duration(rate, cfg.duration)
        else:
            n = DEFAULT_REQUESTS

    if cfg.isl is not None:
        prompt, output = lengths.fixed(cfg.isl, cfg.osl, n)
        length_source = {"isl": cfg.isl, "osl": cfg.osl}
    elif cfg.lengths:
        prompt, output = _lengths_from_spec(cfg.lengths, n, rng["lengths"])
        length_source = {"lengths": cfg.lengths}
    else:
        prompt, output = presets.preset_lengths(preset, n, rng["lengths"])
        length_source = {"preset": preset, "preset_source": presets.get_preset(preset)["source"]}

    source = {**length_source, "seed": cfg.seed}
    prefix_ids = presets.preset_prefixes(preset, prompt, rng["prefix"]) if preset else None
    name = preset or ("fixed" if cfg.isl is not None else "custom")
    if cfg.concurrency is not None:
        source.update(concurrency=cfg.concurrency, think_time=cfg.think_time)
        return Workload(name, prompt, output, concurrency=cfg.concurrency, think_time=cfg.think_time,
                        prefix_ids=prefix_ids, source=source)

    kind = cfg.arrival or ("gamma" if preset else "poisson")
    cv = cfg.burstiness if cfg.burstiness is not None else (presets.preset_rate(preset)[1] if preset else 1.0)
    times = arrivals.make_arrivals(kind, rate, n, rng["arrivals"], cv=cv)
    times -= times[0]
    source.update(arrival=kind, qps=rate, burstiness_cv=cv if kind == "gamma" else None)
    return Workload(name, prompt, output, arrival=times, prefix_ids=prefix_ids, source=source)
