"""``cai report``: one self-contained HTML page about an RL-CAI run directory.

Reads what the RL-CAI commands wrote under ``DIR`` (any subset):

* ``preferences.jsonl`` (``cai label``): label statistics, per principle, and example pairs;
* ``pm/pm.json``: the preference model's held-out accuracy;
* ``ppo/metrics.jsonl`` (``cai rl --algo ppo``): reward, KL, entropy, clip fraction and value loss per step,
  sample rollouts; ``dpo/metrics.jsonl`` (``--algo dpo``): the DPO loss and reward margins;
* ``eval/models.json`` (``cai eval models``): harmlessness vs helpfulness per model, refusal rates, examples;
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


def _labels_section(rows: list[dict]) -> str:
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
    return (
        "<h2>AI feedback labels</h2>"
        f"<p>{len(rows)} labelled pairs; mean confidence |2p - 1| = {conf:.3f}. The confidence of a label is how far "
        "the feedback model's normalised option probability is from 0.5.</p>"
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


def _models_section(report: dict | None) -> str:
    if not report:
        return ""
    models = report.get("models", {})
    pts = [(n, (m.get("helpfulness") or {}).get("elo"), (m.get("harmlessness") or {}).get("elo")) for n, m in models.items()]
    rows = [
        [n, (m.get("harmlessness") or {}).get("elo"), (m.get("harmlessness") or {}).get("win_rate"),
         (m.get("helpfulness") or {}).get("elo"), (m.get("helpfulness") or {}).get("win_rate"),
         m.get("refusal_rate_benign"), m.get("refusal_rate_red_team")]
        for n, m in models.items()
    ]
    examples = "".join(
        _transcript(ex.get("prompt", ""), [(f"{n} [{ex.get('set')}]", t) for n, t in (ex.get("responses") or {}).items()])
        for ex in report.get("examples", [])[:4]
    )
    notes = []
    for s, info in (report.get("principles") or {}).items():
        if not info.get("tagged"):
            notes.append(f"{s} was judged with every compare principle (the deployment has none tagged for it)")
    return (
        "<h2>Models: harmlessness vs helpfulness</h2>"
        + scatter_chart(pts, "Elo by the comparison program", "helpfulness Elo", "harmlessness Elo")
        + _table(["model", "harmless Elo", "harmless win", "helpful Elo", "helpful win", "refusals (benign)", "refusals (red team)"], rows)
        + ("<p class='muted'>" + _e("; ".join(notes)) + ".</p>" if notes else "")
        + '<p class="muted">A rising refusal rate on benign prompts while harmlessness improves is the over-refusal '
        "(Goodhart) signal.</p><h3>Example responses</h3>" + examples
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
.turn{margin:4px 0}.user{color:#333}
"""


def build_report(run_dir: str | os.PathLike[str]) -> str:
    """The HTML report of ``run_dir`` (sections for whatever artifacts exist there)."""
    run = Path(run_dir)
    labels = _read_jsonl(run / "preferences.jsonl")
    sections = [
        _models_section(_read_json(run / "eval" / "models.json")),
        _ppo_section(_read_jsonl(run / "ppo" / "metrics.jsonl"), _read_json(run / "ppo" / "summary.json")),
        _dpo_section(_read_jsonl(run / "dpo" / "metrics.jsonl")),
        _pm_section(_read_json(run / "pm" / "pm.json")),
        _labels_section(labels),
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
