"""Small schedules worked out by hand from vLLM v1's rules (budget 256, three requests)."""

from conftest import make_engine, run_all_at_once


def schedule(eng):
    return [dict(sched) for sched, _ in eng.schedule_log]


def test_budget_shared_running_first_then_waiting():
    # A (300 prompt) takes the whole first budget; then A finishes its prompt (44) and B, C are admitted.
    eng = make_engine([300, 100, 50], [3, 2, 2], max_num_batched_tokens=256, log_schedule=True, use_spans=False)
    end = run_all_at_once(eng)
    assert schedule(eng) == [{0: 256}, {0: 44, 1: 100, 2: 50}, {0: 1, 1: 1, 2: 1}, {0: 1}]
    assert end == 4.0
    ttft = [eng.req.first_token[r] for r in range(3)]
    assert ttft == [2.0, 2.0, 2.0]  # all three sample their first token at the end of step 1
    assert [eng.req.finished[r] for r in range(3)] == [4.0, 3.0, 3.0]


def test_long_prefill_threshold_caps_chunks_until_alone():
    eng = make_engine([300, 100, 50], [3, 2, 2], max_num_batched_tokens=256, long_prefill_token_threshold=64,
                      log_schedule=True, use_spans=False)
    run_all_at_once(eng)
    assert schedule(eng) == [
        {0: 64, 1: 64, 2: 50},
        {0: 64, 1: 36, 2: 1},
        {0: 64, 1: 1},
        {0: 108},  # A is the only request left: the threshold no longer applies
        {0: 1},
        {0: 1},
    ]


def test_max_num_seqs_caps_admission():
    eng = make_engine([20, 20, 20], [2, 2, 2], max_num_batched_tokens=256, max_num_seqs=2, log_schedule=True,
                      use_spans=False)
    run_all_at_once(eng)
    assert schedule(eng) == [{0: 20, 1: 20}, {0: 1, 1: 1}, {2: 20}, {2: 1}]


def test_preemption_of_last_running_request_and_no_admission_that_step():
    # 4 usable blocks of 16: A and B fill 2 each, then A's decode needs a third block and preempts B.
    eng = make_engine([32, 32, 8], [4, 4, 1], block_size=16, num_gpu_blocks=5, max_model_len=64,
                      max_num_batched_tokens=256, log_schedule=True, use_spans=False)
    run_all_at_once(eng)
    log = eng.schedule_log
    assert dict(log[0][0]) == {0: 32, 1: 32}  # C (8 tokens) must wait: its full sequence needs a block
    assert dict(log[1][0]) == {0: 1} and log[1][1] == [1]  # A needs block 3: B is preempted, nobody admitted
    assert eng.req.num_preemptions[1] == 1
    assert eng.req.num_output[1] == 4
