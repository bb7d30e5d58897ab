"""``docs/rules/`` from the registry: the index (``README.md``) is generated whole; each
rule page's header (code, name, severity, summary) and its "How to suppress" section are
generated around the hand-written body (what it catches, why, example, fix).

:func:`sync_rule_docs` rewrites the folder (a new rule gets a page skeleton); the test
suite fails when the folder differs from what it would write.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from cai_dsl.diagnostics.model import Rule
from cai_dsl.diagnostics.rules import GROUPS, all_rules, group_of, rules_of, unsuppressible

SUPPRESS_HEADING = "## How to suppress"

_INTRO = """\
# Rules

Every diagnostic `cai` reports has a stable code (`CAI` and three digits) and a kebab-case name. Codes are never
renumbered. Each rule has a page with what it catches, why it matters, an example that triggers it, the fix, and
how to suppress it.

Suppress a finding for one declaration with `# cai: ignore[CODE]` on the line before it, for a project with
`[tool.cai] ignore = ["CODE"]` in `pyproject.toml`, or for one run with `cai lint --ignore CODE`.
"""

_SKELETON = """\
## What it catches

TODO

## Why it matters

TODO

## Example

```const
TODO
```

## How to fix

TODO

```const
TODO
```

"""


def rule_index() -> str:
    """The text of ``docs/rules/README.md``."""
    parts = [_INTRO]
    for group in GROUPS:
        rows = [f"| [{r.code}]({r.code}.md) | `{r.name}` | {r.severity} | {r.summary} |" for r in rules_of(group)]
        parts.append(
            f"\n## {group.prefix}xx {group.title}\n\n{group.description}\n\n"
            "| Code | Name | Severity | Summary |\n| --- | --- | --- | --- |\n" + "\n".join(rows) + "\n"
        )
    return "".join(parts)


def page_header(rule: Rule) -> str:
    """The generated start of a rule page."""
    return f"# {rule.code} {rule.name}\n\n**Severity:** {rule.severity}  \n**Summary:** {rule.summary}\n\n"


def page_suppression(rule: Rule) -> str:
    """The generated end of a rule page: how to suppress the rule."""
    if unsuppressible(rule.code):
        advice = (
            "This error cannot be suppressed: the file means nothing until it is fixed, so the comment, "
            "the setting and the option below have no effect on it (they work for warnings and semantic errors)."
        )
    elif rule.severity != "error":
        advice = "Only where the finding is deliberate, and preferably with a comment saying why."
    elif group_of(rule).name == "syntax":
        advice = "This is an error: fix it rather than suppress it. Suppressing hides the message, but the file still cannot be used."
    else:
        advice = "This is an error: fix it rather than suppress it. Suppressing hides the message, but not the problem it reports."
    return (
        f"{SUPPRESS_HEADING}\n\n{advice}\n\n"
        "For one declaration, put the comment on the line before the principle (or other declaration) it is reported on:\n\n"
        f"```\n# cai: ignore[{rule.code}]\nprinciple ... {{\n```\n\n"
        f'For a whole project, in `pyproject.toml`:\n\n```toml\n[tool.cai]\nignore = ["{rule.code}"]\n```\n\n'
        f"For one run: `cai lint --ignore {rule.code}`.\n\nSee also: [all rules](README.md).\n"
    )


def page_body(text: str) -> str:
    """The hand-written part of a rule page: after the header's summary line, before the suppression section."""
    lines = text.splitlines(keepends=True)
    start = next((i + 1 for i, line in enumerate(lines) if line.startswith("**Summary:**")), 0)
    body = "".join(lines[start:]).split(SUPPRESS_HEADING, 1)[0]
    return body.strip("\n") + "\n\n"


def render_page(rule: Rule, body: str | None = None) -> str:
    """A rule page: generated header, ``body`` (a skeleton when None), generated suppression section."""
    return page_header(rule) + (body if body is not None else _SKELETON) + page_suppression(rule)


def expected_rule_docs(folder: str | Path, rules: Iterable[Rule] | None = None) -> dict[Path, str]:
    """Every file of ``folder`` as the registry wants it (existing pages keep their bodies)."""
    folder = Path(folder)
    out = {folder / "README.md": rule_index()}
    for rule in rules if rules is not None else all_rules():
        path = folder / f"{rule.code}.md"
        body = page_body(path.read_text(encoding="utf-8")) if path.exists() else None
        out[path] = render_page(rule, body)
    return out


def sync_rule_docs(folder: str | Path) -> list[Path]:
    """Rewrite the generated parts of ``folder``; return the files that changed."""
    changed = []
    for path, text in expected_rule_docs(folder).items():
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            changed.append(path)
    return changed
