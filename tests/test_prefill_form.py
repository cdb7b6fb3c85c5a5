"""The engine prices a step's prefill attention with PrefillAttentionForm (plain floats), the fits with the generic
prefill_attention_time (arrays): the two must give the same bits for every shipped calibration and head layout."""

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.hardware.catalog import get_device
from servesim.perf.kernels import forms
from servesim.perf.kernels.calibrate import hardware
from servesim.perf.kernels.calibration import load_calibration

CASES = [(gpu, engine, heads, kv_heads, head_dim, kv_bytes)
         for gpu, engine in itertools.product(("a100", "h100", "h200", "b200", "l40s", "mi300x"), ("vllm", "sglang", "trtllm"))
         for heads, kv_heads, head_dim in ((32, 8, 128), (28, 4, 128), (8, 1, 128), (32, 32, 128), (16, 8, 64))
         for kv_bytes in (2.0, 1.0)]


def _both(case, seqs, tokens, pairs, kv_tokens):
    gpu, engine, heads, kv_heads, head_dim, kv_bytes = case
    device = get_device(gpu)
    c = load_calibration(device, engine).get("context_attention")
    hw = hardware(device, "context_attention")
    form = forms.PrefillAttentionForm(c, hw, heads, kv_heads, head_dim, kv_bytes)
    generic = forms.prefill_attention_time(c, hw, seqs, tokens, pairs, kv_tokens, heads, kv_heads, head_dim, kv_bytes)
    return form.time(seqs, tokens, pairs, kv_tokens), generic


@settings(max_examples=300, deadline=None)
@given(case=st.sampled_from(CASES), seqs=st.integers(1, 64), micro=st.sampled_from([1, 2, 3, 4]),
       chunks=st.lists(st.tuples(st.integers(1, 8192), st.integers(0, 32768)), min_size=1, max_size=8))
def test_the_float_form_equals_the_generic_form_bit_for_bit(case, seqs, micro, chunks):
    # A step's sums the way StepTotals builds them (n new tokens over c computed), divided by the microbatches.
    tokens = sum(n for n, _ in chunks)
    pairs = float(sum(n * c + n * (n + 1) // 2 for n, c in chunks))
    kv_tokens = sum(c + n for n, c in chunks)
    args = (len(chunks) / micro, tokens / micro, pairs / micro, kv_tokens / micro)
    fast, generic = _both(case, *args)
    assert isinstance(generic, float)
    assert fast == generic, (case, args, fast, generic)


def test_a_seats_fraction_below_one_is_priced_as_one_sequence_in_both():
    # With microbatches, seqs / micro can be below 1: max(seqs, 1.0) then picks 1.0 in both forms.
    fast, generic = _both(CASES[0], 0.5, 100.0, 5050.0, 100.0)
    assert fast == generic
