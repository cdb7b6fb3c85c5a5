"""Trace replay: read real request logs into a Workload. Every bad row is reported as `file:line: what is wrong`.

Formats (detected from the header or the extension):
- azure:     CSV `TIMESTAMP, ContextTokens, GeneratedTokens` (Azure LLM inference trace 2023/2024)
- vidur:     CSV `arrived_at, num_prefill_tokens, num_decode_tokens` (seconds; Vidur's processed traces)
- burstgpt:  CSV `Timestamp, Model, Request tokens, Response tokens, Total tokens, Log Type` (failed rows,
             with 0 response tokens, are skipped and counted)
- mooncake:  JSONL `{"timestamp": ms, "input_length", "output_length", "hash_ids": [...]}`; equal hash ids
             are shared 512-token prefix blocks and feed the prefix cache
- lengths:   CSV `num_prefill_tokens, num_decode_tokens[, ...]` without times (ShareGPT/arXiv stats): only
             usable as an empirical length distribution
"""

from __future__ import annotations

import csv
import json
import re
from datetime import datetime
from pathlib import Path

import numpy as np

from servesim.errors import ServesimError
from servesim.workload.workload import Workload

TRACE_FORMATS = ("azure", "vidur", "burstgpt", "mooncake", "lengths")
_HEADERS = {
    "azure": ("TIMESTAMP", "ContextTokens", "GeneratedTokens"),
    "vidur": ("arrived_at", "num_prefill_tokens", "num_decode_tokens"),
    "burstgpt": ("Timestamp", "Request tokens", "Response tokens"),
    "lengths": ("num_prefill_tokens", "num_decode_tokens"),
}
_AZURE_TIME = re.compile(r"^(\d{4}-\d{2}-\d{2})[ T](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?$")


def detect_format(path: Path) -> str:
    if path.suffix == ".jsonl":
        return "mooncake"
    header = _read_header(path)
    for fmt in ("azure", "vidur", "burstgpt", "lengths"):
        if all(col in header for col in _HEADERS[fmt]):
            return fmt
    raise ServesimError(
        f"{path}:1: unrecognised trace header {header}; expected one of: "
        + "; ".join(f"{fmt} ({', '.join(cols)})" for fmt, cols in _HEADERS.items())
        + "; or a Mooncake .jsonl file"
    )


def _read_header(path: Path) -> list[str]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            return [c.strip() for c in next(csv.reader(f), [])]
    except FileNotFoundError:
        raise ServesimError(f"trace file {str(path)!r} does not exist") from None
    except UnicodeDecodeError:
        raise ServesimError(f"{path}: not a text CSV file") from None


def _int_field(value: str, path: Path, line: int, column: str, minimum: int) -> int:
    try:
        number = int(float(value)) if "." in value or "e" in value.lower() else int(value)
    except (ValueError, TypeError):
        raise ServesimError(f"{path}:{line}: column {column!r} is {value!r}, not an integer") from None
    if number < minimum:
        raise ServesimError(f"{path}:{line}: column {column!r} is {number}, must be >= {minimum}")
    return number


def _float_field(value: str, path: Path, line: int, column: str) -> float:
    try:
        number = float(value)
    except (ValueError, TypeError):
        raise ServesimError(f"{path}:{line}: column {column!r} is {value!r}, not a number") from None
    if not np.isfinite(number) or number < 0:
        raise ServesimError(f"{path}:{line}: column {column!r} is {value!r}, must be a finite number >= 0")
    return number


def _azure_seconds(value: str, path: Path, line: int) -> float:
    m = _AZURE_TIME.match(value.strip())
    if not m:
        raise ServesimError(f"{path}:{line}: TIMESTAMP {value!r} is not 'YYYY-MM-DD HH:MM:SS[.fraction]'")
    day = datetime.strptime(m.group(1), "%Y-%m-%d").toordinal()
    frac = float("0." + m.group(5)) if m.group(5) else 0.0
    return day * 86400.0 + int(m.group(2)) * 3600 + int(m.group(3)) * 60 + int(m.group(4)) + frac


def _rows(path: Path, limit: int | None):
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        reader.fieldnames = [c.strip() for c in reader.fieldnames or []]
        for i, row in enumerate(reader):
            if limit is not None and i >= limit:
                return
            line = reader.line_num
            if None in row:
                raise ServesimError(f"{path}:{line}: more columns than the {len(reader.fieldnames)} of the header")
            if any(v is None for v in row.values()):
                raise ServesimError(f"{path}:{line}: fewer columns than the {len(reader.fieldnames)} of the header")
            yield line, row


