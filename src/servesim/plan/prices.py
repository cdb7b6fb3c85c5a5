"""GPU prices ($ per GPU per hour) from the bundled, documented YAML or a user's copy of it (--prices FILE)."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from servesim.errors import ServesimError
from servesim.hardware.catalog import get_device

DEFAULT_NAME = "servesim/data/prices.yaml (bundled)"


@dataclass(frozen=True)
class Prices:
    per_gpu_hour: dict[str, float]
    sources: dict[str, str]
    origin: str  # the file they came from

    def price(self, gpu: str) -> float:
        if gpu not in self.per_gpu_hour:
            priced = ", ".join(sorted(self.per_gpu_hour)) or "none"
            raise ServesimError(f"no price for GPU {gpu!r} in {self.origin}; add `{gpu}: {{price: DOLLARS_PER_GPU_HOUR, "
                                f"source: ..., date: ...}}` under `gpus:` (priced: {priced})")
        return self.per_gpu_hour[gpu]

    def as_dict(self) -> dict:
        return {"origin": self.origin, "usd_per_gpu_hour": dict(sorted(self.per_gpu_hour.items())),
                "sources": dict(sorted(self.sources.items()))}


def _lines(text: str) -> dict[str, int]:
    """Line of each GPU entry under `gpus:`, for file:line errors."""
    node = yaml.compose(text)
    out: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if k.value == "gpus" and isinstance(v, yaml.MappingNode):
                for gk, _ in v.value:
                    out[str(gk.value)] = gk.start_mark.line + 1
    return out


def load_prices(path: str | Path | None = None) -> Prices:
    if path is None:
        text = (resources.files("servesim") / "data" / "prices.yaml").read_text()
        origin = DEFAULT_NAME
    else:
        try:
            text = Path(path).read_text()
        except FileNotFoundError:
            raise ServesimError(f"price file {str(path)!r} does not exist") from None
        origin = str(path)
    try:
        raw = yaml.safe_load(text)
        lines = _lines(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise ServesimError(f"{origin}{f':{mark.line + 1}' if mark else ''}: not valid YAML") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("gpus"), dict):
        raise ServesimError(f"{origin}:1: expected a mapping with a `gpus:` section of `NAME: {{price: ...}}` entries")
    prices, sources = {}, {}
    for name, entry in raw["gpus"].items():
        where = f"{origin}:{lines.get(str(name), '?')}"
        if not isinstance(entry, dict) or "price" not in entry:
            raise ServesimError(f"{where}: GPU {name!r} needs `price:` (US dollars per GPU per hour)")
        price = entry["price"]
        if isinstance(price, bool) or not isinstance(price, (int, float)) or not price > 0:
            raise ServesimError(f"{where}: price of {name!r} must be a positive number of dollars per GPU hour, got {price!r}")
        unknown = sorted(set(entry) - {"price", "source", "date"})
        if unknown:
            raise ServesimError(f"{where}: unknown field {unknown[0]!r} for {name!r}; valid fields: price, source, date")
        try:
            key = get_device(str(name)).name
        except ServesimError as e:
            raise ServesimError(f"{where}: {e}") from None
        prices[key] = float(price)
        sources[key] = f"{entry.get('source', 'no source given')} ({entry.get('date', 'undated')})"
    return Prices(prices, sources, origin)
