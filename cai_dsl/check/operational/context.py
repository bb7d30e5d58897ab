"""What the lints need from a constitution's vocabulary, computed once per run, and the
prompt texts of a principle."""

from __future__ import annotations

from cai_dsl.check.operational.lexicon import HARM_TAGS, HELP_TAGS, HELPFUL_BEHAVIOR, HELPFULNESS_CUES, REFUSAL_BEHAVIOR, tokenize
from cai_dsl.lang import ast
from cai_dsl.lang.resolver import Constitution

#: The prompt forms of a principle, in the order the lints visit them.
PROMPT_FIELDS: tuple[str, ...] = ("critique", "revise", "compare")

#: A principle's prompt texts: (field name, text) pairs.
Texts = list[tuple[str, ast.Text]]


class LintContext:
    """What the lints need from the constitution's vocabulary, computed once."""

    def __init__(self, constitution: Constitution):
        self.constitution = constitution
        # a behavior is mentioned by name, with or without underscores ("partial answer")
        self.behavior_phrases = tuple(
            sorted({" " + " ".join(tokenize(name.replace("_", " "))) + " " for name in constitution.behaviors})
        )
        # union-find of behaviors over exclusive sets: one cluster per connected set
        self._parent: dict[str, str] = {}
        for ex in constitution.exclusives:
            members = [m.name for m in ex.members]
            for other in members[1:]:
                ra, rb = self.cluster(members[0]), self.cluster(other)
                if ra != rb:
                    self._parent[rb] = ra
        refusal: set[str] = set()
        helpful: set[str] = set()
        for name, behavior in constitution.behaviors.items():
            label = name + " " + (behavior.description.value if behavior.description else "")
            if REFUSAL_BEHAVIOR.search(label):
                refusal.add(name)
            elif HELPFUL_BEHAVIOR.search(label):
                helpful.add(name)
        # the alternatives to refusing: the other members of an exclusive set with a refusal
        for ex in constitution.exclusives:
            members = {m.name for m in ex.members}
            if members & refusal:
                helpful |= members - refusal
        self.refusal_behaviors = frozenset(refusal)
        self.helpful_behaviors = frozenset(helpful)

    def cluster(self, behavior: str) -> str:
        parent = self._parent
        while parent.get(behavior, behavior) != behavior:
            behavior = parent[behavior]
        return behavior

    def is_harm_minimizing(self, p: ast.Principle) -> bool:
        """Tagged as safety, id ``harm...``, requires a refusal, or forbids something.

        Forbidding a refusal (``forbid refuse``) is the opposite of minimizing harm, and
        a principle tagged only as helpfulness is not counted for what it forbids
        (``forbid lecture`` in a helpfulness principle guards against over-refusal).
        """
        tags = {t.lower() for t in p.tag_names}
        if tags & HARM_TAGS or p.id.name.lower().startswith("harm"):
            return True
        if set(p.effect_behaviors("require")) & self.refusal_behaviors:
            return True
        if tags & HELP_TAGS:
            return False
        return any(b not in self.refusal_behaviors for b in p.effect_behaviors("forbid"))

    def is_counterweight(self, p: ast.Principle, harm_minimizing: bool) -> bool:
        """Tagged as helpfulness; or, not minimizing harm, asks for a way of helping."""
        tags = {t.lower() for t in p.tag_names}
        if tags & HELP_TAGS:
            return True
        if harm_minimizing:
            return False
        positive = set(p.effect_behaviors("require")) | set(p.effect_behaviors("prefer"))
        if positive & self.helpful_behaviors:
            return True
        return p.compare is not None and HELPFULNESS_CUES.search(p.compare.value) is not None


def prompt_texts(p: ast.Principle) -> list[tuple[str, ast.Text]]:
    return [(name, getattr(p, name)) for name in PROMPT_FIELDS if getattr(p, name) is not None]
