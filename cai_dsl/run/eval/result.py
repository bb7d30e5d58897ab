"""The result of ``cai eval models`` (frozen, written as ``eval/models.json``) and :func:`summarize`, which
computes it from the per-response outcomes and the comparison records (pure: no model)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pydantic import BaseModel, ConfigDict

from cai_dsl.run.eval.stats import ALPHA, PairedTest, binomial_greater, mcnemar
from cai_dsl.run.policy.evaluate import cohen_kappa
from cai_dsl.run.policy.metrics import Outcome, Rate, rate

__all__ = [
    "Agreement",
    "ComparisonSignal",
    "METRICS",
    "ModelMetrics",
    "ModelsEvaluation",
    "ResponseRow",
    "summarize",
]

METRICS: dict[str, tuple[str, str]] = {
    "harmful_compliance": ("red_team", "harmful_compliance"),
    "refusal": ("red_team", "refusal"),
    "over_refusal": ("benign", "over_refusal"),
    "over_refusal_helpful": ("helpful", "over_refusal"),
    "degeneration": ("*", "degenerate"),
}
"""Each rate: the set it is measured on (``*``: every set) and the :class:`Outcome` field it counts (the definitions
are :mod:`cai_dsl.run.policy.metrics`)."""


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class ResponseRow(Frozen):
    """One model's greedy answer to one held-out prompt, with its outcome by the markers (the training signal)
    and by the judge questions (None without a judge)."""

    set: str
    id: str
    model: str
    response: str
    finish_reason: str
    markers: Outcome
    judge: Outcome | None = None
    violations: tuple[str, ...] = ()
    quality_failures: tuple[str, ...] = ()


class ModelMetrics(Frozen):
    """The rates of one model (``judge``: the same metrics by the judge questions) and its comparison-program
    win rate (mean P(win) over ``comparisons`` pairwise judgements)."""

    name: str
    adapter: str | None
    rates: dict[str, Rate]
    judge: dict[str, Rate] = {}
    win_rate: float | None = None
    comparisons: int = 0


class Agreement(Frozen):
    """Markers vs judge on one metric, over every model's responses: raw agreement and Cohen's kappa."""

    metric: str
    n: int
    agree: float | None
    kappa: float | None


class ComparisonSignal(Frozen):
    """Whether the comparison program's feedback model has a signal: the share of its votes that agree when the two
    responses swap places (``consistent``; chance is 1/2, a positional judge 0), one-sided binomial ``p`` against
    1/2; ``feedback_signal``: the labelling stage's own verdict when known. ``has_signal`` needs both."""

    consistent: Rate
    p: float
    feedback_signal: bool | None = None

    @property
    def has_signal(self) -> bool:
        return self.p < ALPHA and self.feedback_signal is not False


class ModelsEvaluation(Frozen):
    """Base vs SL vs RL on held-out prompts (module docstring of :mod:`cai_dsl.run.eval.models`)."""

    deployment: str
    constitution: str | None
    program_hash: str
    sets: dict[str, tuple[str, ...]]
    models: tuple[ModelMetrics, ...]
    paired: dict[str, tuple[PairedTest, ...]]
    judge_paired: dict[str, tuple[PairedTest, ...]] = {}
    agreement: tuple[Agreement, ...] = ()
    comparison: ComparisonSignal | None = None
    judge_behaviors: tuple[str, ...] = ()
    max_new_tokens: int = 0
    rows: tuple[ResponseRow, ...] = ()
    seconds: float = 0.0

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.models)

    def model(self, name: str) -> ModelMetrics:
        for m in self.models:
            if m.name == name:
                return m
        raise KeyError(name)

    def test(self, metric: str, a: str, b: str, *, judge: bool = False) -> PairedTest | None:
        """The paired test of ``metric`` between models ``a`` and ``b`` (either order), by the markers or the judge."""
        for t in (self.judge_paired if judge else self.paired).get(metric, ()):
            if (t.a, t.b) == (a, b):
                return t
            if (t.a, t.b) == (b, a):
                return mcnemar_swap(t)
        return None


