"""Export compiled constitutions to other tools' formats, and import theirs as `.const` files.

Export (from a compiled :class:`~cai_dsl.compile.ir.Program`, so only error-free deployments export):

* ``hf-cai`` — Hugging Face's open CAI recipe (llm-swarm ``examples/constitutional-ai``):
  ``{"constitutions": [{"critic", "revision"}, ...], "system_chat": [[{"role", "content"}, ...], ...]}``.
  ``constitutions``: the principles with both critique and revise text, in declaration order;
  ``system_chat``: one chat per complete ``example`` block: its ``turn`` lines, then prompt,
  response, critic request, critique, revision request, revision (the example's ``request``
  texts, else its principle's); the shared (top-level) examples first, in order, then each
  principle's in declaration order.
* ``langchain`` — a JSON list of LangChain ``ConstitutionalPrinciple`` fields:
  ``[{"name", "critique_request", "revision_request"}, ...]``.
* ``jsonl`` — the comparison principles, one ``{"id", "compare", "weight", "tags"}`` per line.
* ``anthropic`` — Anthropic's published files, ``{file name: data}`` (:mod:`cai_dsl.compile.anthropic`).

Import (to a :class:`~cai_dsl.lang.ast.ConstitutionFile`, printed with :func:`cai_dsl.lang.printer.format_ast`
when that exists, else with the minimal printer here):

* ``hf-cai`` — principles ``<prefix>.pNN`` with critique/revise; each ``system_chat`` conversation
  (user/assistant turns, six or more) becomes an example, the turns before the last six its
  ``turn`` lines: an example of the principle whose critic text it uses when the chats come in
  declaration order, else shared examples in their order, with ``request`` lines; either way the
  export gives the same JSON back (conversations matching no principle are reported and skipped).
* ``anthropic`` — ``CritiqueRevisionInstructions.json`` (16 pairs, ``harmfulN`` ->
  ``anthropic.harmfulN``; the ``CritiqueRequest:``/``Critique:`` and ``RevisionRequest:``/
  ``Revision:`` scaffolding is stripped) and optionally ``RLMadisonInstructions.json`` (comparison
  principles ``anthropic.compareNN``, the trailing ``Options:`` stripped); from a directory, also
  its few-shot files, as shared examples in order (:data:`ANTHROPIC_SHOTS`).

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
from cai_dsl.core.records import loads_checked

from cai_dsl.lang import ast
from cai_dsl.compile.anthropic import compare_shot, critique_shot, export_anthropic, precog_shot
from cai_dsl.compile.ir import CritiqueExampleIR, Program

__all__ = [
    "EXPORT_FORMATS",
    "IMPORT_FORMATS",
    "ImportResult",
    "InteropError",
    "export_files",
    "export_program",
    "export_text",
    "from_anthropic",
    "from_hf_cai",
    "import_file",
    "print_const",
    "render_const",
    "write_atomic",
]

EXPORT_FORMATS = ("hf-cai", "langchain", "jsonl", "anthropic")
#: Anthropic's few-shot files, read from an imported directory: (file name, parser, what it holds)
ANTHROPIC_SHOTS = (
    ("CritiqueRevisionFewShotPrompts.json", critique_shot, "critique/revision dialogue"),
    ("RLMadisonFewShotPrompts.json", compare_shot, "`{prompt, corrects, incorrects}` comparison"),
    ("RLMadisonPrecogFewShotPrompts.json", precog_shot, "chain-of-thought comparison"),
)
IMPORT_FORMATS = ("hf-cai", "anthropic")


class InteropError(CaiError):
    """An input file is not in the expected format; the message says what is wrong."""


# ---------------------------------------------------------------- export


def _hf_chat(ex: CritiqueExampleIR, critique: str | None, revise: str | None) -> list[dict[str, str]] | None:
    """An example as one recipe chat: its dialogue turns, then the six critique/revision turns."""
    critique = ex.critique_request if ex.critique_request is not None else critique
    revise = ex.revision_request if ex.revision_request is not None else revise
    if not ex.complete or critique is None or revise is None:
        return None
    return [
        *({"role": t.role, "content": t.content} for t in ex.turns),
        {"role": "user", "content": ex.prompt},
        {"role": "assistant", "content": ex.response},
        {"role": "user", "content": critique},
        {"role": "assistant", "content": ex.critique},
        {"role": "user", "content": revise},
        {"role": "assistant", "content": ex.revision},
    ]


def _hf_cai(program: Program) -> dict[str, Any]:
    """The shared examples first, in order (with the pool's first principle's requests unless they
    carry their own), then each principle's examples in declaration order."""
    pool = program.critique_revision.pool
    first = program.principle(pool[0]) if pool else None
    chats = [_hf_chat(ex, first and first.critique, first and first.revise) for ex in program.examples]
    constitutions = []
    for p in program.principles:
        if p.critique is None or p.revise is None:
            continue
        constitutions.append({"critic": p.critique, "revision": p.revise})
        chats += [_hf_chat(ex, p.critique, p.revise) for ex in p.examples]
    return {"constitutions": constitutions, "system_chat": [c for c in chats if c is not None]}


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
    if fmt == "anthropic":  # {file name: its data}
        return export_anthropic(program)
    raise InteropError(f"unknown export format `{fmt}` (formats: {', '.join(EXPORT_FORMATS)})")


