"""Hashing and the one fingerprint/resume scheme.

A job's *inputs* (arguments, settings, hashes of its input files) form a JSON object; its fingerprint is
the sha256 of that object's canonical JSON. A job stores the fingerprint (and, for a readable message,
the inputs) beside its outputs; a resume compares them with :func:`check_resume` and refuses, naming the
inputs that changed, rather than mix two runs.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from typing import Any

from cai_dsl.core.errors import CaiError

_BLOCK = 1 << 22


def canonical_json(data: Any) -> str:
    """Sorted keys, ``(",", ":")`` separators, non-ASCII kept, no NaN/Infinity, trailing newline."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False) + "\n"


def sha256_text(text: str) -> str:
    """sha256 (hex) of ``text`` as UTF-8."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    """sha256 (hex) of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def jsonable(data: Any) -> Any:
    """``data`` as plain JSON values (tuples become lists; paths and other objects their ``str``)."""
    return json.loads(json.dumps(data, default=str))


def fingerprint(inputs: Any) -> str:
    """The fingerprint of a job's inputs (any JSON-able value): sha256 of their canonical JSON."""
    return sha256_text(canonical_json(jsonable(inputs)))


class RunMismatch(CaiError):
    """A resumed job was started with different arguments than the outputs on disk."""


def changed_inputs(stored: Mapping[str, Any], inputs: Mapping[str, Any]) -> list[str]:
    """The sorted names of the inputs whose values differ between ``stored`` and ``inputs``."""
    current = jsonable(dict(inputs))
    return sorted(k for k in set(stored) | set(current) if stored.get(k) != current.get(k))


def check_resume(stored: Mapping[str, Any] | None, inputs: Mapping[str, Any], where: object) -> None:
    """Raise :class:`RunMismatch` when ``stored`` (the inputs a previous run recorded; None: nothing
    recorded) differs from ``inputs``; the message names ``where`` and the inputs that changed."""
    if stored is None:
        return
    changed = changed_inputs(stored, inputs)
    if changed:
        raise RunMismatch(
            f"{where} was written by a run with different arguments ({', '.join(changed)}); "
            "use another --out directory or delete it to start over"
        )
