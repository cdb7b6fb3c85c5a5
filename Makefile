# `make demo` and `make test` work on a fresh machine with only Python >= 3.11: they create .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RAY_STAMP := $(VENV)/.installed-ray

.PHONY: demo test test-slow bench bench-cluster bench-plan bench-report clean validate-gpu fit-kernels

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

test: $(STAMP) $(if $(WITH_RAY),$(RAY_STAMP))
	$(BIN)/python -m pytest -m "not slow"

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow

# GPU clock: leave-range-out kernel errors and every published end-to-end row -> docs/validation.md (no GPU).
validate-gpu: $(STAMP)
	$(BIN)/python scripts/validate_gpu.py

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

clean:
	rm -rf $(VENV) runs .pytest_cache .servesim-cache
