"""JSONL files: one reader with one rule for a torn last line, and the resumable record file of long jobs.

The rule, for every JSONL file the project reads (inputs and its own outputs):

* lines are split on ``"\\n"`` only (a JSON string may hold U+2028, U+0085 or a form feed); blank lines
  are skipped;
* a line that ends with ``"\\n"`` must be a JSON object, else :class:`RecordError` names ``file:line``
  (never a silent drop of the valid records after it);
* the last line, when it has no ``"\\n"``, is a record if it is a complete JSON object (an editor that
  does not end files with a newline); otherwise it is the half-written record of a killed writer: it
  is dropped and a warning saying so is returned to the caller. :class:`RecordFile` then rewrites the
  file without it (or with the missing newline added) before appending again.

A long job (``cai sl``, ``cai label``...) appends one JSON record per finished unit of work, keyed by a
stable id, flushed with ``fsync`` before the job moves on, so a job killed at any point (even ``kill
-9``) loses at most the unit in flight; on restart the job skips the ids already done.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cai_dsl.core.errors import CaiError
from cai_dsl.core.files import write_atomic, write_json_atomic
from cai_dsl.core.hashing import RunMismatch, check_resume, jsonable

_LONE_SURROGATE_HINT = re.compile(r"\\u[dD][89a-fA-F]")
"""A ``\\uD8xx``-``\\uDFxx`` escape: the string may hold a lone surrogate (checked then)."""

__all__ = ["JsonlContent", "RecordError", "RecordFile", "RunMismatch", "dump_record", "loads_checked", "read_jsonl"]


class RecordError(CaiError, ValueError):
    """A JSONL file cannot be read or has a malformed line; the message names ``file:line``."""


@dataclass(frozen=True)
class JsonlContent:
    """What :func:`read_jsonl` found: ``rows`` as ``(line number, object)``; ``warnings`` about a dropped
    torn last line; ``end``: the byte length of the file through its last record (where a rewrite cuts);
    ``terminated``: whether that last record ends with a newline; ``size``: the file's byte length."""

    rows: tuple[tuple[int, dict[str, Any]], ...]
    warnings: tuple[str, ...]
    end: int
    terminated: bool
    size: int

    @property
    def records(self) -> list[dict[str, Any]]:
        return [obj for _, obj in self.rows]

    @property
    def clean(self) -> bool:
        """True when the file is exactly its records, each ending with a newline."""
        return self.terminated and self.end == self.size


def loads_checked(text: str, where: str, error: type[Exception], *, position: bool = False) -> Any:
    """``json.loads`` whose problems raise ``error`` as ``where: message``: invalid JSON (``where:line:column:``
    with ``position``, else the column in the message), JSON nested deeper than the parser's recursion
    limit, and strings with a lone surrogate (``"\\ud800"``, which cannot be written back as UTF-8)."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        if position:
            raise error(f"{where}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None
        raise error(f"{where}: invalid JSON: {exc.msg} (column {exc.colno})") from None
    except RecursionError:
        raise error(f"{where}: JSON nested too deeply") from None
    if "\\u" in text and _LONE_SURROGATE_HINT.search(text):  # rare: only then check the parsed strings
        try:
            json.dumps(obj, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise error(f"{where}: a string holds a lone surrogate (an unpaired \\uD800-\\uDFFF escape)") from None
    return obj


def _parse(raw: bytes, where: str, error: type[Exception]) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{where}: not UTF-8 text: {exc}") from None
    obj = loads_checked(text, where, error)
    if not isinstance(obj, dict):
        raise error(f"{where}: expected a JSON object, got {type(obj).__name__}")
    return obj


def read_jsonl(path: str | os.PathLike[str], *, error: type[Exception] = RecordError) -> JsonlContent:
    """Read a JSONL file by the rule above; problems raise ``error(message)`` (a :class:`RecordError` by
    default; a stage passes its own user-facing error class)."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise error(f"{p}: no such file") from None
    except IsADirectoryError:
        raise error(f"{p}: is a directory, not a JSONL file") from None
    except OSError as exc:
        raise error(f"{p}: cannot read: {exc}") from None
    rows: list[tuple[int, dict[str, Any]]] = []
    warnings: list[str] = []
    end, terminated, offset = 0, True, 0
    lines = data.split(b"\n")
    for number, raw in enumerate(lines, start=1):
        last = number == len(lines)
        offset += len(raw) + (0 if last else 1)
        if not raw.strip():
            continue
        if not last:
            rows.append((number, _parse(raw, f"{p}:{number}", error)))
            end, terminated = offset, True
            continue
        try:
            obj = _parse(raw, f"{p}:{number}", RecordError)
        except RecordError:
            warnings.append(f"{p}:{number}: dropped a half-written last line (a killed run): {raw[:40]!r}...")
            continue
        rows.append((number, obj))
        end, terminated = offset, False
    return JsonlContent(tuple(rows), tuple(warnings), end, terminated, len(data))


