"""Where tasks run: in this process, on a local process pool (default: every core), or on a Ray cluster.

All three take tasks with `submit` and hand back finished ones with `next_done`, in whatever order they
finish; the search decides what to run from finished results only in a fixed order, so the executor never
changes a result. `terminate` stops at once (Ctrl-C): finished results are already with the caller.
Whoever makes an executor closes it; `close` and `terminate` may be called more than once.
"""

from __future__ import annotations

import os
import queue
import signal
from typing import Any, Callable

from servesim.errors import ServesimError

EXECUTORS = ("local", "ray", "serial")


class SerialExecutor:
    """Runs each task when it is submitted; for tests and single-core runs."""

    name = "serial"
    workers = 1

    def __init__(self, fn: Callable):
        self.fn = fn
        self._done: list = []

    def submit(self, token: Any, task: Any) -> None:
        self._done.append((token, self.fn(task)))

    def next_done(self) -> tuple[Any, Any]:
        return self._done.pop(0)

    def terminate(self) -> None:
        self._done.clear()

    close = terminate


def _ignore_sigint() -> None:
    # Ctrl-C goes to the whole process group: the parent handles it and terminates the pool.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class LocalExecutor:
    """A process pool over the local cores."""

    name = "local"

    def __init__(self, fn: Callable, workers: int | None = None):
        import multiprocessing

        self.fn = fn
        self.workers = workers or os.cpu_count() or 1
        self._pool = multiprocessing.get_context().Pool(self.workers, initializer=_ignore_sigint)
        self._done: queue.Queue = queue.Queue()

    def submit(self, token: Any, task: Any) -> None:
        self._pool.apply_async(self.fn, (task,), callback=lambda r: self._done.put((token, r, None)),
                               error_callback=lambda e: self._done.put((token, None, e)))

    def next_done(self) -> tuple[Any, Any]:
        token, result, error = self._done.get()
        if error is not None:
            raise error
        return token, result

    def terminate(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool.join()
            self._pool = None


class RayExecutor:
    """Ray tasks: a local Ray started here, or the cluster at `address` (servesim must be installed on its nodes)."""

    name = "ray"

    def __init__(self, fn: Callable, address: str | None = None, workers: int | None = None):
        try:
            import ray
        except ImportError:
            raise ServesimError("--executor ray needs Ray: pip install 'servesim[ray]' (valid executors: "
                                f"{', '.join(EXECUTORS)})") from None
        self._ray = ray
        self._started = False
        if not ray.is_initialized():
            options = {"address": address} if address else {"num_cpus": workers or os.cpu_count() or 1}
            ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False, **options)
            self._started = True
        self.workers = int(ray.cluster_resources().get("CPU", 1))
        self._remote = ray.remote(fn)
        self._pending: dict = {}

    def submit(self, token: Any, task: Any) -> None:
        self._pending[self._remote.remote(task)] = token

    def next_done(self) -> tuple[Any, Any]:
        (ref,), _ = self._ray.wait(list(self._pending), num_returns=1)
        token = self._pending.pop(ref)
        return token, self._ray.get(ref)

    def terminate(self) -> None:
        for ref in self._pending:
            self._ray.cancel(ref, force=True)
        self._pending.clear()
        self.close()

    def close(self) -> None:
        if self._started:
            self._ray.shutdown()
            self._started = False


def make_executor(name: str, fn: Callable, workers: int | None = None, address: str | None = None):
    if name == "local":
        if (workers or os.cpu_count() or 1) == 1:
            return SerialExecutor(fn)
        return LocalExecutor(fn, workers)
    if name == "ray":
        return RayExecutor(fn, address, workers)
    if name == "serial":
        return SerialExecutor(fn)
    raise ServesimError(f"unknown executor {name!r}; valid choices: {', '.join(EXECUTORS)}")
