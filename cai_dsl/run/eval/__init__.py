"""``cai eval models``: held-out sets, greedy answers of base/SL/RL, policy metrics by markers and by an independent
judge, rates with Wilson intervals, exact McNemar tests, and the verdict of ``cai run`` against its target."""

from cai_dsl.run.eval.models import EvalOptions, evaluate_models
from cai_dsl.run.eval.result import ModelsEvaluation, summarize
from cai_dsl.run.eval.sets import SetLimits, eval_sets
from cai_dsl.run.eval.stats import PairedTest, mcnemar, rate_text
from cai_dsl.run.eval.verdict import Target, Verdict, effect_table, verdict

__all__ = [
    "EvalOptions",
    "ModelsEvaluation",
    "PairedTest",
    "SetLimits",
    "Target",
    "Verdict",
    "effect_table",
    "eval_sets",
    "evaluate_models",
    "mcnemar",
    "rate_text",
    "summarize",
    "verdict",
]
