"""Anthropic's published CAI prompt files (``cai_dsl/data/anthropic-2022/``) <-> shared examples and
principles: the few-shot layouts read by ``cai import --from anthropic`` and written by
``cai export --format anthropic``.

* ``CritiqueRevisionFewShotPrompts.json``: strings of ``\\n\\nLabel: text`` segments, labels
  ``Human``/``Assistant`` (the dialogue; the last pair is the prompt and response), then
  ``CritiqueRequest``, ``Critique``, ``RevisionRequest``, ``Revision``, and usually a closing
  ``\\n\\nHuman:`` -> shared ``example`` blocks with ``turn`` and ``request`` lines.
* ``RLMadisonFewShotPrompts.json``: ``{prompt: "\\n\\nHuman: ...\\n\\nAssistant:", corrects: [a],
  incorrects: [b]}`` -> shared ``example compare`` blocks, ``better a``.
* ``RLMadisonPrecogFewShotPrompts.json``: a whole chain-of-thought prompt (the conversation as
  ``H:``/``A:`` lines, a ``{}`` slot for the principle, options ``(A) [[[...]]]``, the reasoning and
  ``So the answer is: (X)``) -> shared ``example compare`` blocks with ``turn`` lines and a
  ``rationale``.

The export writes each layout back: the instruction files and ``RLMadisonFewShotPrompts.json``
exactly as published; the critique few-shots exactly but for the closing ``\\n\\nHuman:``, which it
always writes (one published dialogue lacks it); the chain-of-thought prompts in their most
common header, so their text (turns, options, reasoning, answer) is kept, not every byte of the
scaffolding (the published six vary it).
"""

from __future__ import annotations

import re
from typing import Any

from cai_dsl.compile.ir import CompareExampleIR, CritiqueExampleIR, Program
from cai_dsl.lang import ast

__all__ = ["compare_shot", "critique_shot", "export_anthropic", "precog_shot"]

_SEGMENT = re.compile(r"\n\n(Human|Assistant|CritiqueRequest|Critique|RevisionRequest|Revision):")
_ROLE = {"Human": "user", "Assistant": "assistant"}
_LABEL = {"user": "Human", "assistant": "Assistant"}
_PRECOG = re.compile(
    r"\n*Human: Consider the following conversation between a human(?: \(H\))? and an assistant(?: \(A\))?:\n\n"
    r"(?P<conversation>.*)\n\n\{\}\n \(A\) \[\[\[(?P<a>.*)\]\]\]\n \(B\) \[\[\[(?P<b>.*)\]\]\]\n\n"
    r"Assistant: Let's think step by step:[ \n](?P<rationale>.*)\n\nHuman:\nSo the answer is: \((?P<better>[AB])\)",
    re.S,
)
_PRECOG_HEAD = "\n\nHuman: Consider the following conversation between a human (H) and an assistant (A):\n\n"


def _t(value: str) -> ast.Text:
    return ast.Text(value=value)


def _turn(role: str, text: str) -> ast.Turn:
    return ast.Turn(role=ast.Ident(name=role), text=_t(text))


def _segments(text: str) -> list[tuple[str, str]] | None:
    """``\\n\\nLabel: text`` segments (None unless the text is made of them, each text after one space)."""
    parts = _SEGMENT.split(text)
    if parts[0] != "":
        return None
    out = []
    for label, body in zip(parts[1::2], parts[2::2]):
        if body and not body.startswith(" "):
            return None
        out.append((label, body[1:]))
    return out


