"""A local store of probe results keyed by (configuration, workload sample, servesim version) and rate, so a
repeated, widened or re-targeted search re-uses every simulation it already ran. SQLite (standard library):
one file, safe for several processes, written only by the process that runs the search."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np

from servesim.errors import ServesimError
from servesim.plan.probe import Probe

SCHEMA = "CREATE TABLE IF NOT EXISTS probes (key TEXT, rate REAL, metrics TEXT, ttft BLOB, tpot BLOB, PRIMARY KEY (key, rate))"


class ResultCache:
    def __init__(self, path: str | Path | None):
        self.path = Path(path) if path else None
        self._db = None
        self.hits = 0
        self.stored = 0
        if self.path is not None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._db = sqlite3.connect(self.path, timeout=60)
                self._db.execute(SCHEMA)
                self._db.commit()
            except (OSError, sqlite3.Error) as e:
                raise ServesimError(f"cannot use the results cache {str(self.path)!r}: {e}; pass --cache DIR or --no-cache") from None

    def get(self, key: str) -> dict[float, Probe]:
        if self._db is None:
            return {}
        rows = self._db.execute("SELECT rate, metrics, ttft, tpot FROM probes WHERE key = ?", (key,)).fetchall()
        return {rate: Probe(rate, json.loads(m), np.frombuffer(t, dtype=np.float64).copy(),
                            np.frombuffer(p, dtype=np.float64).copy(), cached=True) for rate, m, t, p in rows}

    def put(self, key: str, probes: list[Probe]) -> None:
        if self._db is None or not probes:
            return
        rows = [(key, p.rate, json.dumps(p.metrics, sort_keys=True), np.ascontiguousarray(p.ttft, np.float64).tobytes(),
                 np.ascontiguousarray(p.tpot, np.float64).tobytes()) for p in probes]
        self._db.executemany("INSERT OR REPLACE INTO probes VALUES (?, ?, ?, ?, ?)", rows)
        self._db.commit()
        self.stored += len(rows)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