def read_csv_trace(path: Path, fmt: str, limit: int | None):
    times, prompts, outputs = [], [], []
    skipped = 0
    for line, row in _rows(path, limit):
        if fmt == "azure":
            times.append(_azure_seconds(row["TIMESTAMP"], path, line))
            prompts.append(_int_field(row["ContextTokens"], path, line, "ContextTokens", 1))
            outputs.append(_int_field(row["GeneratedTokens"], path, line, "GeneratedTokens", 1))
        elif fmt == "vidur":
            times.append(_float_field(row["arrived_at"], path, line, "arrived_at"))
            prompts.append(_int_field(row["num_prefill_tokens"], path, line, "num_prefill_tokens", 1))
            outputs.append(_int_field(row["num_decode_tokens"], path, line, "num_decode_tokens", 1))
        elif fmt == "burstgpt":
            response = _int_field(row["Response tokens"], path, line, "Response tokens", 0)
            request = _int_field(row["Request tokens"], path, line, "Request tokens", 0)
            if response == 0 or request == 0:  # failed requests in BurstGPT's logs
                skipped += 1
                continue
            times.append(_float_field(row["Timestamp"], path, line, "Timestamp"))
            prompts.append(request)
            outputs.append(response)
        else:  # lengths
            prompts.append(_int_field(row["num_prefill_tokens"], path, line, "num_prefill_tokens", 1))
            outputs.append(_int_field(row["num_decode_tokens"], path, line, "num_decode_tokens", 1))
    return times, prompts, outputs, skipped


def read_mooncake(path: Path, limit: int | None):
    times, prompts, outputs, prefixes = [], [], [], []
    with path.open(encoding="utf-8") as f:
        for line_no, text in enumerate(f, start=1):
            if limit is not None and len(times) >= limit:
                break
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as e:
                raise ServesimError(f"{path}:{line_no}: not valid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise ServesimError(f"{path}:{line_no}: expected a JSON object")
            for key in ("timestamp", "input_length", "output_length"):
                if key not in row:
                    raise ServesimError(f"{path}:{line_no}: missing field {key!r}")
            ts, inp, out = row["timestamp"], row["input_length"], row["output_length"]
            if not isinstance(ts, (int, float)) or ts < 0:
                raise ServesimError(f"{path}:{line_no}: timestamp {ts!r} must be a number of ms >= 0")
            for key, value in (("input_length", inp), ("output_length", out)):
                if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                    raise ServesimError(f"{path}:{line_no}: {key} {value!r} must be an integer >= 1")
            ids = row.get("hash_ids") or []
            if not isinstance(ids, list) or not all(isinstance(x, int) for x in ids):
                raise ServesimError(f"{path}:{line_no}: hash_ids must be a list of integers")
            times.append(ts / 1000.0)
            prompts.append(inp)
            outputs.append(out)
            prefixes.append(tuple(ids))
    return times, prompts, outputs, prefixes


def load_trace(path: str | Path, fmt: str = "auto", limit: int | None = None, time_scale: float = 1.0) -> Workload:
    """Replay a trace. Arrival times are re-based to start at 0 and multiplied by `time_scale`
    (0.5 replays twice as fast)."""
    path = Path(path)
    if limit is not None and limit < 1:
        raise ServesimError(f"--limit must be >= 1, got {limit}")
    if not time_scale > 0:
        raise ServesimError(f"--time-scale must be > 0, got {time_scale}")
    if not path.exists():
        raise ServesimError(f"trace file {str(path)!r} does not exist")
    if fmt == "auto":
        fmt = detect_format(path)
    elif fmt not in TRACE_FORMATS:
        raise ServesimError(f"unknown trace format {fmt!r}; valid choices: auto, {', '.join(TRACE_FORMATS)}")
    prefixes = None
    skipped = 0
    if fmt == "mooncake":
        times, prompts, outputs, prefixes = read_mooncake(path, limit)
    else:
        times, prompts, outputs, skipped = read_csv_trace(path, fmt, limit)
    if not prompts:
        raise ServesimError(f"{path}: the trace has no requests")
    if fmt == "lengths":
        raise ServesimError(f"{path}: a lengths-only file has no arrival times; use it with --lengths empirical:{path}")
    arrival = np.asarray(times, dtype=np.float64)
    arrival = (arrival - arrival.min()) * time_scale
    source = {"trace": str(path), "format": fmt, "time_scale": time_scale, "limit": limit}
    if skipped:
        source["skipped_failed_rows"] = skipped
    has_prefix = prefixes is not None and any(prefixes)
    return Workload(name=path.stem, prompt_len=np.asarray(prompts), output_len=np.asarray(outputs), arrival=arrival,
                    prefix_ids=prefixes if has_prefix else None, prefix_block_tokens=512, source=source)


def load_lengths(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(prompt, output) pairs from any CSV trace with lengths, for empirical resampling."""
    path = Path(path)
    if not path.exists():
        raise ServesimError(f"length file {str(path)!r} does not exist")
    fmt = detect_format(path)
    if fmt == "mooncake":
        _, prompts, outputs, _ = read_mooncake(path, None)
    else:
        _, prompts, outputs, _ = read_csv_trace(path, fmt, None)
    if not prompts:
        raise ServesimError(f"{path}: no rows")
    return np.asarray(prompts, dtype=np.int64), np.asarray(outputs, dtype=np.int64)