def dump_record(record: Mapping[str, Any]) -> str:
    """One record as its JSONL line (sorted keys, non-ASCII kept, a trailing newline)."""
    return json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n"


class RecordFile:
    """An append-only JSONL file of records keyed by ``key_field``, safe to resume.

    ``fingerprint`` holds the job's inputs (constitution hash, model, seed...); it is stored in a sidecar
    ``<file>.run.json`` and a resume with different inputs raises :class:`RunMismatch` rather than mix
    two runs in one file. ``warnings`` says what the recovery of a killed run dropped.
    """

    def __init__(self, path: str | os.PathLike[str], *, key_field: str = "id", fingerprint: Mapping[str, Any] | None = None):
        self.path = Path(path)
        self.key_field = key_field
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._check_fingerprint(fingerprint)
        self.records: dict[str, dict[str, Any]] = {}
        self.warnings: tuple[str, ...] = ()
        self._recover()

    def _check_fingerprint(self, fingerprint: Mapping[str, Any] | None) -> None:
        if fingerprint is None:
            return
        sidecar = self.path.with_name(self.path.name + ".run.json")
        if sidecar.exists():
            try:
                stored = json.loads(sidecar.read_text(encoding="utf-8"))
            except ValueError as exc:
                raise RecordError(f"{sidecar}: not a run fingerprint: {exc}") from None
            check_resume(stored, fingerprint, self.path)
        else:
            write_json_atomic(sidecar, jsonable(dict(fingerprint)))

    def _recover(self) -> None:
        if not self.path.exists():
            return
        content = read_jsonl(self.path)
        for number, record in content.rows:
            if self.key_field not in record:
                raise RecordError(f"{self.path}:{number}: record without `{self.key_field}`")
            self.records[str(record[self.key_field])] = record
        self.warnings = content.warnings
        if not content.clean:  # drop the torn tail, end the last record with its newline
            head = self.path.read_bytes()[: content.end]
            write_atomic(self.path, head + (b"" if content.terminated else b"\n"))

    def _rewrite(self) -> None:
        write_atomic(self.path, "".join(dump_record(r) for r in self.records.values()))

    def done(self, key: object) -> bool:
        return str(key) in self.records

    def pending(self, items: Iterable[Mapping[str, Any]]) -> list:
        """The items whose ``key_field`` has no record yet, in order."""
        return [item for item in items if not self.done(item[self.key_field])]

    def append(self, record: Mapping[str, Any]) -> None:
        """Append one record durably (flushed and fsynced before returning); a done key is not appended."""
        key = str(record[self.key_field])
        if key in self.records:
            return
        with open(self.path, "a", encoding="utf-8", newline="") as handle:
            handle.write(dump_record(record))
            handle.flush()
            os.fsync(handle.fileno())
        self.records[key] = dict(record)

    def retain(self, keep: Callable[[dict[str, Any]], bool]) -> None:
        """Rewrite the file (atomically) with only the records for which ``keep`` is true."""
        kept = {k: r for k, r in self.records.items() if keep(r)}
        if len(kept) != len(self.records):
            self.records = kept
            self._rewrite()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.records.values())

    def __len__(self) -> int:
        return len(self.records)
