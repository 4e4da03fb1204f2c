"""Request traces from files: the Azure LLM 2023 CSV, Mooncake JSONL and a plain CSV.

Every reader gives a `Trace`: arrival offsets in seconds from the first request (sorted),
prompt and output tokens, and the optional task type, tenant and priority of each request.
Bad rows raise `InvalidInput` naming the file, the line and the column.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from modelfleet.api.load import InputError, InvalidInput

FORMATS = ("azure", "mooncake", "csv")
AZURE_COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
CSV_COLUMNS = ("timestamp", "input_tokens", "output_tokens")
CSV_OPTIONAL = ("task_type", "tenant", "priority")
MOONCAKE_FIELDS = ("timestamp", "input_length", "output_length")
MAX_ERRORS = 20


@dataclass(frozen=True)
class Trace:
    source: str
    format: str
    arrivals: list[float]  # seconds after the first request, ascending
    prompt_tokens: list[int]
    output_tokens: list[int]
    task_types: list[str | None] | None = None
    tenants: list[str | None] | None = None
    priorities: list[str | None] | None = None
    origin: datetime | None = None  # when the first request arrived, if the trace says

    def __len__(self) -> int:
        return len(self.arrivals)

    @property
    def period(self) -> float:
        """The time one pass covers when the trace is repeated end to end: its span plus
        one mean gap, so the seam between passes looks like any other gap."""
        count = len(self.arrivals)
        span = self.arrivals[-1]
        if count < 2 or span <= 0:
            return max(span, 1.0)
        return span * count / (count - 1)

    @property
    def mean_rate(self) -> float:
        return len(self.arrivals) / self.period


class _Rows:
    """Collects rows and errors; too many errors stop reading early."""

    def __init__(self, source: str, fmt: str):
        self.source, self.format = source, fmt
        self.times: list[float] = []
        self.absolute: list[datetime] = []
        self.prompt: list[int] = []
        self.output: list[int] = []
        self.optional: dict[str, list[str | None]] = {}
        self.errors: list[InputError] = []

    def error(self, line: int, column: str, message: str) -> None:
        self.errors.append(InputError(f"{self.source}:{line}", "trace", column, message))
        if len(self.errors) >= MAX_ERRORS:
            raise InvalidInput(self.errors)

    def tokens(self, line: int, column: str, text: object) -> int | None:
        try:
            value = int(str(text).strip())
        except ValueError:
            self.error(line, column, f"{text!r} is not a whole number of tokens")
            return None
        if value < 1:
            self.error(line, column, f"must be >= 1 (got {value})")
            return None
        return value

    def add(self, when: float | datetime, prompt: int, output: int, **optional) -> None:
        if isinstance(when, datetime):
            self.absolute.append(when)
        else:
            self.times.append(when)
        self.prompt.append(prompt)
        self.output.append(output)
        for key, value in optional.items():
            self.optional.setdefault(key, []).append(value or None)

    def trace(self) -> Trace:
        if self.errors:
            raise InvalidInput(self.errors)
        if not self.prompt:
            raise InvalidInput([InputError(self.source, "trace", "", "has no requests")])
        if self.absolute and self.times:
            raise InvalidInput(
                [
                    InputError(
                        self.source,
                        "trace",
                        "timestamp",
                        "mixes ISO-8601 times and seconds: use one kind throughout",
                    )
                ]
            )
        origin = min(self.absolute) if self.absolute else None
        times = (
            [(t - origin).total_seconds() for t in self.absolute]
            if origin is not None
            else self.times
        )
        order = sorted(range(len(times)), key=times.__getitem__)
        first = times[order[0]]

        def pick(values):
            return [values[i] for i in order]

        optional = {key: pick(values) for key, values in self.optional.items()}
        return Trace(
            source=self.source,
            format=self.format,
            arrivals=[times[i] - first for i in order],
            prompt_tokens=pick(self.prompt),
            output_tokens=pick(self.output),
            task_types=optional.get("task_type"),
            tenants=optional.get("tenant"),
            priorities=optional.get("priority"),
            origin=origin,
        )


def _csv_rows(path: Path, required: tuple[str, ...], rows: _Rows) -> Iterator[tuple[int, dict]]:
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        header = [name.strip() for name in reader.fieldnames or []]
        missing = [name for name in required if name not in header]
        if missing:
            raise InvalidInput(
                [
                    InputError(
                        f"{rows.source}:1",
                        "trace",
                        missing[0],
                        f"missing column: the header needs {', '.join(required)} "
                        f"(found {', '.join(header) or 'nothing'})",
                    )
                ]
            )
        reader.fieldnames = header
        for row in reader:
            yield reader.line_num, row


def _absolute_time(text: str) -> datetime:
    """ISO-8601; a time without an offset is UTC (the Azure trace gives none)."""
    value = datetime.fromisoformat(text.strip())
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def read_azure(path: Path) -> Trace:
    rows = _Rows(str(path), "azure")
    for line, row in _csv_rows(path, AZURE_COLUMNS, rows):
        try:
            when = _absolute_time(row["TIMESTAMP"])
        except (ValueError, AttributeError):
            rows.error(line, "TIMESTAMP", f"{row['TIMESTAMP']!r} is not a time")
            continue
        prompt = rows.tokens(line, "ContextTokens", row["ContextTokens"])
        output = rows.tokens(line, "GeneratedTokens", row["GeneratedTokens"])
        if prompt is not None and output is not None:
            rows.add(when, prompt, output)
    return rows.trace()


def _csv_time(text: str) -> float | datetime:
    try:
        return float(text)
    except ValueError:
        value = datetime.fromisoformat(text.strip())
        if value.tzinfo is None:
            raise ValueError("has no UTC offset") from None
        return value


def read_csv(path: Path) -> Trace:
    rows = _Rows(str(path), "csv")
    for line, row in _csv_rows(path, CSV_COLUMNS, rows):
        text = row["timestamp"] or ""
        try:
            when = _csv_time(text)
        except ValueError:
            rows.error(
                line,
                "timestamp",
                f"{text!r} is neither seconds nor an ISO-8601 time with a UTC offset",
            )
            continue
        prompt = rows.tokens(line, "input_tokens", row["input_tokens"])
        output = rows.tokens(line, "output_tokens", row["output_tokens"])
        if prompt is not None and output is not None:
            rows.add(when, prompt, output, **{k: row.get(k) for k in CSV_OPTIONAL if k in row})
    return rows.trace()


def read_mooncake(path: Path) -> Trace:
    """JSON lines with `timestamp` (milliseconds, as Mooncake's traces), `input_length`
    and `output_length`; other fields (hash_ids) are ignored."""
    rows = _Rows(str(path), "mooncake")
    with path.open() as handle:
        for line, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as err:
                rows.error(line, "", f"not JSON: {err.msg}")
                continue
            if not isinstance(record, dict):
                rows.error(line, "", "expected a JSON object per line")
                continue
            absent = [name for name in MOONCAKE_FIELDS if name not in record]
            if absent:
                rows.error(
                    line, absent[0], "missing: every line needs " + ", ".join(MOONCAKE_FIELDS)
                )
                continue
            stamp = record["timestamp"]
            if isinstance(stamp, bool) or not isinstance(stamp, int | float):
                rows.error(line, "timestamp", f"{stamp!r} is not a number of milliseconds")
                continue
            prompt = rows.tokens(line, "input_length", record["input_length"])
            output = rows.tokens(line, "output_length", record["output_length"])
            if prompt is not None and output is not None:
                rows.add(stamp / 1000.0, prompt, output)
    return rows.trace()


def detect_format(path: Path) -> str:
    if path.suffix in (".jsonl", ".json"):
        return "mooncake"
    with path.open(newline="") as handle:
        header = handle.readline()
    return "azure" if all(column in header for column in AZURE_COLUMNS) else "csv"


def read_trace(path: str | Path, fmt: str | None = None) -> Trace:
    path = Path(path)
    if not path.is_file():
        raise InvalidInput([InputError(str(path), "trace", "", "no such file")])
    fmt = fmt or detect_format(path)
    readers = {"azure": read_azure, "mooncake": read_mooncake, "csv": read_csv}
    try:
        return readers[fmt](path)
    except UnicodeDecodeError:
        raise InvalidInput([InputError(str(path), "trace", "", "is not a text file")]) from None
