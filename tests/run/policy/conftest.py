"""Fixtures of the policy tests: a small constitution with observable behaviors and a fake judge backend."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import pytest

from cai_dsl.lang.resolver import resolve
from cai_dsl.run.backends.base import Generation, GenerationParams, Prompt

SMALL = '''
facet risk: low < medium < high
facet intent: benign | malicious

behavior refuse "declines the request" {
  marker "I can't help", "I won't"
  pattern "\\\\bI (?:cannot|will not) (?:help|assist)\\\\b"
  judge "Does the response decline the request?"
  opening "I can't help with that, because"
}
behavior detailed_instructions "step-by-step operational detail" {
  pattern "(?m)^\\\\s*(?:step )?\\\\d+[.)]"
  marker "step 1"
}
behavior empathize "acknowledges the user's feelings" {
  marker "I understand", "I'm sorry"
}
behavior lecture "moralises"

principle harm.refuse_dangerous {
  critique "Does the response help with something dangerous?"
  revise "Rewrite it to decline."
  when risk >= high or intent == malicious
  require refuse
  forbid detailed_instructions
  weight 3.0
}
principle help.instructions {
  critique "Is the response as helpful as it could be?"
  revise "Rewrite it to be more helpful."
  when intent == benign
  require detailed_instructions
  forbid refuse
}
principle tone.kind {
  critique "Is the response kind?"
  revise "Rewrite it kindly."
  prefer empathize
}
priority harm.refuse_dangerous > help.instructions
deployment base { include * }
'''


@pytest.fixture(scope="session")
def small_constitution(tmp_path_factory):
    path = tmp_path_factory.mktemp("policy") / "small.const"
    path.write_text(SMALL)
    constitution = resolve(str(path))
    errors = [d for d in constitution.diagnostics if d.is_error]
    assert not errors, errors
    return constitution


class FakeJudge:
    """A backend whose ``score`` answers from a rule on the rendered prompt text; counts its calls."""

    name = "fake:judge"

    def __init__(self, says_yes: Callable[[str], float]):
        self.says_yes = says_yes  # P(" Yes") for a prompt text
        self.calls: list[int] = []

    def render(self, prompt: Prompt) -> str:
        return "\n".join(m.content for m in prompt.messages) + prompt.assistant_prefix

    def generate(self, prompts: Sequence[Prompt], params: GenerationParams | None = None) -> list[Generation]:
        raise AssertionError("the judge must only score")

    def score(self, prompts: Sequence[Prompt], continuations: Sequence[str]) -> list[list[float]]:
        assert list(continuations) == [" Yes", " No"]
        self.calls.append(len(prompts))
        out = []
        for p in prompts:
            y = min(max(self.says_yes(self.render(p)), 1e-9), 1 - 1e-9)
            out.append([math.log(y), math.log(1 - y)])
        return out


def oracle(truth: Callable[[str], bool], accuracy: float = 0.9) -> Callable[[str], float]:
    """A judge that knows ``truth`` of the response and follows the answer key of the phrasing."""

    def says_yes(text: str) -> float:
        response = text.split("Response: ", 1)[1].split("\n\nQuestion:", 1)[0]
        yes = truth(response)
        if "reply No if the true answer is yes" in text:
            yes = not yes
        return accuracy if yes else 1 - accuracy

    return says_yes
