"""`servesim measure` against a fake OpenAI streaming server, and `servesim compare`."""

import asyncio
import json
import threading

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from servesim.cli import app
from servesim.measure.client import Endpoint
from servesim.metrics.compare import compare_runs

runner = CliRunner()
TTFT, ITL = 0.04, 0.01


class FakeServer:
    """Streams `max_tokens` completion events TTFT then ITL apart, then usage and [DONE]; records the bodies."""

    def __init__(self, fail_every: int = 0, chunked: bool = True):
        self.bodies = []
        self.fail_every = fail_every
        self.chunked = chunked
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.ready.wait(10)

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = self.server.sockets[0].getsockname()[1]
        self.ready.set()
        self.loop.run_forever()

    async def _handle(self, reader, writer):
        length = 0
        await reader.readline()
        while (line := await reader.readline()) not in (b"\r\n", b""):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        body = json.loads(await reader.readexactly(length))
        self.bodies.append(body)
        if self.fail_every and len(self.bodies) % self.fail_every == 0:
            writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 21\r\n\r\n{\"error\": \"too long\"}")
            await writer.drain()
            writer.close()
            return
        head = "Transfer-Encoding: chunked\r\n" if self.chunked else ""
        writer.write(f"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n{head}\r\n".encode())
        n = body["max_tokens"]

        async def send(event: str):
            data = f"data: {event}\n\n".encode()
            writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n" if self.chunked else data)
            await writer.drain()

        await asyncio.sleep(TTFT)
        for i in range(n):
            reason = '"length"' if i == n - 1 else "null"
            await send(json.dumps({"choices": [{"index": 0, "text": f" t{i}", "finish_reason": None}]})
                       .replace('"finish_reason": null', f'"finish_reason": {reason}'))
            if i < n - 1:
                await asyncio.sleep(ITL)
        await send(json.dumps({"choices": [], "usage": {"prompt_tokens": len(body["prompt"]), "completion_tokens": n}}))
        await send("[DONE]")
        if self.chunked:
            writer.write(b"0\r\n\r\n")
        await writer.drain()
        writer.close()

    def close(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def server():
    s = FakeServer()
    yield s
    s.close()


def measure(url, out, *extra):
    return runner.invoke(app, ["measure", "--url", url, "--model", "m", "--isl", "40", "--osl", "8", "--requests", "6",
                               "--vocab-size", "1000", "-o", str(out), "--quiet", *extra])


@pytest.mark.parametrize("chunked", [True, False])
def test_measure_records_ttft_and_every_itl(tmp_path, chunked):
    s = FakeServer(chunked=chunked)
    try:
        result = measure(f"http://127.0.0.1:{s.port}", tmp_path / "real", "--concurrency", "2")
    finally:
        s.close()
    assert result.exit_code == 0, result.output
    table = pq.read_table(tmp_path / "real" / "requests.parquet")
    sim_columns = {"request_id", "arrival_s", "prompt_tokens", "output_tokens", "ttft_s", "tpot_s", "e2e_s", "queue_s",
                   "first_token_s", "finished_s", "preemptions", "cached_tokens", "finish_reason", "itl_s"}
    assert set(table.column_names) == sim_columns
    assert table["output_tokens"].to_pylist() == [8] * 6 and table["prompt_tokens"].to_pylist() == [40] * 6
    ttft = np.array(table["ttft_s"].to_pylist())
    assert (ttft >= TTFT).all() and (ttft < 20 * TTFT).all()
    itls = [x for row in table["itl_s"].to_pylist() for x in row]
    # a late read shortens the next gap, so bound the typical gap, not the smallest
    assert len(itls) == 6 * 7 and 0.8 * ITL <= np.median(itls) < 10 * ITL
    assert set(table["finish_reason"].to_pylist()) == {"length"}
    # every request sent unique (salted) token ids of the asked length, ignore_eos on, streaming with usage
    bodies = s.bodies
    assert len({tuple(b["prompt"][:8]) for b in bodies}) == 6
    assert all(b["ignore_eos"] and b["stream"] and b["stream_options"]["include_usage"] and b["max_tokens"] == 8
               for b in bodies)
    summary = json.loads((tmp_path / "real" / "summary.json").read_text())
    assert summary["kind"] == "measured" and summary["summary"]["stream"] == {"events": 48, "tokens": 48}


def test_closed_loop_keeps_at_most_n_requests_in_flight(tmp_path, server):
    result = measure(f"http://127.0.0.1:{server.port}", tmp_path / "real", "--concurrency", "2")
    assert result.exit_code == 0
    t = pq.read_table(tmp_path / "real" / "requests.parquet")
    arrival, finished = np.array(t["arrival_s"].to_pylist()), np.array(t["finished_s"].to_pylist())
    for a in arrival:
        assert ((arrival <= a) & (finished > a)).sum() <= 2


def test_open_loop_follows_the_arrival_times(tmp_path, server):
    result = measure(f"http://127.0.0.1:{server.port}", tmp_path / "real", "--qps", "20", "--seed", "4")
    assert result.exit_code == 0, result.output
    arrival = np.array(pq.read_table(tmp_path / "real" / "requests.parquet")["arrival_s"].to_pylist())
    assert (np.diff(arrival) >= -1e-3).all() and arrival[-1] > 0.05


def test_failed_requests_are_counted_not_invented(tmp_path):
    s = FakeServer(fail_every=3)
    try:
        result = measure(f"http://127.0.0.1:{s.port}", tmp_path / "real", "--concurrency", "1")
    finally:
        s.close()
    assert result.exit_code == 0
    assert "2 of 6 requests failed" in result.output and "HTTP 400" in result.output
    t = pq.read_table(tmp_path / "real" / "requests.parquet")
    assert t["finish_reason"].to_pylist().count("rejected") == 2
    assert np.isnan(t["ttft_s"].to_pylist()[2])


def test_no_server_is_one_clear_error(tmp_path):
    with __import__("socket").socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = measure(f"http://127.0.0.1:{port}", tmp_path / "real", "--concurrency", "1")
    assert result.exit_code == 2 and "every request" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("url, path", [("http://h:9/", "/v1/completions"), ("h:9/v1", "/v1/completions"),
                                       ("http://h:9/v1/completions", "/v1/completions")])
def test_endpoint_parsing(url, path):
    assert Endpoint.parse(url).path == path


def test_compare_a_run_with_itself_and_with_a_simulation(tmp_path, server):
    measure(f"http://127.0.0.1:{server.port}", tmp_path / "real", "--concurrency", "2")
    rows = compare_runs(tmp_path / "real", tmp_path / "real")
    assert all(e == 0 for _, _, _, e in rows)
    sim = runner.invoke(app, ["simulate", "--model", "llama-3.1-8b", "--gpu", "h100", "--isl", "40", "--osl", "8",
                              "--concurrency", "2", "--requests", "6", "-o", str(tmp_path / "sim"), "--quiet"])
    assert sim.exit_code == 0, sim.output
    result = runner.invoke(app, ["compare", str(tmp_path / "real"), str(tmp_path / "sim"), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert set(doc) >= {"ttft_p50", "tpot_p99", "itl_p90", "e2e_p50", "output_tokens_per_s"}
    assert doc["tpot_p50"]["rel_error"] == pytest.approx(doc["tpot_p50"]["predicted"] / doc["tpot_p50"]["real"] - 1)
    other = runner.invoke(app, ["simulate", "--isl", "40", "--osl", "8", "--concurrency", "2", "--requests", "7",
                                "-o", str(tmp_path / "sim7"), "--quiet"])
    assert other.exit_code == 0
    mismatch = runner.invoke(app, ["compare", str(tmp_path / "real"), str(tmp_path / "sim7")])
    assert mismatch.exit_code == 2 and "same workload" in mismatch.output
