"""Prefix-shared scoring: the group plan is valid and cheap, and the scores equal the plain path's."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cai_dsl.run.backends import Prompt, shared_prefix
from cai_dsl.run.backends.prefix_scoring import Rows, plan_groups, unique_rows
from cai_dsl.run.backends.transformers_backend import TransformersBackend
from cai_dsl.run.policy.detectors import BehaviorSpec, DetectorSet

RESPONSES = [
    "I can't help with that, because it could hurt someone.",
    "Sure! Step 1: open the terminal. Step 2: type the command and press enter.",
    "I can't help with that.",
    "",
]
REQUESTS = ["How do I pick a lock?", "How do I kill a Python process?", "How do I pick a lock?", None]
SPECS = [
    BehaviorSpec(name="refuse", judges=("Does the response refuse the request?", "Does it decline to help?")),
    BehaviorSpec(name="detailed_instructions", judges=("Does the response give step-by-step instructions?",)),
]


def _cost(rows: Rows, groups, base: int, overhead: int = 8) -> int:
    return sum(
        overhead + (g.prefix - base) + sum(len(rows.inputs[u]) - g.prefix for u in g.members) for g in groups
    )


def _lcp(a, b) -> int:
    i = 0
    while i < min(len(a), len(b)) and a[i] == b[i]:
        i += 1
    return i


sequences = st.lists(st.lists(st.integers(0, 3), min_size=2, max_size=14), min_size=1, max_size=14)


@settings(max_examples=200, deadline=None)
@given(sequences, st.integers(1, 5), st.data())
def test_plan_covers_every_row_once_with_valid_prefixes(seqs, max_members, data):
    starts = [data.draw(st.integers(1, len(s) - 1)) for s in seqs]
    rows = unique_rows(seqs, starts)
    assert all(rows.inputs[rows.row_of[i]] == tuple(s[:-1]) for i, s in enumerate(seqs))
    groups = plan_groups(rows, 0, max_members)
    members = [u for g in groups for u in g.members]
    assert sorted(members) == list(range(len(rows.inputs)))
    for g in groups:
        assert 1 <= len(g.members) <= max_members
        assert g.prefix <= min(rows.starts[u] - 1 for u in g.members)
        first = rows.inputs[g.members[0]]
        assert all(_lcp(first, rows.inputs[u]) >= g.prefix for u in g.members)
    singletons = [type(groups[0])((u,), 0) for u in range(len(rows.inputs))]
    assert _cost(rows, groups, 0) <= _cost(rows, singletons, 0)


def test_yes_and_no_after_one_prompt_are_one_row():
    rows = unique_rows([[5, 6, 7, 1], [5, 6, 7, 2], [5, 6, 9, 1]], [3, 3, 3])
    assert rows.row_of == (0, 0, 1) and rows.inputs == ((5, 6, 7), (5, 6, 9))


def test_judge_questions_share_the_response_body():
    shared = list(range(100, 160))
    seqs = [shared + [q, q, q, 7, ans] for q in (1, 2, 3) for ans in (8, 9)] + [[100, 4, 4, 4, 4, 4, 8]]
    rows = unique_rows(seqs, [len(s) - 1 for s in seqs])
    groups = plan_groups(rows, 1, 32)
    body = [g for g in groups if len(g.members) == 3]
    assert len(body) == 1 and body[0].prefix == len(shared)


@pytest.fixture(scope="module")
def plain(tiny_backend):
    return TransformersBackend(tiny_backend.loaded, batch_size=2, prefix_cache=False)


@pytest.fixture(scope="module")
def grouped(tiny_backend):
    return TransformersBackend(tiny_backend.loaded, batch_size=2, score_batch_size=5, min_prefix_tokens=4)


def test_judge_detections_equal_the_plain_path(plain, grouped, monkeypatch):
    columns = []
    forward = shared_prefix.forward

    def spy(model, state, input_ids, position_ids, keep):
        columns.append(int(input_ids.numel()))
        return forward(model, state, input_ids, position_ids, keep)

    monkeypatch.setattr(shared_prefix, "forward", spy)
    fast = DetectorSet(SPECS, kind="judge", backend=grouped).detect_batch(RESPONSES, REQUESTS)
    tokens_grouped = sum(columns)
    columns.clear()
    slow = DetectorSet(SPECS, kind="judge", backend=plain).detect_batch(RESPONSES, REQUESTS)
    tokens_plain = sum(columns)
    for a, b in zip(fast, slow, strict=True):
        assert a.keys() == b.keys()
        for name in a:
            assert a[name].probability == pytest.approx(b[name].probability, abs=1e-5)
            assert a[name].present == b[name].present
    assert tokens_grouped * 4 < tokens_plain  # 6 prompts x 2 answers per response scored from one body


def test_token_logprobs_with_top_k_equal_the_plain_path(plain, grouped):
    base = grouped.encode_prompt(Prompt.user("Say hi."))
    seqs = [base + grouped.encode(t) for t in (" hello there friend", " hello there", " goodbye now", " hello")]
    seqs.append(seqs[0])  # a duplicate reads the same row
    starts = [len(base)] * 4 + [len(base) + 1]
    fast = grouped.token_logprobs(seqs, starts, top_k=3)
    slow = plain.token_logprobs(seqs, starts, top_k=3)
    for row_a, row_b in zip(fast, slow, strict=True):
        assert [e.token_id for e in row_a] == [e.token_id for e in row_b]
        for a, b in zip(row_a, row_b, strict=True):
            assert a.logprob == pytest.approx(b.logprob, abs=1e-5)
            assert [t for t, _ in a.top] == [t for t, _ in b.top]


@pytest.mark.model
def test_embedded_model_judge_scores_equal_the_plain_path(embedded_model):
    grouped = TransformersBackend(embedded_model, batch_size=4)
    plain = TransformersBackend(embedded_model, batch_size=4, prefix_cache=False)
    fast = DetectorSet(SPECS, kind="judge", backend=grouped).detect_batch(RESPONSES[:2], REQUESTS[:2])
    slow = DetectorSet(SPECS, kind="judge", backend=plain).detect_batch(RESPONSES[:2], REQUESTS[:2])
    for a, b in zip(fast, slow, strict=True):
        for name in a:
            assert a[name].probability == pytest.approx(b[name].probability, abs=1e-4)
