"""Examples -> IR entries, and the few-shot preambles of the critique/revision and comparison stages.

A preamble takes the shared (top-level) examples first, in source order, then the principles' own
examples round-robin over the pool (the first usable example of each principle in pool order, then
the second ones, ...), up to ``limit`` examples in all. An example's ``turn`` lines come first, in
order: as chat messages before the prompt (critique), or as ``Human:``/``Assistant:`` lines of the
conversation (comparison). Its ``request`` lines replace the principle's texts; a shared example
without them uses the texts of the pool's first principle. A ``rationale`` is rendered as the
chain-of-thought answer (``Let's think step by step: ... Therefore, the answer is: (X)``).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from cai_dsl.compile.chat import ChatFormat
from cai_dsl.compile.escaping import neutralize
from cai_dsl.compile.ir import ChainOfThought, StopRule
from cai_dsl.compile.templates import COMPARISON_TEMPLATE, REVISION_TEMPLATE, critique_template
from cai_dsl.lang import ast

__all__ = ["FewShot", "compare_entry", "critique_entry", "entry_spans"]

_ROLE_LABEL = {"user": "Human", "assistant": "Assistant"}


def _text(t: ast.Text | None) -> str | None:
    return t.value if t is not None else None


def _turns(ex: ast.Example | ast.CompareExample) -> list[dict]:
    return [{"role": t.role.name, "content": t.text.value} for t in ex.turns]


def critique_entry(ex: ast.Example) -> dict:
    """The IR entry of a critique example (the keys added after IR v1 only when used)."""
    entry: dict[str, Any] = {}
    if ex.turns:
        entry["turns"] = _turns(ex)
    entry.update(prompt=_text(ex.prompt), response=_text(ex.response))
    if ex.request("critique") is not None:
        entry["critique_request"] = ex.request("critique").value
    entry["critique"] = _text(ex.critique)
    if ex.request("revision") is not None:
        entry["revision_request"] = ex.request("revision").value
    entry["revision"] = _text(ex.revision)
    return entry


def compare_entry(ex: ast.CompareExample) -> dict:
    """The IR entry of a comparison example (the keys added after IR v1 only when used)."""
    entry: dict[str, Any] = {}
    if ex.turns:
        entry["turns"] = _turns(ex)
    entry["prompt"] = _text(ex.prompt)
    if ex.request("compare") is not None:
        entry["compare_request"] = ex.request("compare").value
    better = ex.better.name.lower() if ex.better is not None else None
    entry.update(a=_text(ex.a), b=_text(ex.b), better=better if better in ("a", "b") else None)
    if ex.rationale is not None:
        entry["rationale"] = ex.rationale.value
    return entry


def entry_spans(ex: ast.Example | ast.CompareExample) -> list[tuple[str, ast.Span | None]]:
    """(pointer suffix inside the entry, span) of each string the entry holds."""
    out: list[tuple[str, ast.Span | None]] = [(f"/turns/{k}/content", t.text.span) for k, t in enumerate(ex.turns)]
    if isinstance(ex, ast.Example):
        fields = ("prompt", "response", "critique", "revision")
        requests = (("critique", "critique_request"), ("revision", "revision_request"))
    else:
        fields = ("prompt", "a", "b", "rationale")
        requests = (("compare", "compare_request"),)
    out += [(f"/{f}", getattr(ex, f).span) for f in fields if getattr(ex, f) is not None]
    out += [(f"/{key}", ex.request(what).span) for what, key in requests if ex.request(what) is not None]
    return out


class FewShot:
    """Builds the two preambles; ``map(pointer, *spans)`` records their source map."""

    def __init__(self, shared: tuple, fmt: ChatFormat, map: Callable[..., None]):
        self.shared = shared
        self.fmt = fmt
        self.map = map

    def _n(self, s: str) -> str:
        return neutralize(s, self.fmt)

    def _round_robin(self, pool: list[str], by_id: Mapping[str, ast.Principle], kind: type, limit: int, usable):
        """(principle id, example index among its examples of ``kind``, example): see the module docstring."""
        picked: list[tuple[str | None, int, Any]] = []
        if limit <= 0:
            return picked
        shared = [ex for ex in self.shared if isinstance(ex, kind)]
        picked += [(None, j, ex) for j, ex in enumerate(shared) if usable(None, ex)][:limit]
        per: list[tuple[str, list[tuple[int, Any]]]] = []
        for pid in pool:
            mine = [ex for ex in by_id[pid].examples if isinstance(ex, kind)]
            good = [(j, ex) for j, ex in enumerate(mine) if usable(by_id[pid], ex)]
            if good:
                per.append((pid, good))
            if len(per) >= limit:
                break
        depth = 0
        while len(picked) < limit and any(len(g) > depth for _, g in per):
            for pid, good in per:
                if len(good) > depth:
                    picked.append((pid, good[depth][0], good[depth][1]))
                    if len(picked) >= limit:
                        break
            depth += 1
        return picked

    @staticmethod
    def _request(ex, what: str, owner: ast.Principle | None, default: ast.Principle | None) -> ast.Text | None:
        """The example's own request text, else its principle's (a shared one: the pool's first)."""
        own = ex.request(what)
        if own is not None:
            return own
        p = owner if owner is not None else default
        field = {"critique": "critique", "revision": "revise", "compare": "compare"}[what]
        return getattr(p, field) if p is not None else None

    def _turn_messages(self, ex, pointer: str, messages: list[dict]) -> None:
        for t in ex.turns:
            self.map(f"{pointer}/{len(messages)}/content", t.text.span)
            messages.append({"role": t.role.name, "content": self._n(t.text.value)})

    def critique(self, pool: list[str], by_id: Mapping[str, ast.Principle], limit: int, stop: StopRule):
        n = self._n
        crit_t = critique_template(stop)
        first = by_id[pool[0]] if pool else None
        req = lambda ex, what, p: self._request(ex, what, p, first)  # noqa: E731
        usable = lambda p, ex: None not in (  # noqa: E731
            ex.prompt, ex.response, ex.critique, ex.revision, req(ex, "critique", p), req(ex, "revision", p)
        )
        messages: list[dict] = []
        refs: list[dict] = []
        pointer = "/critique_revision/preamble"
        for pid, j, ex in self._round_robin(pool, by_id, ast.Example, limit, usable):
            p = by_id[pid] if pid is not None else None
            critique, revise = req(ex, "critique", p), req(ex, "revision", p)
            self._turn_messages(ex, pointer, messages)
            turns = [
                ("user", n(ex.prompt.value), [ex.prompt.span]),
                ("assistant", n(ex.response.value), [ex.response.span]),
                ("user", crit_t.render({"critique": n(critique.value)}), [critique.span]),
                ("assistant", n(ex.critique.value), [ex.critique.span]),
                ("user", REVISION_TEMPLATE.render({"revise": n(revise.value)}), [revise.span]),
                ("assistant", n(ex.revision.value), [ex.revision.span]),
            ]
            for role, content, spans in turns:
                self.map(f"{pointer}/{len(messages)}/content", *spans)
                messages.append({"role": role, "content": content})
            refs.append({"principle": pid, "example": j})
        return messages, refs

    def compare(self, pool: list[str], by_id: Mapping[str, ast.Principle], limit: int, cot: ChainOfThought):
        n = self._n
        first = by_id[pool[0]] if pool else None
        usable = lambda p, ex: (  # noqa: E731
            None not in (ex.prompt, ex.a, ex.b, ex.better, self._request(ex, "compare", p, first))
            and ex.better.name.lower() in ("a", "b")
        )
        messages: list[dict] = []
        refs: list[dict] = []
        for pid, j, ex in self._round_robin(pool, by_id, ast.CompareExample, limit, usable):
            compare = self._request(ex, "compare", by_id[pid] if pid is not None else None, first)
            lines = [f"{_ROLE_LABEL.get(t.role.name, t.role.name)}: {n(t.text.value)}" for t in ex.turns]
            content = COMPARISON_TEMPLATE.render(
                {
                    "conversation": "\n\n".join([*lines, "Human: " + n(ex.prompt.value)]),
                    "principle": n(compare.value),
                    "response_a": n(ex.a.value),
                    "response_b": n(ex.b.value),
                }
            )
            spans = [t.text.span for t in ex.turns] + [ex.prompt.span, compare.span, ex.a.span, ex.b.span]
            self.map(f"/comparison/preamble/{len(messages)}/content", *spans)
            messages.append({"role": "user", "content": content})
            answer = "The answer is: (" + ex.better.name.upper() + ")"
            if ex.rationale is not None:
                answer = f"{cot.trigger} {n(ex.rationale.value)}{cot.answer_prefix}{ex.better.name.upper()})"
            self.map(f"/comparison/preamble/{len(messages)}/content", ex.better.span, ex.rationale and ex.rationale.span)
            messages.append({"role": "assistant", "content": answer})
            refs.append({"principle": pid, "example": j})
        return messages, refs
