"""Engine bugs found while validating against vLLM, pinned."""

import pytest

from conftest import make_engine, run_all_at_once


@pytest.mark.parametrize("use_spans", [False, True])
def test_a_one_token_last_prefill_chunk_inside_a_span_sets_the_first_token(use_spans):
    # The threshold cuts request 0's 241-token prompt into 48-token chunks, leaving 1 token; that step and the
    # next look like decodes, so the engine may advance them as one span, which must still record the TTFT.
    eng = make_engine([241, 1], [2, 1], use_spans=use_spans, log_schedule=True, num_gpu_blocks=50,
                      max_num_batched_tokens=64, max_num_seqs=1, enable_prefix_caching=False,
                      long_prefill_token_threshold=48, max_model_len=784)
    run_all_at_once(eng)
    assert eng.schedule_log[5] == ([(0, 1)], [])
    assert list(eng.req.first_token) == [6.0, 8.0]
