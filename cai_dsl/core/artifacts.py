"""Artifacts of long jobs: atomic writes and resumable JSONL record files.

A long job (``cai sl``, ``cai label``...) writes one JSON record per finished unit
of work, keyed by a stable id. Each record is appended as one line and flushed
with ``fsync`` before the job moves on, so a job killed at any point (even
``kill -9``) loses at most the unit in flight. On restart, :class:`RecordFile`
reads back the complete lines (a torn last line is dropped and truncated away)
and the job skips the ids already done: no record is duplicated or lost.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator


def write_atomic(path: str | Path, data: str | bytes) -> None:
    """Write ``data`` to ``path`` through a temp file in the same folder and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json_atomic(path: str | Path, payload: Any) -> None:
    write_atomic(path, json.dumps(payload, indent=2, ensure_ascii=False, sort_keys=True) + "\n")


class RunMismatch(Exception):
    """A resumed job was started with different arguments than the records on disk."""


class RecordFile:
    """An append-only JSONL file of records keyed by ``key_field``, safe to resume.

    ``fingerprint`` identifies the job's arguments (constitution hash, model, seed...);
    it is stored in a sidecar ``<file>.run.json`` and a resume with a different
    fingerprint is refused rather than mixing two runs in one file.
    """

    def __init__(self, path: str | Path, *, key_field: str = "id", fingerprint: dict | None = None):
        self.path = Path(path)
        self.key_field = key_field
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._check_fingerprint(fingerprint)
        self.records: dict[str, dict] = {}
        self._recover()

    # -- resume
    def _check_fingerprint(self, fingerprint: dict | None) -> None:
        if fingerprint is None:
            return
        sidecar = self.path.with_name(self.path.name + ".run.json")
        if sidecar.exists():
            stored = json.loads(sidecar.read_text(encoding="utf-8"))
            if stored != json.loads(json.dumps(fingerprint, sort_keys=True)):
                changed = sorted(k for k in set(stored) | set(fingerprint) if stored.get(k) != fingerprint.get(k))
                raise RunMismatch(
                    f"{self.path} was written by a run with different arguments ({', '.join(changed)}); "
                    "use another --out directory or delete it to start over"
                )
        else:
            write_json_atomic(sidecar, fingerprint)

    def _recover(self) -> None:
        if not self.path.exists():
            return
        good_bytes = 0
        with open(self.path, "rb") as handle:
            for raw in handle:
                if not raw.endswith(b"\n"):
                    break  # torn last line of a killed run
                try:
                    record = json.loads(raw)
                except json.JSONDecodeError:
                    break
                self.records[str(record[self.key_field])] = record
                good_bytes += len(raw)
        if good_bytes != self.path.stat().st_size:
            with open(self.path, "r+b") as handle:
                handle.truncate(good_bytes)

    # -- use
    def done(self, key: str) -> bool:
        return str(key) in self.records

    def pending(self, items: Iterable[dict]) -> list[dict]:
        """The items whose ``key_field`` has no record yet, in order."""
        return [item for item in items if not self.done(item[self.key_field])]

    def append(self, record: dict) -> None:
        """Append one record durably (flushed and fsynced before returning)."""
        key = str(record[self.key_field])
        if key in self.records:
            return
        line = json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n"
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
        self.records[key] = record

    def __iter__(self) -> Iterator[dict]:
        return iter(self.records.values())

    def __len__(self) -> int:
        return len(self.records)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
