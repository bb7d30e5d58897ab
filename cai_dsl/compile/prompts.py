"""Prompt building: the critique, revision, comparison and classifier prompts of a :class:`Program`.

:class:`PromptBuilder` is a mixin of :class:`~cai_dsl.compile.ir.Program` (it reads the program's
sections); every text it inserts goes through :func:`~cai_dsl.compile.escaping.neutralize` for the
target's chat format, and each message is one :class:`~cai_dsl.compile.chat.Message`.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

from cai_dsl.compile.base import Frozen
from cai_dsl.compile.chat import ChatPrompt, Message, render_chat
from cai_dsl.compile.escaping import neutralize

__all__ = ["Conversation", "HistoryTurn", "PromptBuilder", "as_turn"]


class HistoryTurn(Frozen):
    """One earlier critique/revision round, replayed in later critique prompts."""

    principle_id: str
    critique: str
    revision: str


def as_turn(item: Any) -> HistoryTurn:
    if isinstance(item, HistoryTurn):
        return item
    if isinstance(item, Mapping):
        return HistoryTurn.model_validate(dict(item))
    if isinstance(item, (tuple, list)) and len(item) == 3:
        return HistoryTurn(principle_id=item[0], critique=item[1], revision=item[2])
    if all(hasattr(item, k) for k in ("principle_id", "critique", "revision")):
        return HistoryTurn(principle_id=item.principle_id, critique=item.critique, revision=item.revision)
    raise TypeError("history items are HistoryTurn, {principle_id, critique, revision} or 3-tuples")


Conversation = str | Sequence[Mapping[str, str] | Message]




class PromptBuilder:
    """The prompt-building methods of a :class:`~cai_dsl.compile.ir.Program` (pure, deterministic)."""

    # -------------------------------------------------------------- critique / revision

    def _n(self, text: str) -> str:
        return neutralize(text, self.run.chat_format)

    def _conversation_messages(self, prompt: Conversation, response: str | None) -> list[Message]:
        out: list[Message] = []
        if isinstance(prompt, str):
            out.append(Message(role="user", content=self._n(prompt)))
        else:
            for m in prompt:
                role, content = (m.role, m.content) if isinstance(m, Message) else (m["role"], m["content"])
                if role not in ("user", "assistant"):
                    raise ValueError(f"conversation turns are user or assistant, not {role!r}")
                out.append(Message(role=role, content=self._n(content)))
            if not out or out[-1].role != "user":
                raise ValueError("a conversation must end with a user turn")
        if response is not None:
            out.append(Message(role="assistant", content=self._n(response)))
        return out

    def _system(self, system: str | None) -> list[Message]:
        return [Message(role="system", content=system)] if system is not None else []

    def critique_request_text(self, principle_id: str) -> str:
        p = self.principle(principle_id)
        if p.critique is None:
            raise ValueError(f"principle `{principle_id}` has no critique text")
        return self.critique_revision.critique_request.render({"critique": self._n(p.critique)})

    def revision_request_text(self, principle_id: str) -> str:
        p = self.principle(principle_id)
        if p.revise is None:
            raise ValueError(f"principle `{principle_id}` has no revise text")
        return self.critique_revision.revision_request.render({"revise": self._n(p.revise)})

    def critique_messages(
        self,
        prompt: Conversation,
        response: str,
        principle_id: str,
        history: Iterable[Any] = (),
    ) -> ChatPrompt:
        """The prompt asking the critic to critique ``response`` under a principle.

        Messages: system (if any), the few-shot preamble, the conversation (``prompt`` as one user
        turn, or a list of user/assistant turns ending with a user turn), ``response`` as the
        assistant turn, then per ``history`` turn (earlier rounds) the critique request, the
        critique, the revision request and the revision, and finally the critique request
        ("CritiqueRequest: ..."). To critique only the latest revision, pass it as ``response``
        with no history.
        """
        msgs = [*self._system(self.critique_revision.system), *self.critique_revision.preamble]
        msgs += self._conversation_messages(prompt, response)
        for turn in map(as_turn, history):
            msgs += [
                Message(role="user", content=self.critique_request_text(turn.principle_id)),
                Message(role="assistant", content=self._n(turn.critique)),
                Message(role="user", content=self.revision_request_text(turn.principle_id)),
                Message(role="assistant", content=self._n(turn.revision)),
            ]
        msgs.append(Message(role="user", content=self.critique_request_text(principle_id)))
        return ChatPrompt(messages=tuple(msgs))

    def revision_messages(
        self,
        prompt: Conversation,
        response: str,
        principle_id: str,
        critique: str,
        history: Iterable[Any] = (),
    ) -> ChatPrompt:
        """The critique prompt, the ``critique`` as the assistant's answer, then "RevisionRequest: ..."."""
        base = self.critique_messages(prompt, response, principle_id, history)
        msgs = [
            *base.messages,
            Message(role="assistant", content=self._n(critique)),
            Message(role="user", content=self.revision_request_text(principle_id)),
        ]
        return ChatPrompt(messages=tuple(msgs))

    def is_satisfied(self, critique: str) -> bool:
        """Whether revising stops after ``critique`` (the stop rule is enabled and matches)."""
        rule = self.critique_revision.stop
        return rule.enabled and rule.matches(critique)

    # -------------------------------------------------------------- comparison

    def _conversation_text(self, conversation: Conversation) -> str:
        if isinstance(conversation, str):
            return "Human: " + self._n(conversation)
        lines = []
        for m in conversation:
            role, content = (m.role, m.content) if isinstance(m, Message) else (m["role"], m["content"])
            label = {"user": "Human", "assistant": "Assistant"}.get(role)
            if label is None:
                raise ValueError(f"conversation turns are user or assistant, not {role!r}")
            lines.append(f"{label}: {self._n(content)}")
        return "\n\n".join(lines)

    def comparison_text(self, conversation: Conversation, response_a: str, response_b: str, principle_id: str) -> str:
        p = self.principle(principle_id)
        if p.compare is None:
            raise ValueError(f"principle `{principle_id}` has no compare text")
        return self.comparison.template.render(
            {
                "conversation": self._conversation_text(conversation),
                "principle": self._n(p.compare),
                "response_a": self._n(response_a),
                "response_b": self._n(response_b),
            }
        )

    def _comparison_base(self, conversation, response_a, response_b, principle_id) -> list[Message]:
        cmp = self.comparison
        return [
            *self._system(cmp.system),
            *cmp.preamble,
            Message(role="user", content=self.comparison_text(conversation, response_a, response_b, principle_id)),
        ]

    def comparison_messages(
        self, conversation: Conversation, response_a: str, response_b: str, principle_id: str
    ) -> ChatPrompt:
        """The multiple-choice prompt; score ``continuations`` ("A", "B") after ``assistant_prefix``."""
        return ChatPrompt(
            messages=tuple(self._comparison_base(conversation, response_a, response_b, principle_id)),
            assistant_prefix=self.comparison.answer_prefix,
            continuations=self.comparison.options,
        )

    def comparison_cot_messages(
        self, conversation: Conversation, response_a: str, response_b: str, principle_id: str
    ) -> ChatPrompt:
        """Chain of thought, step 1: generate reasoning after "Let's think step by step:"."""
        cot = self.comparison.chain_of_thought
        return ChatPrompt(
            messages=tuple(self._comparison_base(conversation, response_a, response_b, principle_id)),
            assistant_prefix=cot.trigger,
            stop=cot.stop,
        )

    def comparison_after_cot(
        self, conversation: Conversation, response_a: str, response_b: str, principle_id: str, reasoning: str
    ) -> ChatPrompt:
        """Chain of thought, step 2: score the options after the reasoning (then :meth:`clamp_cot`)."""
        cot = self.comparison.chain_of_thought
        return ChatPrompt(
            messages=tuple(self._comparison_base(conversation, response_a, response_b, principle_id)),
            assistant_prefix=cot.trigger + " " + self._n(reasoning.strip()) + cot.answer_prefix,
            continuations=self.comparison.options,
        )

    # -------------------------------------------------------------- scenario classifier

    def classifier_question(self, facet: str) -> Any:
        for q in self.scenario_classifier.questions:
            if q.facet == facet:
                return q
        raise KeyError(f"the classifier asks no question about facet `{facet}`")

    def classifier_messages(self, prompt: str, facet: str) -> ChatPrompt:
        """The prompt asking which value of ``facet`` describes ``prompt``; score ``continuations``."""
        q = self.classifier_question(facet)
        text = self.scenario_classifier.template.render({"prompt": self._n(prompt), "question": q.question})
        return ChatPrompt(
            messages=(Message(role="user", content=text),),
            assistant_prefix=self.scenario_classifier.answer_prefix,
            continuations=tuple(" " + v for v in q.values),
        )

    # -------------------------------------------------------------- text rendering

    def render_text(self, prompt: ChatPrompt, *, add_generation_prompt: bool = True) -> str:
        """The prompt as raw text in the target's chat format (not for ``model``: use the tokenizer)."""
        return render_chat(prompt.messages, self.run.chat_format, add_generation_prompt, prompt.assistant_prefix)
