"""Clients and priority classes: who sent each request, for the priority and fair policies and per-client metrics.

`--clients "interactive:0.2:0,batch:0.8:1"` = two clients, each request drawn from them by share (here 20% /
80% of the traffic), with the priority class after the second colon (smaller = more important, vLLM's
convention; default 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from servesim.errors import ServesimError


@dataclass(frozen=True)
class ClientClass:
    name: str
    share: float
    priority: int = 0


def parse_clients(spec: str, where: str = "--clients") -> list[ClientClass]:
    classes = []
    for part in str(spec).split(","):
        fields = [f.strip() for f in part.split(":")]
        if len(fields) not in (2, 3) or not fields[0]:
            raise ServesimError(f"{where} {spec!r}: write NAME:SHARE[:PRIORITY],... e.g. chat:0.3:0,batch:0.7:1")
        try:
            share = float(fields[1])
            priority = int(fields[2]) if len(fields) == 3 else 0
        except ValueError:
            raise ServesimError(f"{where} {spec!r}: in {part!r} the share must be a number and the priority an integer") from None
        if not share > 0:
            raise ServesimError(f"{where} {spec!r}: client {fields[0]!r} needs a share > 0, got {fields[1]}")
        classes.append(ClientClass(fields[0], share, priority))
    names = [c.name for c in classes]
    if len(set(names)) != len(names):
        raise ServesimError(f"{where} {spec!r}: client names repeat")
    return classes


def assign_clients(n: int, classes: list[ClientClass], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Client index and priority class of each of n requests, drawn by share."""
    shares = np.array([c.share for c in classes], dtype=np.float64)
    client = rng.choice(len(classes), size=n, p=shares / shares.sum()).astype(np.int64)
    priority = np.array([c.priority for c in classes], dtype=np.int64)[client]
    return client, priority
