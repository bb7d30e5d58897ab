"""SFT data selection: the (prompt, completion) examples of SL-CAI records (gated targets only)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cai_dsl.compile.ir import Program
from cai_dsl.core.records import read_jsonl
from cai_dsl.run.errors import SFTError
from cai_dsl.run.prompts import PromptRenderer

__all__ = ["build_examples", "excluded_records", "read_records"]

def read_records(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The complete records of an ``sl-data.jsonl`` file (a torn last line is ignored; see core.records)."""
    p = Path(path)
    if not p.is_file():
        raise SFTError(f"{p}: no such file (run `cai sl` first)")
    return read_jsonl(p, error=SFTError).records


def excluded_records(
    records: Sequence[dict[str, Any]], examples: Sequence[dict[str, Any]], *, include_helpful: bool = True, exclude_ids: Sequence[str] = ()
) -> int:
    """Records that give no example although not held out: no accepted response (see :func:`build_examples`)."""
    used = {e["id"].rsplit("#", 1)[0] for e in examples}
    skip = set(exclude_ids)
    return sum(
        1
        for r in records
        if str(r["id"]) not in skip and str(r["id"]) not in used and (include_helpful or not r.get("helpful"))
    )


def build_examples(
    records: Sequence[dict[str, Any]],
    program: Program,
    *,
    revisions: str = "final",
    include_helpful: bool = True,
    exclude_ids: Sequence[str] = (),
    helpful_repeats: int = 1,
) -> list[dict[str, Any]]:
    """Conversational prompt-completion examples (``{"prompt": [...], "completion": [...], "id"}``),
    sorted by record id (so the data order never depends on the order records were written).

    Gated records (with a ``target`` field, :mod:`cai_dsl.run.sl_gate`) give their ``target`` — the last
    accepted revision, or the initial response that passed the checks — and nothing when it is None
    (rejected revisions are never trained on); with ``revisions="all"``, every accepted revision.
    Older records give their final response (or every non-empty revision). Helpful records give
    their target (or initial response) when ``include_helpful``, ``helpful_repeats`` times: the model's own
    answers to benign prompts have a low loss and give little gradient next to new refusal targets, so
    repeating them is the class balance that keeps the adapter from refusing benign look-alikes (measured in
    docs/benchmarks.md). Empty completions are skipped.
    """
    if revisions not in ("final", "all"):
        raise SFTError(f"revisions must be `final` or `all`, not `{revisions}`")
    if helpful_repeats < 1:
        raise SFTError(f"helpful_repeats must be at least 1, not {helpful_repeats}")
    skip = set(exclude_ids)
    renderer = PromptRenderer.of(program)
    out = []
    for record in sorted(records, key=lambda r: str(r["id"])):
        if str(record["id"]) in skip:
            continue
        gated = "target" in record
        target = record.get("target") if gated else record.get("initial" if record.get("helpful") else "final")
        if record.get("helpful"):
            texts = [target or ""] * helpful_repeats if include_helpful else []
        elif revisions == "all":
            rounds = record.get("rounds", [])
            texts = [t["revision"] for t in rounds if t.get("revision") and t.get("accepted") is not False]
            if not texts:
                texts = [target or ""]
        else:
            texts = [target or ""]
        prompt = renderer.messages(record["prompt"])
        for k, text in enumerate(t for t in texts if t.strip()):
            out.append(
                {
                    "id": f"{record['id']}#{k}",
                    "prompt": prompt,
                    "completion": [renderer.response(text.strip())],
                }
            )
    return out
