"""The optional compiled core: the engine's hot modules built as C extensions by mypyc from these same sources.

`make compile` (scripts/compile_core.py) builds them in place, next to their .py files, and records a hash of
each source in MANIFEST. Python imports an extension before a .py of the same name, so an extension built from
older sources would run old code: when a source no longer matches its hash, or SERVESIM_PURE=1 is set (what
`make test` does), the .py files are imported instead. Without a build nothing here does anything.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from importlib.machinery import EXTENSION_SUFFIXES, ModuleSpec
from pathlib import Path

# The modules the simulation's event loop spends its time in (cProfile of benchmarks/bench_sim.py).
MODULES = (
    "servesim.cluster.driver",
    "servesim.cluster.events",
    "servesim.cluster.replica",
    "servesim.columns",
    "servesim.engine.config",
    "servesim.engine.engine",
    "servesim.engine.kv_cache",
    "servesim.engine.log_columns",
    "servesim.engine.logs",
    "servesim.engine.span_steps",
    "servesim.engine.requests",
    "servesim.engine.policies.base",
    "servesim.engine.policies.common",
    "servesim.engine.policies.vllm_v1",
    "servesim.engine.policies.sarathi",
    "servesim.engine.policies.splitfuse",
    "servesim.engine.policies.orca",
    "servesim.engine.policies.static",
    "servesim.engine.policies.sglang",
    "servesim.engine.policies.priority",
    "servesim.engine.policies.fair",
    "servesim.engine.policies.queues",
    "servesim.cluster.router",
    "servesim.perf.kernels.forms",
    "servesim.perf.base",
    "servesim.perf.calibrated",
)
SRC = Path(__file__).resolve().parent.parent  # the directory holding the servesim package
MANIFEST = SRC / "servesim" / "compiled-manifest.json"


def source_path(module: str) -> Path:
    return SRC.joinpath(*module.split(".")).with_suffix(".py")


def source_hash(module: str) -> str:
    return hashlib.sha256(source_path(module).read_bytes()).hexdigest()


def stale_modules(manifest: dict[str, str]) -> list[str]:
    """Modules whose source changed since the build recorded in `manifest` (module -> source hash)."""
    return [m for m in MODULES if manifest.get(m) != source_hash(m)]


def is_compiled(module: str) -> bool:
    """Whether `module`, imported now, runs from a compiled extension."""
    __import__(module)
    return str(getattr(sys.modules[module], "__file__", "")).endswith(tuple(EXTENSION_SUFFIXES))


def compiled_core() -> bool:
    return all(is_compiled(m) for m in MODULES)


class _SourcesFirst:
    """Import finder that loads the listed modules from their .py files even where an extension sits beside them."""

    def __init__(self, modules: list[str]):
        self.modules = set(modules)

    def find_spec(self, name: str, path=None, target=None) -> ModuleSpec | None:
        if name not in self.modules:
            return None
        return importlib.util.spec_from_file_location(name, source_path(name))


def use_sources_where_needed(pure: bool) -> None:
    """Called on `import servesim`: route imports to the .py files if the build is absent, stale or not wanted."""
    if not MANIFEST.exists():
        return
    manifest = json.loads(MANIFEST.read_text())
    stale = list(MODULES) if pure else stale_modules(manifest)
    if not stale:
        return
    if not pure:
        names = ", ".join(m.rsplit(".", 1)[1] + ".py" for m in stale)
        print(f"servesim: the compiled core is older than {names}: running the Python sources; "
              "`make compile` rebuilds it", file=sys.stderr)
    # Modules that import each other natively are one unit: the whole core runs from source, or none of it.
    sys.meta_path.insert(0, _SourcesFirst(list(MODULES)))
