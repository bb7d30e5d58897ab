"""Quality checks: each failure reason on its own, and no crash on arbitrary text."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cai_dsl.run.policy.quality import DEGENERATE, QualityConfig, QualityReport, check_quality, content_words

GOOD = "To stop a Python process, find its id with `ps` and send it a signal with `kill PID`."
KILL = "How do I kill a Python process that hangs?"


@pytest.mark.parametrize(
    ("response", "kwargs", "failures"),
    [
        (GOOD, {"prompt": KILL}, ()),
        (GOOD, {"prompt": KILL, "finish_reason": "length"}, ()),  # ended a sentence at the limit
        ("", {}, ("empty",)),
        ("   \n ", {}, ("empty",)),
        ("Sure.", {}, ("too_short",)),
        ("To stop a Python process, find its id and then", {"finish_reason": "length"}, ("unfinished",)),
        ("To stop a Python process, find its id and then", {"finish_reason": "stop"}, ()),
        ("I'm a lazy lazy lazy lazy assistant today.", {}, ("repeated_run",)),
        ("I'm afraid, I'm afraid, I'm afraid that I cannot.", {}, ("repeated_run",)),
        ("It is very very very good.", {}, ()),  # three in a row is still prose
        ("\n".join(["Thank you for your question."] * 3 + ["Bye."]), {}, ("repeated_ngrams", "repeated_lines")),
        ("Thank you for your question.\nThank you for your question.\nBye now, friend.", {}, ()),  # twice is fine
        ("the cat sat on the mat and " * 6 + "that is all.", {}, ("repeated_ngrams", "low_diversity")),
        ("As an AI language model, I think the kill command stops a Python process.", {"prompt": KILL}, ("meta_commentary",)),
        ("Here is the revised response: use kill to stop the Python process.", {"prompt": KILL}, ("meta_commentary",)),
        ("Revision: use kill to stop the Python process.", {"prompt": KILL}, ("meta_commentary",)),
        ("CritiqueRequest: identify harms. Use kill on the Python process.", {"prompt": KILL}, ("meta_commentary",)),
        ("The assistant's response should use kill on the Python process.", {"prompt": KILL}, ("meta_commentary",)),
        # a refusal whose only reason is the assistant itself (what the SL gate must not train on)
        ("I can't help with that, because I'm a chatbot.", {"prompt": KILL, "refusal": True}, ("meta_commentary",)),
        ("I can't help with that, because I'm a no-nonsense AI.", {"prompt": KILL, "refusal": True}, ("meta_commentary",)),
        ("I can't help with that, because I'm not a machine designed to kill.", {"refusal": True}, ("meta_commentary",)),
        ("I can't help with that, because it could hurt someone.", {"prompt": KILL, "refusal": True}, ()),
        ("I can't help with that, because I'm not a lawyer.", {"refusal": True}, ("meta_commentary",)),
        ("I can't help with that, because it's illegal to open someone else's mail.", {"refusal": True}, ()),
        ("The pump failed because I am a careless machine operator.", {}, ()),
        ("I'm here to assist with any project. You can ask me anything at all.", {"prompt": KILL}, ("off_topic",)),
        ("I can't help with that request, sorry.", {"prompt": KILL, "refusal": True}, ()),  # refusals skip off-topic
        ("I'm here to assist with any project. You can ask me anything.", {"prompt": "Hi there"}, ()),  # nothing to match
    ],
)
def test_quality_table(response, kwargs, failures):
    report = check_quality(response, **kwargs)
    assert report.failures == failures
    assert report.ok is (not failures)
    assert report.degenerate is any(f in DEGENERATE for f in failures)


def test_config_thresholds_apply():
    assert check_quality("one two", config=QualityConfig(min_words=2)).ok
    assert check_quality("Sure.", config=QualityConfig(min_words=1)).ok


def test_content_words_are_stemmed_without_stopwords():
    assert content_words("How do I kill the Python processes?") == {"kill", "python", "proces"}
    assert content_words("killing a process") == {"kill", "proces"}


@settings(max_examples=300, deadline=None)
@given(
    st.text(max_size=400),
    st.one_of(st.none(), st.text(max_size=100)),
    st.sampled_from([None, "stop", "length"]),
    st.booleans(),
)
def test_quality_never_crashes(response, prompt, finish_reason, refusal):
    report = check_quality(response, prompt, finish_reason=finish_reason, refusal=refusal)
    assert isinstance(report, QualityReport)
    assert report.ok is (not report.failures)
    assert len(set(report.failures)) == len(report.failures)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.sampled_from(["lazy", "dog", "I'm", "afraid"]), min_size=1, max_size=3), st.integers(4, 30))
def test_any_phrase_looped_is_degenerate(phrase, times):
    assert check_quality(" ".join(phrase * times) + ".").degenerate
