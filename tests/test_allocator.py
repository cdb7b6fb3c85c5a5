"""servesim.allocator: glibc's malloc thresholds, set once per process by run_simulation, never over the user's."""

import os
import subprocess
import sys

import pytest

CHECK = "from servesim.allocator import keep_freed_memory as k; print(k(), k())"


def _run(env: dict) -> str:
    return subprocess.run([sys.executable, "-c", CHECK], env=env, capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_the_settings_apply_once_on_linux():
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    assert _run(env) == "True True"


def test_a_users_malloc_variables_are_left_alone():
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")} | {"MALLOC_ARENA_MAX": "2"}
    assert _run(env) == "False False"
