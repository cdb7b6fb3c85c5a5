"""Trace parsers: real files when present, generated files, and one clear error per malformed row."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import shared_data
from servesim.errors import ServesimError
from servesim.workload.traces import load_lengths, load_trace

rows = st.lists(st.tuples(st.floats(0, 1e5, allow_nan=False), st.integers(1, 100_000), st.integers(1, 5000)),
                min_size=1, max_size=50)


@settings(max_examples=50, deadline=None)
@given(rows, st.floats(0.1, 10))
def test_vidur_csv_roundtrip(tmp_path_factory, rs, scale):
    path = tmp_path_factory.mktemp("t") / "trace.csv"
    path.write_text("arrived_at,num_prefill_tokens,num_decode_tokens\n" + "".join(f"{t!r},{p},{o}\n" for t, p, o in rs))
    w = load_trace(path, time_scale=scale)
    order = np.argsort([t for t, _, _ in rs], kind="stable")
    assert w.prompt_len.tolist() == [rs[i][1] for i in order]
    assert w.output_len.tolist() == [rs[i][2] for i in order]
    assert w.arrival[0] == 0.0 and (np.diff(w.arrival) >= 0).all()
    times = np.array([t for t, _, _ in rs])
    assert w.arrival[-1] == pytest.approx((times.max() - times.min()) * scale)


@settings(max_examples=50, deadline=None)
@given(rows)
def test_mooncake_roundtrip(tmp_path_factory, rs):
    path = tmp_path_factory.mktemp("t") / "trace.jsonl"
    lines = [json.dumps({"timestamp": int(t), "input_length": p, "output_length": o, "hash_ids": [i, i + 1]})
             for i, (t, p, o) in enumerate(rs)]
    path.write_text("\n".join(lines) + "\n")
    w = load_trace(path)
    assert len(w) == len(rs) and w.prefix_block_tokens == 512
    assert sorted(map(tuple, w.prefix_ids)) == sorted((i, i + 1) for i in range(len(rs)))


@pytest.mark.parametrize("text,message", [
    ("arrived_at,num_prefill_tokens,num_decode_tokens\n0.0,10,5\n1.0,ten,5\n", r"trace.csv:3: column 'num_prefill_tokens' is 'ten'"),
    ("arrived_at,num_prefill_tokens,num_decode_tokens\n0.0,10,5\n1.0,10\n", r"trace.csv:3: fewer columns"),
    ("arrived_at,num_prefill_tokens,num_decode_tokens\n0.0,10,0\n", r"trace.csv:2: column 'num_decode_tokens' is 0, must be >= 1"),
    ("arrived_at,num_prefill_tokens,num_decode_tokens\n-5,10,3\n", r"trace.csv:2: column 'arrived_at'"),
    ("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.68,374,44\nyesterday,1,1\n", r"trace.csv:3: TIMESTAMP 'yesterday'"),
    ("when,prompt\n1,2\n", r"trace.csv:1: unrecognised trace header"),
    ("arrived_at,num_prefill_tokens,num_decode_tokens\n", r"no requests"),
])
def test_malformed_rows_name_file_and_line(tmp_path, text, message):
    path = tmp_path / "trace.csv"
    path.write_text(text)
    with pytest.raises(ServesimError, match=message):
        load_trace(path)


def test_mooncake_bad_line(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"timestamp": 0, "input_length": 5, "output_length": 2}\n{"timestamp": 1, "input_length": -5, "output_length": 2}\n')
    with pytest.raises(ServesimError, match=r"m.jsonl:2: input_length -5"):
        load_trace(path)


def test_burstgpt_skips_failed_rows(tmp_path):
    path = tmp_path / "b.csv"
    path.write_text("Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
                    "5,ChatGPT,100,20,120,Conversation log\n7,GPT-4,50,0,50,Conversation log\n9,ChatGPT,80,10,90,API log\n")
    w = load_trace(path)
    assert w.prompt_len.tolist() == [100, 80] and w.arrival.tolist() == [0.0, 4.0]
    assert w.source["skipped_failed_rows"] == 1


def test_limit_and_missing_file(tmp_path):
    with pytest.raises(ServesimError, match="does not exist"):
        load_trace(tmp_path / "nope.csv")


def test_azure_conv_trace():
    w = load_trace(shared_data("traces", "azure_llm_2023", "AzureLLMInferenceTrace_conv.csv"))
    assert len(w) == 19366
    assert w.prompt_len.mean() == pytest.approx(1155, abs=1)
    assert w.output_len.mean() == pytest.approx(211, abs=1)
    assert w.arrival[-1] == pytest.approx(3502, abs=2)
    limited = load_trace(shared_data("traces", "azure_llm_2023", "AzureLLMInferenceTrace_conv.csv"), limit=100, time_scale=0.5)
    assert len(limited) == 100 and limited.arrival[-1] == pytest.approx(w.arrival[99] * 0.5)


def test_mooncake_trace_shares_prefixes():
    w = load_trace(shared_data("traces", "mooncake_fast25", "conversation_trace.jsonl"), limit=500)
    firsts = [ids[0] for ids in w.prefix_ids if ids]
    assert len(set(firsts)) < len(firsts)  # many requests continue an earlier context


def test_sharegpt_lengths():
    prompts, outputs = load_lengths(shared_data("traces", "vidur_processed", "sharegpt_8k_filtered_stats_llama2_tokenizer.csv"))
    assert len(prompts) == 30731 and prompts.mean() == pytest.approx(2340, abs=1)
