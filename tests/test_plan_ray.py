"""`--executor ray` on a local Ray started inside the test gives the same plan as the local executors.
Needs the optional extra (pip install 'servesim[ray]'); `make test` installs it, elsewhere the test skips."""

from dataclasses import replace

import pytest

from servesim.plan.evaluate import evaluate
from servesim.plan.executors import RayExecutor, SerialExecutor
from servesim.plan.output import plan_document
from servesim.plan.search import plan

from test_plan_search import small_request

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'servesim[ray]'): skipping the Ray executor test")


@pytest.mark.parametrize("disagg", ["off", "only"])
def test_ray_and_local_executors_give_identical_plans(disagg):
    req = small_request(qps=8.0, gpus=("a100",))
    req = replace(req, space=replace(req.space, disagg=disagg, disagg_max_pool=2, disagg_max_gpus=3))
    local, local_rows = plan_document(plan(req, SerialExecutor(evaluate), None))
    executor = RayExecutor(evaluate, workers=2)
    try:
        remote, remote_rows = plan_document(plan(req, executor, None))
    finally:
        executor.close()
    assert not ray.is_initialized()
    assert remote == local and remote_rows == local_rows
    assert local["winner"]["mode"] == ("colocated" if disagg == "off" else "disaggregated")