def export_files(program: Program, fmt: str) -> dict[str, str]:
    """The export as files to write into a directory: ``anthropic``'s published files, each as
    indented JSON; any other format as one file ``export.json`` (``export.jsonl``)."""
    if fmt == "anthropic":
        return {name: json.dumps(data, ensure_ascii=False, indent=2) + "\n" for name, data in export_anthropic(program).items()}
    return {"export.jsonl" if fmt == "jsonl" else "export.json": export_text(program, fmt)}


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


def _file(name: str, source: str | None, principles: list[Any], path: str) -> ast.ConstitutionFile:
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
    return loads_checked(text, str(path), InteropError, position=True)


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
    if not pairs:
        raise InteropError(f"{origin}: the `constitutions` list is empty: nothing to import")
    width = max(2, len(str(len(pairs))))
    ids = [f"{prefix}.p{i + 1:0{width}d}" for i in range(len(pairs))]
    by_critic: dict[str, int] = {}
    for i, (critic, _) in enumerate(pairs):
        by_critic.setdefault(critic.strip(), i)
    matched: list[tuple[int, list[dict]]] = []
    for k, chat in enumerate(_chats(data.get("system_chat", []), origin)):
        ok = (
            len(chat) >= 6
            and len(chat) % 2 == 0
            and all(isinstance(m, dict) and isinstance(m.get("content"), str) for m in chat)
            and [m.get("role") for m in chat] == ["user", "assistant"] * (len(chat) // 2)
        )
        if not ok:
            warnings.append(f"system_chat[{k}]: not a user/assistant chat of six turns or more (even); skipped")
            continue
        i = by_critic.get(chat[-4]["content"].strip())
        if i is None:
            warnings.append(f"system_chat[{k}]: its critic request matches no constitution entry; skipped")
            continue
        matched.append((i, chat))
    # in declaration order, the chats stay with their principles (the export lists them so);
    # otherwise they are shared examples, in order, naming their requests
    owned = all(a[0] <= b[0] for a, b in zip(matched, matched[1:]))
    examples: dict[int, list[ast.Example]] = {}
    shared = []
    for i, chat in matched:
        if owned:
            examples.setdefault(i, []).append(_hf_example(chat, pairs[i]))
        else:
            shared.append(_hf_example(chat, None))
    principles = [
        _principle(ids[i], critique=c, revise=r, examples=examples.get(i, ())) for i, (c, r) in enumerate(pairs)
    ]
    file = _file(name, "imported from a Hugging Face CAI recipe", [*shared, *principles], f"{name}.const")
    return ImportResult(file, render_const(file), warnings)


def _hf_example(chat: list[dict], pair: tuple[str, str] | None) -> ast.Example:
    """A recipe chat as an example: the turns before the last six are its dialogue; a request
    differing from its principle's text (``pair``; None for a shared example) is kept on it."""
    *dialogue, prompt, response, critic, critique, revise, revision = (m["content"] for m in chat)
    requests = []
    for what, text, default in (("critique", critic, pair and pair[0]), ("revision", revise, pair and pair[1])):
        if text != default:
            requests.append(ast.Request(what=ast.Ident(name=what), text=_t(text)))
    return ast.Example(
        turns=tuple(ast.Turn(role=ast.Ident(name=m["role"]), text=_t(m["content"])) for m in chat[: len(dialogue)]),
        requests=tuple(requests),
        prompt=_t(prompt),
        response=_t(response),
        critique=_t(critique),
        revision=_t(revision),
    )


_CRITIQUE_RE = re.compile(r"^\s*(?:CritiqueRequest:\s*)?(.*?)\s*(?:Critique:\s*)?$", re.S)
_REVISION_RE = re.compile(r"^\s*(?:RevisionRequest:\s*)?(.*?)\s*(?:Revision:\s*)?$", re.S)


def _strip(regex: re.Pattern[str], text: str) -> str:
    m = regex.match(text)
    return m.group(1).strip() if m else text.strip()


def from_anthropic(
    instructions: Any,
    comparisons: Any = None,
    *,
    shots: dict[str, Any] | None = None,
    name: str = "anthropic-2022",
    origin: str = "<anthropic>",
) -> ImportResult:
    """Anthropic's published JSON (CritiqueRevisionInstructions + RLMadisonInstructions) -> a constitution;
    ``shots`` maps few-shot file names (:data:`ANTHROPIC_SHOTS`) to their data: shared examples, in order."""
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
    if not principles:
        raise InteropError(f"{origin}: no critique/revision instructions and no comparisons: nothing to import")
    warnings: list[str] = []
    examples: list[Any] = []
    for file_name, parse, what in ANTHROPIC_SHOTS:
        data = (shots or {}).get(file_name)
        if data is None:
            continue
        if not isinstance(data, list):
            raise InteropError(f"{origin}: {file_name} must be a list")
        for k, entry in enumerate(data):
            example = parse(entry)
            if example is None:
                warnings.append(f"{file_name}[{k}]: not a {what} in the published layout; skipped")
            else:
                examples.append(example)
    source = "Bai et al. 2022, Constitutional AI: Harmlessness from AI Feedback (published prompts)"
    file = _file(name, source, [*examples, *principles], f"{name}.const")
    return ImportResult(file, render_const(file), warnings)


def import_file(
    path: str | os.PathLike[str],
    fmt: str,
    *,
    compare_path: str | os.PathLike[str] | None = None,
    name: str | None = None,
) -> ImportResult:
    """Read ``path`` in format ``fmt`` (``hf-cai`` or ``anthropic``) and build a constitution.

    For ``anthropic``, ``path`` is ``CritiqueRevisionInstructions.json`` or a directory holding it
    (and, optionally, ``RLMadisonInstructions.json``, also read from ``compare_path``, and the
    few-shot files of :data:`ANTHROPIC_SHOTS`).
    """
    path = Path(path)
    if fmt == "hf-cai":
        return from_hf_cai(_load_json(path), name=name or path.stem.replace("_", "-"), origin=str(path))
    if fmt == "anthropic":
        shots: dict[str, Any] = {}
        if path.is_dir():
            instructions = path / "CritiqueRevisionInstructions.json"
            if compare_path is None and (path / "RLMadisonInstructions.json").is_file():
                compare_path = path / "RLMadisonInstructions.json"
            shots = {f: _load_json(path / f) for f, _, _ in ANTHROPIC_SHOTS if (path / f).is_file()}
        else:
            instructions = path
        comparisons = _load_json(compare_path) if compare_path is not None else None
        return from_anthropic(
            _load_json(instructions), comparisons, shots=shots, name=name or "anthropic-2022", origin=str(instructions)
        )
    raise InteropError(f"unknown import format `{fmt}` (formats: {', '.join(IMPORT_FORMATS)})")


# ---------------------------------------------------------------- printing


def render_const(file: ast.ConstitutionFile) -> str:
    """`.const` text of an imported file: the one printer, :func:`cai_dsl.lang.printer.format_ast`."""
    from cai_dsl.lang.printer import format_ast

    return format_ast(file)


#: The former minimal printer's name; `.const` text has one printer.
print_const = render_const
