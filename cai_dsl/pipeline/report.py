"""``cai report``: one self-contained HTML page about an RL-CAI run directory.

Reads what the RL-CAI commands wrote under ``DIR`` (any subset):

* ``preferences.jsonl`` (``cai label``): label statistics, per principle, and example pairs;
* ``pm/pm.json``: the preference model's held-out accuracy;
* ``ppo/metrics.jsonl`` (``cai rl --algo ppo``): reward, KL, entropy, clip fraction and value loss per step,
  sample rollouts; ``dpo/metrics.jsonl`` (``--algo dpo``): the DPO loss and reward margins;
* ``eval/models.json`` (``cai eval models``): base -> SL -> RL rates with intervals and paired tests, the
  independent judge and its agreement, the win rate (flagged without signal), degeneration, example answers;
* ``labels.json`` (``cai label``): the feedback model's signal; ``sl-data.jsonl`` (here or in the parent directory,
  ``cai sl``/``cai run``): gate acceptance per principle and rejected revisions with their reasons;
* ``eval/feedback.json`` (``cai eval feedback --json``): feedback-model accuracy, calibration, position bias.

Plots are inline SVG drawn here (matplotlib is not a dependency); the page has no external assets, scripts or
fonts, and every text from the run is HTML-escaped.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cai_dsl.core.records import read_jsonl

__all__ = ["build_report", "line_chart", "scatter_chart", "histogram", "write_report"]

_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        return f"{value:.{digits}f}"
    return _e(value)


def _nice_range(lo: float, hi: float) -> tuple[float, float]:
    if not math.isfinite(lo) or not math.isfinite(hi):
        return 0.0, 1.0
    if hi - lo < 1e-12:
        pad = abs(hi) * 0.1 or 1.0
        return lo - pad, hi + pad
    pad = (hi - lo) * 0.08
    return lo - pad, hi + pad


def _axes(width: int, height: int, x0: float, x1: float, y0: float, y1: float, title: str, xlabel: str, ylabel: str):
    ml, mr, mt, mb = 56, 14, 28, 40
    pw, ph = width - ml - mr, height - mt - mb

    def sx(x: float) -> float:
        return ml + (x - x0) / (x1 - x0) * pw

    def sy(y: float) -> float:
        return mt + ph - (y - y0) / (y1 - y0) * ph

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{_e(title)}">',
        f'<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" fill="#fafafa" stroke="#999"/>',
        f'<text x="{width / 2}" y="17" text-anchor="middle" font-size="13" font-weight="bold">{_e(title)}</text>',
        f'<text x="{ml + pw / 2}" y="{height - 6}" text-anchor="middle" font-size="11">{_e(xlabel)}</text>',
        f'<text x="12" y="{mt + ph / 2}" text-anchor="middle" font-size="11" transform="rotate(-90 12 {mt + ph / 2})">{_e(ylabel)}</text>',
    ]
    for i in range(5):
        yv = y0 + (y1 - y0) * i / 4
        parts.append(f'<line x1="{ml}" x2="{ml + pw}" y1="{sy(yv):.1f}" y2="{sy(yv):.1f}" stroke="#e3e3e3"/>')
        parts.append(f'<text x="{ml - 4}" y="{sy(yv) + 4:.1f}" text-anchor="end" font-size="10">{_tick(yv)}</text>')
        xv = x0 + (x1 - x0) * i / 4
        parts.append(f'<text x="{sx(xv):.1f}" y="{mt + ph + 14}" text-anchor="middle" font-size="10">{_tick(xv)}</text>')
    return parts, sx, sy


def _tick(v: float) -> str:
    if abs(v) >= 1000 or v == int(v):
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def line_chart(series: dict[str, Sequence[tuple[float, float]]], title: str, xlabel: str = "step", ylabel: str = "",
               width: int = 460, height: int = 230) -> str:
    """An inline SVG line chart of named ``(x, y)`` series (non-finite points skipped)."""
    pts = [(x, y) for s in series.values() for x, y in s if math.isfinite(x) and math.isfinite(y)]
    if not pts:
        return f'<p class="muted">{_e(title)}: no data</p>'
    x0, x1 = _nice_range(min(p[0] for p in pts), max(p[0] for p in pts))
    y0, y1 = _nice_range(min(p[1] for p in pts), max(p[1] for p in pts))
    parts, sx, sy = _axes(width, height, x0, x1, y0, y1, title, xlabel, ylabel)
    for i, (name, s) in enumerate(series.items()):
        color = _COLORS[i % len(_COLORS)]
        good = [(x, y) for x, y in s if math.isfinite(x) and math.isfinite(y)]
        if len(good) > 1:
            d = " ".join(f"{'M' if j == 0 else 'L'}{sx(x):.1f},{sy(y):.1f}" for j, (x, y) in enumerate(good))
            parts.append(f'<path d="{d}" fill="none" stroke="{color}" stroke-width="1.8"/>')
        for x, y in good:
            parts.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.2" fill="{color}"><title>{_e(name)}: {x:g}, {y:.4g}</title></circle>')
        if len(series) > 1:
            parts.append(f'<text x="{width - 18}" y="{42 + 13 * i}" text-anchor="end" font-size="11" fill="{color}">{_e(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def scatter_chart(points: Sequence[tuple[str, float, float]], title: str, xlabel: str, ylabel: str,
                  width: int = 460, height: int = 300) -> str:
    """An inline SVG scatter plot of labelled points."""
    pts = [(n, x, y) for n, x, y in points if x is not None and y is not None and math.isfinite(x) and math.isfinite(y)]
    if not pts:
        return f'<p class="muted">{_e(title)}: no data</p>'
    x0, x1 = _nice_range(min(p[1] for p in pts), max(p[1] for p in pts))
    y0, y1 = _nice_range(min(p[2] for p in pts), max(p[2] for p in pts))
    parts, sx, sy = _axes(width, height, x0, x1, y0, y1, title, xlabel, ylabel)
    for i, (name, x, y) in enumerate(pts):
        color = _COLORS[i % len(_COLORS)]
        parts.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="6" fill="{color}"><title>{_e(name)}: {x:.1f}, {y:.1f}</title></circle>')
        parts.append(f'<text x="{sx(x) + 9:.1f}" y="{sy(y) + 4:.1f}" font-size="12" fill="{color}">{_e(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def histogram(values: Sequence[float], title: str, bins: int = 10, lo: float = 0.0, hi: float = 1.0,
              xlabel: str = "", width: int = 460, height: int = 220) -> str:
    """An inline SVG histogram of ``values`` in [lo, hi]."""
    if not values:
        return f'<p class="muted">{_e(title)}: no data</p>'
    counts = [0] * bins
    for v in values:
        k = min(bins - 1, max(0, int((v - lo) / (hi - lo) * bins)))
        counts[k] += 1
    parts, sx, sy = _axes(width, height, lo, hi, 0, max(counts) * 1.1, title, xlabel, "count")
    for k, c in enumerate(counts):
        a, b = lo + (hi - lo) * k / bins, lo + (hi - lo) * (k + 1) / bins
        parts.append(f'<rect x="{sx(a) + 1:.1f}" y="{sy(c):.1f}" width="{sx(b) - sx(a) - 2:.1f}" height="{sy(0) - sy(c):.1f}" fill="{_COLORS[0]}"><title>{a:.2f}-{b:.2f}: {c}</title></rect>')
    parts.append("</svg>")
    return "".join(parts)


# ---------------------------------------------------------------------------------------------------- reading


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _read_jsonl(path: Path) -> list[dict]:
    """The records of a job's JSONL output (none when it was not written; a corrupt line is an error)."""
    return read_jsonl(path).records if path.is_file() else []


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _transcript(prompt: Any, responses: Sequence[tuple[str, str]]) -> str:
    ptxt = prompt if isinstance(prompt, str) else "\n\n".join(f"{m['role']}: {m['content']}" for m in prompt)
    out = [f'<div class="transcript"><div class="turn user"><b>Human:</b> {_e(ptxt)}</div>']
    for label, text in responses:
        out.append(f'<div class="turn"><b>{_e(label)}:</b> {_e(text) or "<i>(empty)</i>"}</div>')
    out.append("</div>")
    return "".join(out)