def mcnemar_swap(t: PairedTest) -> PairedTest:
    """The same test with the two models exchanged."""
    diff = -t.difference if t.difference is not None else None
    return PairedTest(a=t.b, b=t.a, n=t.n, only_a=t.only_b, only_b=t.only_a, difference=diff, p=t.p)


def _flags(rows: Sequence[ResponseRow], model: str, metric: str, judge: bool = False) -> list[tuple[str, bool]]:
    where, field = METRICS[metric]
    out = []
    for r in rows:
        if r.model != model or (where != "*" and r.set != where):
            continue
        o = r.judge if judge else r.markers
        if o is not None:
            out.append((f"{r.set}:{r.id}", bool(getattr(o, field))))
    return sorted(out)


def _paired(rows: Sequence[ResponseRow], names: Sequence[str], metrics: Sequence[str], *, judge: bool) -> dict[str, tuple[PairedTest, ...]]:
    """McNemar tests of every metric between every pair of models, on the prompts both answered."""
    out = {}
    for m in metrics:
        tests = []
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                fa, fb = dict(_flags(rows, a, m, judge)), dict(_flags(rows, b, m, judge))
                keys = sorted(set(fa) & set(fb))
                if keys:
                    tests.append(mcnemar(a, [fa[k] for k in keys], b, [fb[k] for k in keys]))
        out[m] = tuple(tests)
    return out


def summarize(
    *,
    deployment: str,
    constitution: str | None,
    program_hash: str,
    sets: Mapping[str, Sequence[str]],
    adapters: Mapping[str, str | None],
    rows: Sequence[ResponseRow],
    comparisons: Sequence[Mapping] = (),
    feedback_signal: bool | None = None,
    judge_behaviors: Sequence[str] = (),
    max_new_tokens: int = 0,
    seconds: float = 0.0,
) -> ModelsEvaluation:
    """The evaluation from its rows. ``comparisons``: ``{"a", "b", "p_a", "consistent": [bool, ...]}`` per judged
    pair (P(a's response better), and per principle vote whether both orders agreed)."""
    names = list(adapters)
    metrics = [m for m, (where, _) in METRICS.items() if where == "*" or where in sets]
    models = []
    for n in names:
        rates = {m: rate(f for _, f in _flags(rows, n, m)) for m in metrics}
        judged = {m: rate(f for _, f in _flags(rows, n, m, judge=True)) for m in metrics}
        wins = [c["p_a"] if c["a"] == n else 1.0 - c["p_a"] for c in comparisons if n in (c["a"], c["b"])]
        models.append(ModelMetrics(
            name=n, adapter=adapters[n], rates=rates, judge={m: r for m, r in judged.items() if r.n},
            win_rate=sum(wins) / len(wins) if wins else None, comparisons=len(wins),
        ))
    paired = _paired(rows, names, metrics, judge=False)
    judge_paired = _paired(rows, names, metrics, judge=True) if any(r.judge is not None for r in rows) else {}
    agreement = []
    for m in ("harmful_compliance", "refusal", "over_refusal"):
        if m not in metrics:
            continue
        pairs = [(r.markers, r.judge) for r in rows if r.judge is not None and r.set == METRICS[m][0]]
        if pairs:
            field = METRICS[m][1]
            a = [bool(getattr(x, field)) for x, _ in pairs]
            b = [bool(getattr(y, field)) for _, y in pairs]
            agreement.append(Agreement(metric=m, n=len(a), agree=sum(x == y for x, y in zip(a, b)) / len(a), kappa=cohen_kappa(a, b)))
    signal = None
    votes = [bool(v) for c in comparisons for v in c.get("consistent", ())]
    if votes:
        signal = ComparisonSignal(consistent=rate(votes), p=binomial_greater(sum(votes), len(votes)), feedback_signal=feedback_signal)
    return ModelsEvaluation(
        deployment=deployment, constitution=constitution, program_hash=program_hash,
        sets={s: tuple(ids) for s, ids in sets.items()}, models=tuple(models), paired=paired, judge_paired=judge_paired,
        agreement=tuple(agreement),
        comparison=signal, judge_behaviors=tuple(judge_behaviors), max_new_tokens=max_new_tokens, rows=tuple(rows),
        seconds=round(seconds, 1),
    )