def _dialogue(segments: list[tuple[str, str]]) -> list[tuple[str, str]] | None:
    """Alternating Human/Assistant segments, Human first, as (role, text); None otherwise."""
    roles = [_ROLE.get(label) for label, _ in segments]
    if len(roles) % 2 or roles != ["user", "assistant"] * (len(roles) // 2):
        return None
    return [(role, text) for role, (_, text) in zip(roles, segments)]


def critique_shot(text: Any) -> ast.Example | None:
    """One critique/revision few-shot string as a shared example (None: not in the layout)."""
    segments = _segments(text) if isinstance(text, str) else None
    if segments and segments[-1] == ("Human", ""):
        segments = segments[:-1]
    if not segments or len(segments) < 6:
        return None
    tail = [label for label, _ in segments[-4:]]
    dialogue = _dialogue(segments[:-4])
    if tail != ["CritiqueRequest", "Critique", "RevisionRequest", "Revision"] or not dialogue:
        return None
    (_, prompt), (_, response) = dialogue[-2:]
    (_, critique_request), (_, critique), (_, revision_request), (_, revision) = segments[-4:]
    return ast.Example(
        turns=tuple(_turn(role, t) for role, t in dialogue[:-2]),
        requests=(
            ast.Request(what=ast.Ident(name="critique"), text=_t(critique_request)),
            ast.Request(what=ast.Ident(name="revision"), text=_t(revision_request)),
        ),
        prompt=_t(prompt),
        response=_t(response),
        critique=_t(critique),
        revision=_t(revision),
    )


def compare_shot(entry: Any) -> ast.CompareExample | None:
    """One ``{prompt, corrects, incorrects}`` few-shot as a shared comparison (None: not in the layout)."""
    if not isinstance(entry, dict) or set(entry) != {"prompt", "corrects", "incorrects"}:
        return None
    corrects, incorrects = entry["corrects"], entry["incorrects"]
    if not (isinstance(corrects, list) and isinstance(incorrects, list) and len(corrects) == len(incorrects) == 1):
        return None
    if not all(isinstance(s, str) for s in (*corrects, *incorrects)):
        return None
    segments = _segments(entry["prompt"]) if isinstance(entry["prompt"], str) else None
    if not segments or segments[-1] != ("Assistant", ""):
        return None
    dialogue = _dialogue(segments)
    if not dialogue:
        return None
    return ast.CompareExample(
        turns=tuple(_turn(role, t) for role, t in dialogue[:-2]),
        prompt=_t(dialogue[-2][1]),
        a=_t(corrects[0]),
        b=_t(incorrects[0]),
        better=ast.Ident(name="a"),
    )


def precog_shot(entry: Any) -> ast.CompareExample | None:
    """One chain-of-thought few-shot as a shared comparison with a rationale (None: not in the layout)."""
    prompt = entry.get("prompt") if isinstance(entry, dict) and set(entry) == {"prompt"} else None
    m = _PRECOG.fullmatch(prompt) if isinstance(prompt, str) else None
    if m is None:
        return None
    lines = re.split(r"\n\n(?=[HA]: )", m.group("conversation"))
    if not all(line[:3] in ("H: ", "A: ") for line in lines):
        return None
    turns = [("user" if line[0] == "H" else "assistant", line[3:]) for line in lines]
    if turns[-1][0] != "user":
        return None
    return ast.CompareExample(
        turns=tuple(_turn(role, t) for role, t in turns[:-1]),
        prompt=_t(turns[-1][1]),
        a=_t(m.group("a")),
        b=_t(m.group("b")),
        better=ast.Ident(name=m.group("better").lower()),
        rationale=_t(m.group("rationale")),
    )


# ---------------------------------------------------------------- export


def _key(pid: str) -> str:
    return pid[len("anthropic.") :] if pid.startswith("anthropic.") else pid.replace(".", "_")


def _critique_text(ex: CritiqueExampleIR, critique: str, revise: str) -> str:
    turns = [(t.role, t.content) for t in ex.turns] + [("user", ex.prompt), ("assistant", ex.response)]
    parts = [f"\n\n{_LABEL[role]}: {text}" for role, text in turns]
    parts += [f"\n\nCritiqueRequest: {critique}", f"\n\nCritique: {ex.critique}"]
    parts += [f"\n\nRevisionRequest: {revise}", f"\n\nRevision: {ex.revision}", "\n\nHuman:"]
    return "".join(parts)


def _compare_entry(ex: CompareExampleIR) -> dict[str, Any]:
    turns = [(t.role, t.content) for t in ex.turns] + [("user", ex.prompt)]
    prompt = "".join(f"\n\n{_LABEL[role]}: {text}" for role, text in turns) + "\n\nAssistant:"
    good, bad = (ex.a, ex.b) if ex.better == "a" else (ex.b, ex.a)
    return {"prompt": prompt, "corrects": [good], "incorrects": [bad]}


def _precog_entry(ex: CompareExampleIR) -> dict[str, str]:
    turns = [(t.role, t.content) for t in ex.turns] + [("user", ex.prompt)]
    conversation = "\n\n".join(f"{'H' if role == 'user' else 'A'}: {text}" for role, text in turns)
    return {
        "prompt": f"{_PRECOG_HEAD}{conversation}\n\n{{}}\n (A) [[[{ex.a}]]]\n (B) [[[{ex.b}]]]\n\n"
        f"Assistant: Let's think step by step: {ex.rationale}\n\nHuman:\nSo the answer is: ({ex.better.upper()})"
    }


def export_anthropic(program: Program) -> dict[str, Any]:
    """The published files' layouts, by file name (the few-shot files only when there are examples)."""
    pool = program.critique_revision.pool
    first = program.principle(pool[0]) if pool else None
    instructions = {
        _key(p.id): {
            "prompt": [f"\n\nCritiqueRequest: {p.critique}\n\nCritique:"],
            "edit_request": f"\n\nRevisionRequest: {p.revise}\n\nRevision:",
        }
        for p in program.principles
        if p.critique is not None and p.revise is not None
    }
    out: dict[str, Any] = {"CritiqueRevisionInstructions.json": instructions}
    out["RLMadisonInstructions.json"] = [f"\n{p.compare} Options:" for p in program.principles if p.compare is not None]
    shots = []
    for ex in program.examples:
        critique = ex.critique_request if ex.critique_request is not None else first and first.critique
        revise = ex.revision_request if ex.revision_request is not None else first and first.revise
        if ex.complete and critique is not None and revise is not None:
            shots.append(_critique_text(ex, critique, revise))
    complete = [ex for ex in program.compare_examples if ex.complete]
    plain = [_compare_entry(ex) for ex in complete if ex.rationale is None]
    precog = [_precog_entry(ex) for ex in complete if ex.rationale is not None]
    for name, data in (
        ("CritiqueRevisionFewShotPrompts.json", shots),
        ("RLMadisonFewShotPrompts.json", plain),
        ("RLMadisonPrecogFewShotPrompts.json", precog),
    ):
        if data:
            out[name] = data
    return out