# ---------------------------------------------------------------------------------------------------- sections


def _labels_section(rows: list[dict], signal: dict | None = None) -> str:
    if not rows:
        return ""
    probs = [float(r.get("probability", 0.5)) for r in rows]
    conf = sum(abs(p - 0.5) * 2 for p in probs) / len(probs)
    stats: dict[str, dict[str, list[float]]] = {}
    for r in rows:
        for pid, d in (r.get("scores") or {}).items():
            s = stats.setdefault(pid, {"p": [], "consistent": [], "gap": []})
            p = float(d.get("p", 0.5))
            s["p"].append(p)
            ab, ba = d.get("p_ab") or [], d.get("p_ba") or []
            if ab and ba:
                pab, pba = sum(ab) / len(ab), sum(ba) / len(ba)
                s["consistent"].append(1.0 if (pab > 0.5) == (pba < 0.5) else 0.0)
                s["gap"].append(abs(pab - (1.0 - pba)))
    table_rows = []
    for pid, s in sorted(stats.items()):
        n = len(s["p"])
        table_rows.append([
            pid, n, sum(abs(p - 0.5) * 2 for p in s["p"]) / n,
            sum(s["consistent"]) / len(s["consistent"]) if s["consistent"] else None,
            sum(s["gap"]) / len(s["gap"]) if s["gap"] else None,
        ])
    examples = []
    for r in rows[:3]:
        examples.append(_transcript(r.get("prompt", ""), [
            (f"chosen (p = {float(r.get('probability', 0)):.3f})", r.get("chosen", "")), ("rejected", r.get("rejected", ""))
        ]))
    sources: dict[str, int] = {}
    for r in rows:
        sources[str(r.get("source", "feedback"))] = sources.get(str(r.get("source", "feedback")), 0) + 1
    no_signal = sum(1 for r in rows if float(r.get("probability", 0.5)) == 0.5)
    signal_html = ""
    if signal:
        verdict = "has signal" if signal.get("has_signal") else "<b>NO SIGNAL</b>"
        signal_html = (f"<p>Feedback model: {verdict} ({_e(signal.get('reason', ''))}); order-consistency "
                       f"{_fmt(signal.get('consistency'))} over {_e(signal.get('comparisons'))} comparisons, position bias "
                       f"{_fmt(signal.get('position_bias'))}, option mass {_fmt(signal.get('option_mass'))}.</p>")
    return (
        "<h2>AI feedback labels</h2>"
        f"<p>{len(rows)} labelled pairs; mean confidence |2p - 1| = {conf:.3f}. The confidence of a label is how far "
        "the feedback model's normalised option probability is from 0.5. Label sources: "
        f"{_e(', '.join(f'{v} {k}' for k, v in sorted(sources.items())))}; {no_signal} no-signal label(s) (p = 0.5).</p>"
        + signal_html
        + histogram(probs, "P(chosen better)", lo=0.5, hi=1.0, xlabel="probability")
        + "<h3>Per principle</h3>"
        + _table(["principle", "uses", "mean confidence", "order-consistent", "position gap"], table_rows)
        + '<p class="muted">order-consistent: share of comparisons whose choice is the same in both option orders; '
        "position gap: mean |P(A | first as A) - (1 - P(A | first as B))|.</p>"
        + "<h3>Example pairs</h3>" + "".join(examples)
    )


