"""Export compiled constitutions to other tools' formats, and import theirs as `.const` files.

Export (from a compiled :class:`~cai_dsl.compile.ir.Program`, so only error-free deployments export):

* ``hf-cai`` — Hugging Face's open CAI recipe (llm-swarm ``examples/constitutional-ai``):
  ``{"constitutions": [{"critic", "revision"}, ...], "system_chat": [[{"role", "content"}, ...], ...]}``.
  ``constitutions``: the principles with both critique and revise text, in declaration order;
  ``system_chat``: one six-turn chat per complete ``example`` block (prompt, response, critic
  request, critique, revision request, revision), principles in declaration order.
* ``langchain`` — a JSON list of LangChain ``ConstitutionalPrinciple`` fields:
  ``[{"name", "critique_request", "revision_request"}, ...]``.
* ``jsonl`` — the comparison principles, one ``{"id", "compare", "weight", "tags"}`` per line.

Import (to a :class:`~cai_dsl.lang.ast.ConstitutionFile`, printed with :func:`cai_dsl.lang.printer.format_ast`
when that exists, else with the minimal printer here):

* ``hf-cai`` — principles ``<prefix>.pNN`` with critique/revise; each ``system_chat`` conversation
  becomes an ``example`` of the principle whose critic text it uses (conversations matching no
  principle are reported and skipped).
* ``anthropic`` — ``CritiqueRevisionInstructions.json`` (16 pairs, ``harmfulN`` ->
  ``anthropic.harmfulN``; the ``CritiqueRequest:``/``Critique:`` and ``RevisionRequest:``/
  ``Revision:`` scaffolding is stripped) and optionally ``RLMadisonInstructions.json`` (comparison
  principles ``anthropic.compareNN``, the trailing ``Options:`` stripped).

Every imported file has one deployment, ``default { include * }``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from cai_dsl.core.errors import CaiError
from cai_dsl.core.files import write_atomic

from cai_dsl.lang import ast
from cai_dsl.compile.ir import Program

__all__ = [
    "EXPORT_FORMATS",
    "IMPORT_FORMATS",
    "ImportResult",
    "InteropError",
    "export_program",
    "export_text",
    "from_anthropic",
    "from_hf_cai",
    "import_file",
    "print_const",
    "render_const",
    "write_atomic",
]

EXPORT_FORMATS = ("hf-cai", "langchain", "jsonl")
IMPORT_FORMATS = ("hf-cai", "anthropic")


class InteropError(CaiError):
    """An input file is not in the expected format; the message says what is wrong."""


# ---------------------------------------------------------------- export


def _hf_cai(program: Program) -> dict[str, Any]:
    constitutions = []
    chats = []
    for p in program.principles:
        if p.critique is None or p.revise is None:
            continue
        constitutions.append({"critic": p.critique, "revision": p.revise})
        for ex in p.examples:
            if not ex.complete:
                continue
            chats.append(
                [
                    {"role": "user", "content": ex.prompt},
                    {"role": "assistant", "content": ex.response},
                    {"role": "user", "content": p.critique},
                    {"role": "assistant", "content": ex.critique},
                    {"role": "user", "content": p.revise},
                    {"role": "assistant", "content": ex.revision},
                ]
            )
    return {"constitutions": constitutions, "system_chat": chats}


def _langchain(program: Program) -> list[dict[str, str]]:
    return [
        {"name": p.id, "critique_request": p.critique, "revision_request": p.revise}
        for p in program.principles
        if p.critique is not None and p.revise is not None
    ]


def _jsonl(program: Program) -> list[dict[str, Any]]:
    return [
        {"id": p.id, "compare": p.compare, "weight": p.weight, "tags": list(p.tags)}
        for p in program.principles
        if p.compare is not None
    ]


def export_program(program: Program, fmt: str) -> Any:
    """The export as JSON-able data (a list of records for ``jsonl``)."""
    if fmt == "hf-cai":
        return _hf_cai(program)
    if fmt == "langchain":
        return _langchain(program)
    if fmt == "jsonl":
        return _jsonl(program)
    raise InteropError(f"unknown export format `{fmt}` (formats: {', '.join(EXPORT_FORMATS)})")


def export_text(program: Program, fmt: str) -> str:
    """The export as file text (deterministic: indented JSON, or one compact object per line)."""
    data = export_program(program, fmt)
    if fmt == "jsonl":
        return "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in data)
    return json.dumps(data, ensure_ascii=False, indent=2) + "\n"


# ---------------------------------------------------------------- import


class ImportResult:
    """An imported constitution: the AST, the `.const` text, and warnings about skipped input."""

    def __init__(self, file: ast.ConstitutionFile, text: str, warnings: list[str]):
        self.file = file
        self.text = text
        self.warnings = warnings


def _t(value: str) -> ast.Text:
    return ast.Text(value=value)


def _principle(pid: str, critique: str | None = None, revise: str | None = None, compare: str | None = None, examples=()) -> ast.Principle:
    return ast.Principle(
        id=ast.Ident(name=pid),
        critique=_t(critique) if critique is not None else None,
        revise=_t(revise) if revise is not None else None,
        compare=_t(compare) if compare is not None else None,
        examples=tuple(examples),
    )


def _file(name: str, source: str | None, principles: list[ast.Principle], path: str) -> ast.ConstitutionFile:
    items: list[Any] = [ast.Header(name=_t(name), version=_t("1.0"))]
    if source:
        items.append(ast.Source(text=_t(source)))
    items.extend(principles)
    items.append(
        ast.Deployment(
            name=ast.Ident(name="default"),
            items=(ast.Include(selectors=(ast.Selector(form="glob", text="*"),)),),
        )
    )
    return ast.ConstitutionFile(path=path, items=tuple(items))


def _load_json(path: str | os.PathLike[str]) -> Any:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InteropError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InteropError(f"{path}: cannot read: {exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InteropError(f"{path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None


def _chats(system_chat: Any, origin: str) -> list[list[dict]]:
    if not isinstance(system_chat, list):
        raise InteropError(f"{origin}: `system_chat` must be a list")
    if system_chat and all(isinstance(m, dict) for m in system_chat):  # flattened: split at each new prompt
        chats, current = [], []
        for m in system_chat:
            current.append(m)
            if len(current) == 6:
                chats.append(current)
                current = []
        return chats
    return [c for c in system_chat if isinstance(c, list)]


def from_hf_cai(data: Any, *, name: str = "imported", prefix: str = "hf", origin: str = "<hf-cai>") -> ImportResult:
    """Hugging Face CAI recipe JSON -> a constitution (see the module docstring)."""
    if isinstance(data, list):  # a bare list of {"critic", "revision"}
        data = {"constitutions": data, "system_chat": []}
    if not isinstance(data, dict) or not isinstance(data.get("constitutions"), list):
        raise InteropError(f"{origin}: expected an object with a `constitutions` list of {{critic, revision}}")
    warnings: list[str] = []
    pairs: list[tuple[str, str]] = []
    for i, entry in enumerate(data["constitutions"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("critic"), str) or not isinstance(entry.get("revision"), str):
            raise InteropError(f"{origin}: constitutions[{i}] needs string fields `critic` and `revision`")
        pairs.append((entry["critic"], entry["revision"]))
    width = max(2, len(str(len(pairs))))
    ids = [f"{prefix}.p{i + 1:0{width}d}" for i in range(len(pairs))]
    examples: dict[int, list[ast.Example]] = {}
    by_critic = {}
    for i, (critic, _) in enumerate(pairs):
        by_critic.setdefault(critic.strip(), i)
    for k, chat in enumerate(_chats(data.get("system_chat", []), origin)):
        ok = (
            len(chat) >= 6
            and all(isinstance(m, dict) and isinstance(m.get("content"), str) for m in chat[:6])
            and [m.get("role") for m in chat[:6]] == ["user", "assistant"] * 3
        )
        if not ok:
            warnings.append(f"system_chat[{k}]: not a six-turn user/assistant chat; skipped")
            continue
        i = by_critic.get(chat[2]["content"].strip())
        if i is None:
            warnings.append(f"system_chat[{k}]: its critic request matches no constitution entry; skipped")
            continue
        examples.setdefault(i, []).append(
            ast.Example(
                prompt=_t(chat[0]["content"]),
                response=_t(chat[1]["content"]),
                critique=_t(chat[3]["content"]),
                revision=_t(chat[5]["content"]),
            )
        )
    principles = [
        _principle(ids[i], critique=c, revise=r, examples=examples.get(i, ())) for i, (c, r) in enumerate(pairs)
    ]
    file = _file(name, "imported from a Hugging Face CAI recipe", principles, f"{name}.const")
    return ImportResult(file, render_const(file), warnings)


_CRITIQUE_RE = re.compile(r"^\s*(?:CritiqueRequest:\s*)?(.*?)\s*(?:Critique:\s*)?$", re.S)
_REVISION_RE = re.compile(r"^\s*(?:RevisionRequest:\s*)?(.*?)\s*(?:Revision:\s*)?$", re.S)


def _strip(regex: re.Pattern[str], text: str) -> str:
    m = regex.match(text)
    return m.group(1).strip() if m else text.strip()


def from_anthropic(
    instructions: Any,
    comparisons: Any = None,
    *,
    name: str = "anthropic-2022",
    origin: str = "<anthropic>",
) -> ImportResult:
    """Anthropic's published JSON (CritiqueRevisionInstructions + RLMadisonInstructions) -> a constitution."""
    if not isinstance(instructions, dict):
        raise InteropError(f"{origin}: expected an object `harmfulN: {{prompt, edit_request}}` (CritiqueRevisionInstructions.json)")
    principles = []

    def key_order(k: str):
        m = re.match(r"^(.*?)(\d+)$", k)
        return (m.group(1), int(m.group(2))) if m else (k, -1)

    for key in sorted(instructions, key=key_order):
        entry = instructions[key]
        prompt = entry.get("prompt") if isinstance(entry, dict) else None
        if isinstance(prompt, list) and prompt and isinstance(prompt[0], str):
            prompt = prompt[0]
        edit = entry.get("edit_request") if isinstance(entry, dict) else None
        if not isinstance(prompt, str) or not isinstance(edit, str):
            raise InteropError(f"{origin}: `{key}` needs `prompt` (a string or a list of one) and `edit_request`")
        ident = re.sub(r"[^A-Za-z0-9_]", "_", key)
        if not re.match(r"^[A-Za-z_]", ident):
            ident = "p" + ident
        principles.append(
            _principle(f"anthropic.{ident}", critique=_strip(_CRITIQUE_RE, prompt), revise=_strip(_REVISION_RE, edit))
        )
    if comparisons is not None:
        if not isinstance(comparisons, list) or not all(isinstance(c, str) for c in comparisons):
            raise InteropError(f"{origin}: RLMadisonInstructions.json must be a list of strings")
        width = max(2, len(str(len(comparisons))))
        for i, text in enumerate(comparisons):
            compare = re.sub(r"\s*Options:\s*$", "", text.strip())
            principles.append(_principle(f"anthropic.compare{i:0{width}d}", compare=compare))
    file = _file(name, "Bai et al. 2022, Constitutional AI: Harmlessness from AI Feedback (published prompts)", principles, f"{name}.const")
    return ImportResult(file, render_const(file), [])


