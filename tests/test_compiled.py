"""The optional compiled core (`make compile`): it must give the same result files as the Python sources, and it
must never run once its sources have changed."""

import os
import re
import subprocess
import sys
from importlib.machinery import SourceFileLoader

import pytest

from servesim import __version__
from servesim.compiled import MODULES, _SourcesFirst, compiled_core, source_hash, source_path, stale_modules

# Small runs through the compiled modules: one replica, a cluster with spans cut by arrivals, a 1P1D pair, and a
# KV cache small enough to preempt.
CONFIGS = {
    "single": ["--workload", "chat", "--qps", "5", "--requests", "400"],
    "cluster": ["--workload", "chat", "--qps", "40", "--requests", "600", "--replicas", "3",
                "--router", "least-outstanding"],
    "1p1d": ["--workload", "chat", "--qps", "8", "--requests", "300", "--prefill-pool", "h100:1x1",
             "--decode-pool", "h100:1x1"],
    "preemptions": ["--workload", "chat", "--qps", "30", "--requests", "400", "--num-gpu-blocks", "600",
                    "--max-model-len", "8192"],  # 66 preemptions
}


def test_a_changed_source_is_stale():
    fresh = {m: source_hash(m) for m in MODULES}
    assert stale_modules(fresh) == []
    changed = dict(fresh, **{MODULES[1]: "0" * 64})
    assert stale_modules(changed) == [MODULES[1]]
    assert stale_modules({}) == list(MODULES)


def test_sources_first_finder_loads_the_py_file():
    finder = _SourcesFirst([MODULES[0]])
    spec = finder.find_spec(MODULES[0])
    assert isinstance(spec.loader, SourceFileLoader) and spec.origin == str(source_path(MODULES[0]))
    assert finder.find_spec("servesim.cli") is None


def test_version_says_whether_the_compiled_core_runs():
    from typer.testing import CliRunner

    from servesim.cli import app

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"servesim {__version__}" + (" (compiled core)" if compiled_core() else "")


def _simulate(args, out, pure):
    env = dict(os.environ, SERVESIM_PURE="1" if pure else "0")
    cmd = [sys.executable, "-c", "from servesim.cli import main; main()", "simulate", "--model", "llama-3.1-8b",
           "--gpu", "h100", "--seed", "1", "--quiet", "-o", str(out), *args]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr  # no stale-build warning: the compiled core did run


@pytest.mark.skipif(not compiled_core(), reason="the compiled core is not active here (`make test-compiled` runs this)")
@pytest.mark.parametrize("name", list(CONFIGS))
def test_compiled_core_writes_the_same_bytes(name, tmp_path):
    _simulate(CONFIGS[name], tmp_path / "compiled", pure=False)
    _simulate(CONFIGS[name], tmp_path / "pure", pure=True)
    files = sorted(p.name for p in (tmp_path / "pure").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "compiled").iterdir()) and "steps.parquet" in files
    for f in files:
        assert (tmp_path / "pure" / f).read_bytes() == (tmp_path / "compiled" / f).read_bytes(), f


def test_engine_config_pickles_compiled_or_not():
    # Compiled, EngineConfig has no __dict__ and pickle's default restore goes through the frozen __setattr__.
    import dataclasses
    import pickle

    from servesim.engine.config import EngineConfig
    cfg = EngineConfig(num_gpu_blocks=100, block_size=32, watermark=0.01)
    back = pickle.loads(pickle.dumps(cfg))
    assert back == cfg and dataclasses.asdict(back) == dataclasses.asdict(cfg)


# The hot loops' arithmetic must stay on native ints and floats once compiled. A loose type (a bare `tuple`, an
# `Any` index, `xs[i] += 1`) makes mypyc fall back to generic object arithmetic (PyNumber_*), which boxes every
# value: one bare tuple made the decode-span loop cost ten times its instructions, with identical results.
NATIVE_ARITHMETIC = ("calibrated___CalibratedModel___decode_span_until",
                     "calibrated___CalibratedModel____decode_coeffs",
                     "calibrated___CalibratedModel____decode_attention", "engine___ReplicaEngine____plan_span",
                     "engine___ReplicaEngine____apply_span", "engine___ReplicaEngine____step",
                     "engine___ReplicaEngine____emit", "engine___ReplicaEngine____finish",
                     "vllm_v1___VllmV1Policy___schedule", "vllm_v1___VllmV1Policy___decode_span_ok",
                     "kv_cache___KVCacheManager___extend", "kv_cache___KVCacheManager___admit",
                     "kv_cache___KVCacheManager___take", "kv_cache___KVCacheManager____cache",
                     "perf___base___StepTotals___of_schedule", "calibrated___CalibratedModel___totals_time",
                     "kv_cache___KVCacheManager___free", "events___ReplicaQueue___schedule",
                     "events___ReplicaQueue___pop", "events___ReplicaQueue____front",
                     "events___ReplicaQueue____down", "events___ReplicaQueue____up", "driver___ClusterRun___run",
                     "driver___ClusterRun____deliver", "router___LeastOutstandingRouter___choose",
                     "span_steps___expand", "span_steps____span_times", "span_steps____copy_rows",
                     "span_steps____ints", "span_steps____floats", "columns___bisect_times",
                     "log_columns___SpanColumns___append", "forms___PrefillAttentionForm___time",
                     "policies___base___Schedule___add", "columns___nth_smallest", "columns___count_at_most",
                     "logs___EmitLog___close_range")
GENERATED_C = os.path.join(os.path.dirname(__file__), "..", "build", "mypyc", "c", "__native_servesim_core.c")


def _c_function(source: str, name: str) -> str:
    """The body of the C function mypyc generated for `name` (its definition, not a prototype or a call)."""
    match = re.search(r"\n[^\n;]*\bCPyDef_" + name + r"\([^;{]*\)\s*\{", source)
    assert match, f"no generated function CPyDef_{name}"
    depth, i = 1, match.end()
    while depth:
        depth += {"{": 1, "}": -1}.get(source[i], 0)
        i += 1
    return source[match.start():i]


@pytest.mark.skipif(not os.path.exists(GENERATED_C), reason="no generated C here (`make compile` writes it)")
@pytest.mark.parametrize("name", NATIVE_ARITHMETIC)
def test_hot_loops_compile_to_native_arithmetic(name):
    with open(GENERATED_C) as fh:
        source = fh.read()
    generic = sorted({op for op in ("PyNumber_Add", "PyNumber_Subtract", "PyNumber_Multiply", "PyNumber_TrueDivide",
                                    "PyNumber_InPlaceAdd", "PyNumber_InPlaceSubtract", "CPyNumber_Power") if op + "(" in
                      _c_function(source, name)})
    assert not generic, f"{name} compiles to generic arithmetic {generic}: a value in it lost its type"