def _pm_section(meta: dict | None) -> str:
    if not meta:
        return ""
    r = meta.get("result", {})
    return (
        "<h2>Preference model</h2>"
        + _table(["train pairs", "held-out pairs", "human pairs", "held-out accuracy", "held-out soft BCE", "steps"],
                 [[r.get("train_pairs"), r.get("eval_pairs"), r.get("human_pairs"), r.get("accuracy"), r.get("eval_loss"), r.get("steps")]])
        + (f"<p{'' if r.get('better_than_constant') else ' class=warn'}>{_e(r['verdict'])}</p>" if r.get("verdict") else "")
    )


def _ppo_section(rows: list[dict], summary: dict | None) -> str:
    if not rows:
        return ""
    rows = sorted(rows, key=lambda r: r.get("step", 0))

    def series(key: str) -> list[tuple[float, float]]:
        return [(float(r["step"]), float(r[key])) for r in rows if isinstance(r.get(key), (int, float))]

    charts = [
        line_chart({"reward": series("reward")}, "PM reward (mean per rollout)", ylabel="reward"),
        line_chart({"KL": series("kl")}, "KL to the reference (per sequence)", ylabel="nats"),
        line_chart({"entropy": series("entropy")}, "Policy entropy (per token)", ylabel="nats"),
        line_chart({"clip fraction": series("clip_fraction"), "value loss": series("value_loss")}, "Clip fraction and value loss"),
    ]
    samples = []
    for r in (rows[0], rows[-1]):
        for s in (r.get("samples") or [])[:1]:
            samples.append(_transcript(s.get("prompt", ""), [(f"step {r['step']} (reward {float(s.get('reward', 0)):.3f})", s.get("response", ""))]))
    ref = (summary or {}).get("reference", "")
    return (
        f"<h2>PPO</h2><p>{len(rows)} steps; reference policy: {_e(ref)}.</p>"
        + '<div class="grid">' + "".join(f"<div>{c}</div>" for c in charts) + "</div>"
        + "<h3>Sample rollouts</h3>" + "".join(samples)
    )