def import_file(
    path: str | os.PathLike[str],
    fmt: str,
    *,
    compare_path: str | os.PathLike[str] | None = None,
    name: str | None = None,
) -> ImportResult:
    """Read ``path`` in format ``fmt`` (``hf-cai`` or ``anthropic``) and build a constitution.

    For ``anthropic``, ``path`` is ``CritiqueRevisionInstructions.json`` or a directory holding it
    (and, optionally, ``RLMadisonInstructions.json``, also read from ``compare_path``).
    """
    path = Path(path)
    if fmt == "hf-cai":
        return from_hf_cai(_load_json(path), name=name or path.stem.replace("_", "-"), origin=str(path))
    if fmt == "anthropic":
        if path.is_dir():
            instructions = path / "CritiqueRevisionInstructions.json"
            if compare_path is None and (path / "RLMadisonInstructions.json").is_file():
                compare_path = path / "RLMadisonInstructions.json"
        else:
            instructions = path
        comparisons = _load_json(compare_path) if compare_path is not None else None
        return from_anthropic(_load_json(instructions), comparisons, name=name or "anthropic-2022", origin=str(instructions))
    raise InteropError(f"unknown import format `{fmt}` (formats: {', '.join(IMPORT_FORMATS)})")


# ---------------------------------------------------------------- printing


def render_const(file: ast.ConstitutionFile) -> str:
    """`.const` text of an imported file: the one printer, :func:`cai_dsl.lang.printer.format_ast`."""
    from cai_dsl.lang.printer import format_ast

    return format_ast(file)


#: The former minimal printer's name; `.const` text has one printer.
print_const = render_const
