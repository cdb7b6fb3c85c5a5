"""A minimal streaming client for OpenAI-compatible `/v1/completions`, on asyncio streams (standard library only).

One connection per request, HTTP/1.1 with `Connection: close`: the server's chunked body is de-chunked, split
into server-sent events, and every event's arrival time is taken the moment it is complete. Only the last event
(usage, finish reason) is parsed in full, so the client stays light while it shares the CPU with the server.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from servesim.errors import ServesimError


_FINISH = re.compile(rb'"finish_reason":\s*"([a-z_]+)"')


@dataclass
class Endpoint:
    host: str
    port: int
    path: str  # e.g. /v1/completions

    @classmethod
    def parse(cls, url: str) -> "Endpoint":
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme != "http" or not parts.hostname:
            raise ServesimError(f"--url {url!r}: give an http:// address such as http://127.0.0.1:8000 (https is not supported)")
        base = parts.path.rstrip("/")
        if not base.endswith("/completions"):
            base = (base if base.endswith("/v1") else base + "/v1") + "/completions"
        return cls(parts.hostname, parts.port or 80, base)


@dataclass
class Outcome:
    sent: float  # perf_counter seconds
    events: list[float] = field(default_factory=list)  # arrival of each token-carrying event
    prompt_tokens: int = -1
    completion_tokens: int = -1
    cached_tokens: int = -1
    finish_reason: str = ""
    error: str = ""


def completion_body(model: str, prompt_ids: list[int], max_tokens: int) -> dict:
    """Exactly `max_tokens` tokens: ignore_eos (a vLLM/SGLang extension) keeps the end-of-sequence token from
    stopping the answer early; the usage in the last event confirms the count."""
    return {"model": model, "prompt": prompt_ids, "max_tokens": max_tokens, "ignore_eos": True, "temperature": 0.0,
            "stream": True, "stream_options": {"include_usage": True}}


async def stream_completion(ep: Endpoint, body: dict, timeout: float) -> Outcome:
    out = Outcome(sent=time.perf_counter())
    payload = json.dumps(body).encode()
    head = (f"POST {ep.path} HTTP/1.1\r\nHost: {ep.host}:{ep.port}\r\nContent-Type: application/json\r\n"
            f"Accept: text/event-stream\r\nContent-Length: {len(payload)}\r\nConnection: close\r\n\r\n").encode()
    try:
        await asyncio.wait_for(_exchange(ep, head + payload, out), timeout)
    except asyncio.TimeoutError:
        out.error = f"no complete answer within {timeout:.0f} s"
    except OSError as e:
        out.error = f"connection to {ep.host}:{ep.port} failed: {e}"
    return out


async def _exchange(ep: Endpoint, request: bytes, out: Outcome) -> None:
    reader, writer = await asyncio.open_connection(ep.host, ep.port)
    try:
        writer.write(request)
        await writer.drain()
        status = await reader.readline()
        parts = status.split()
        code = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        chunked = False
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
        if code != 200:
            body = await reader.read(2000)
            out.error = f"HTTP {code}: {body.decode(errors='replace').strip()[:300]}"
            return
        await _read_events(reader, chunked, out)
    finally:
        writer.close()


async def _read_events(reader: asyncio.StreamReader, chunked: bool, out: Outcome) -> None:
    buffer = b""
    last = b""
    while True:
        if chunked:
            size_line = await reader.readline()
            if not size_line:
                break
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                break
            data = await reader.readexactly(size + 2)
            data = data[:-2]
        else:
            data = await reader.read(65536)
            if not data:
                break
        now = time.perf_counter()
        buffer += data
        while b"\n\n" in buffer:
            event, buffer = buffer.split(b"\n\n", 1)
            if not event.startswith(b"data:"):
                continue
            content = event[5:].strip()
            if content == b"[DONE]":
                _finish(last, out)
                return
            if b'"text"' in content:  # a choice: one step's token(s) for this request
                out.events.append(now)
                reason = _FINISH.search(content)
                if reason:
                    out.finish_reason = reason.group(1).decode()
            last = content
    _finish(last, out)


def _finish(last: bytes, out: Outcome) -> None:
    """The last event carries the usage (stream_options.include_usage); the one before it the finish reason."""
    if not last:
        out.error = out.error or "the stream ended without an event"
        return
    try:
        doc = json.loads(last)
    except json.JSONDecodeError:
        out.error = f"unparsable final event: {last[:200]!r}"
        return
    usage = doc.get("usage") or {}
    out.prompt_tokens = int(usage.get("prompt_tokens", -1))
    out.completion_tokens = int(usage.get("completion_tokens", -1))
    details = usage.get("prompt_tokens_details") or {}
    if details.get("cached_tokens") is not None:
        out.cached_tokens = int(details["cached_tokens"])
    if out.completion_tokens < 0:
        out.error = "the server sent no usage; it must support stream_options.include_usage"