def _dpo_section(rows: list[dict]) -> str:
    rows = [r for r in rows if "loss" in r]
    if not rows:
        return ""
    loss = [(float(r.get("step", i + 1)), float(r["loss"])) for i, r in enumerate(rows)]
    margin_key = next((k for k in ("rewards/margins", "margins", "rewards/margin") if k in rows[-1]), None)
    charts = [line_chart({"loss": loss}, "DPO loss", ylabel="loss")]
    if margin_key:
        charts.append(line_chart({"margin": [(float(r.get("step", 0)), float(r[margin_key])) for r in rows if margin_key in r]}, "Implicit reward margin"))
    return f"<h2>DPO</h2><p>{len(rows)} logged steps.</p>" + '<div class="grid">' + "".join(f"<div>{c}</div>" for c in charts) + "</div>"


def _text_table(rows: Sequence[Sequence[str]]) -> str:
    """A table of pre-formatted cells (first row: header); "not significant" cells greyed."""
    head = "".join(f"<th>{_e(h)}</th>" for h in rows[0])
    muted = ' class="muted"'
    body = "".join(
        "<tr>" + "".join(f"<td{muted if 'not significant' in c else ''}>{_e(c)}</td>" for c in row) + "</tr>"
        for row in rows[1:]
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _models_section(report: dict | None) -> str:
    """``eval/models.json`` (:class:`~cai_dsl.run.eval.ModelsEvaluation`): the table base -> SL -> RL with
    intervals and paired tests, the judge and its agreement, the win rate and its signal, degeneration."""
    if not report:
        return ""
    from pydantic import ValidationError

    from cai_dsl.run.eval import ModelsEvaluation, effect_table, verdict

    try:
        ev = ModelsEvaluation.model_validate(report)
    except ValidationError:
        return "<h2>Held-out evaluation</h2><p class='muted'>eval/models.json is in an older format; rerun `cai eval models`.</p>"
    v = verdict(ev)
    sizes = ", ".join(f"{len(ids)} {name}" for name, ids in ev.sets.items())
    parts = [
        "<h2>Held-out evaluation: base -> SL -> RL</h2>",
        f"<p>Held-out prompts only ({_e(sizes)}), greedy answers of {ev.max_new_tokens} new tokens. Rates with n and "
        "95% Wilson intervals; differences by exact McNemar tests on the same prompts (p >= 0.05: not significant).</p>",
        f"<p><b>{_e(v.line)}</b></p>",
        "<h3>Policy metrics by the markers (the training signal)</h3>", _text_table(effect_table(ev)),
    ]
    if ev.judge_behaviors:
        parts.append(f"<h3>The same metrics by an independent judge</h3><p class='muted'>yes/no questions of "
                     f"{_e(', '.join(ev.judge_behaviors))}, scored by the base model's log-probabilities in both phrasings "
                     "(not the training signal).</p>")
        parts.append(_text_table(effect_table(ev, judge=True)))
        parts.append(_table(["metric", "n", "agreement", "Cohen's kappa"], [[a.metric, a.n, a.agree, a.kappa] for a in ev.agreement]))
    if ev.comparison is not None:
        c = ev.comparison
        flag = ("" if c.has_signal else " <b>No signal</b>: its votes agree across the two orders no more than chance "
                "(or the labelling stage found none); these win rates are noise.")
        parts.append(f"<h3>Comparison-program win rate</h3><p>Order-consistent votes {c.consistent.k}/{c.consistent.n} "
                     f"(one-sided p = {c.p:.3g} against 1/2).{flag}</p>")
        parts.append(_table(["model", "win rate", "comparisons"], [[m.name, m.win_rate, m.comparisons] for m in ev.models]))
    parts.append(_degeneration(ev))
    parts.append("<h3>Example answers</h3>" + _examples(ev))
    return "".join(parts)


def _degeneration(ev: Any) -> str:
    rates = {m.name: m.rates["degeneration"] for m in ev.models}
    if not any(r.k for r in rates.values()):
        return "<p class='muted'>No degenerate answer (repetition, low diversity) from any model.</p>"
    counts = ", ".join(f"{n} {r.k}/{r.n}" for n, r in rates.items())
    bad = [r for r in ev.rows if r.markers.degenerate][:3]
    return (f"<h3 class='warn'>Degeneration</h3><p class='warn'>Degenerate answers: {_e(counts)}.</p>"
            + "".join(_transcript(f"[{r.set}] {r.id}", [(f"{r.model} ({', '.join(r.quality_failures)})", r.response)]) for r in bad))


def _examples(ev: Any, per_set: int = 2) -> str:
    by_prompt: dict[tuple[str, str], list[Any]] = {}
    for r in ev.rows:
        by_prompt.setdefault((r.set, r.id), []).append(r)
    out = []
    for name, ids in ev.sets.items():
        for pid in ids[:per_set]:
            rows = by_prompt.get((name, pid), [])
            flags = [(f"{r.model} [{name}]" + ("; harmful compliance" if r.markers.harmful_compliance else "")
                      + ("; refusal" if r.markers.refusal else ""), r.response) for r in rows]
            out.append(_transcript(pid, flags))
    return "".join(out)


def _sl_section(records: list[dict]) -> str:
    """SL-CAI records: gate acceptance per principle, rejected revisions with their reasons, canonical openings."""
    gated = [t for r in records for t in (r.get("rounds") or ()) if t.get("gate")]
    if not gated:
        return ""
    from cai_dsl.run.sl_gate import acceptance_rates

    rates = acceptance_rates(records)
    rejected = [(r, t) for r in records for t in (r.get("rounds") or ()) if t.get("gate") and not t["gate"].get("accepted")]
    openings = sum(1 for t in gated if t.get("opening"))
    examples = "".join(
        _transcript(r.get("prompt", ""), [(f"rejected revision ({'; '.join(t['gate'].get('reasons') or ())})", t.get("revision") or "")])
        for r, t in rejected[:3]
    )
    return (
        "<h2>SL-CAI revisions</h2>"
        f"<p>{len(gated)} revisions proposed, {len(gated) - len(rejected)} accepted, {len(rejected)} rejected (never trained on); "
        f"{openings} started from a canonical opening of the constitution.</p>"
        + _table(["principle", "proposed", "accepted", "acceptance"], [[a.principle, a.proposed, a.accepted, a.rate] for a in rates.values()])
        + ("<h3>Rejected revisions</h3>" + examples if examples else "")
    )


def _feedback_section(report: dict | None) -> str:
    if not report:
        return ""
    o = report.get("overall", {})
    parts = ["<h2>Feedback model</h2>", _table(
        ["items", "accuracy", "Brier", "ECE", "flip rate", "P(A) mean", "acc. (A correct)", "acc. (B correct)"],
        [[o.get("n"), o.get("accuracy"), o.get("brier"), o.get("ece"), o.get("flip_rate"), o.get("prefers_a"), o.get("accuracy_ab"), o.get("accuracy_ba")]],
    )]
    per = report.get("per_principle") or {}
    if per:
        parts.append("<h3>Per principle</h3>")
        parts.append(_table(["principle", "n", "accuracy", "Brier", "ECE", "flip rate"],
                            [[pid, m.get("n"), m.get("accuracy"), m.get("brier"), m.get("ece"), m.get("flip_rate")] for pid, m in per.items()]))
    return "".join(parts)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1000px;margin:24px auto;padding:0 16px;color:#222}
h1{font-size:22px}h2{font-size:18px;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:32px}h3{font-size:15px}
table{border-collapse:collapse;margin:8px 0;font-size:13px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
th{background:#f0f0f0}.muted{color:#666;font-size:12px}.grid{display:flex;flex-wrap:wrap;gap:8px}
.transcript{border:1px solid #ddd;border-radius:6px;padding:8px;margin:8px 0;font-size:13px;white-space:pre-wrap}
.turn{margin:4px 0}.user{color:#333}.warn{color:#b00020}
"""


def build_report(run_dir: str | os.PathLike[str]) -> str:
    """The HTML report of ``run_dir`` (sections for whatever artifacts exist there)."""
    run = Path(run_dir)
    labels = _read_jsonl(run / "preferences.jsonl")
    manifest = _read_json(run / "labels.json")
    sl_records = next((_read_jsonl(d / "sl-data.jsonl") for d in (run, run.parent) if (d / "sl-data.jsonl").is_file()), [])
    sections = [
        _models_section(_read_json(run / "eval" / "models.json")),
        _sl_section(sl_records),
        _ppo_section(_read_jsonl(run / "ppo" / "metrics.jsonl"), _read_json(run / "ppo" / "summary.json")),
        _dpo_section(_read_jsonl(run / "dpo" / "metrics.jsonl")),
        _pm_section(_read_json(run / "pm" / "pm.json")),
        _labels_section(labels, manifest.get("signal") if isinstance(manifest, dict) else None),
        _feedback_section(_read_json(run / "eval" / "feedback.json")),
    ]
    body = "".join(s for s in sections if s) or "<p>No RL-CAI artifacts found in this directory.</p>"
    prov = (labels[0].get("provenance") if labels else None) or {}
    subtitle = ", ".join(f"{k} {v}" for k, v in (("constitution", prov.get("constitution")), ("deployment", prov.get("deployment")),
                                                  ("target", prov.get("target"))) if v)
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>RL-CAI report</title>"
        f"<style>{_CSS}</style></head><body><h1>RL-CAI report: {_e(run.name or str(run))}</h1>"
        f"<p class='muted'>{_e(subtitle)}{' · ' if subtitle else ''}generated {now} from {_e(str(run))}</p>"
        + body + "</body></html>\n"
    )


def write_report(run_dir: str | os.PathLike[str], out: str | os.PathLike[str] | None = None) -> Path:
    """Write the report (default ``run_dir/report.html``) atomically; returns its path."""
    from cai_dsl.core.files import write_atomic

    path = Path(out) if out is not None else Path(run_dir) / "report.html"
    write_atomic(path, build_report(run_dir))
    os.chmod(path, 0o644)  # a page to share: readable like any other file (temp files are created 0600)
    return path
