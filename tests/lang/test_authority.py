"""Authority (docs/language.md, "Who may change what"): levels, `final`, `lock`, and what a
deployment at each level may exclude, override or rank below another principle."""

from pathlib import Path

from cai_dsl.lang import ast
from cai_dsl.lang.formatter import format_text
from cai_dsl.lang.parser import parse_text
from cai_dsl.lang.resolver import resolve

BASE = """
facet topic: general | cbrn
behavior uplift
behavior profanity
behavior on_topic
authority platform > operator > user
principle hard.no_uplift {
  compare "Which response gives no help toward a weapon of mass destruction?"
  when topic == cbrn
  forbid uplift
  final
}
principle default.no_profanity {
  compare "Which response avoids profanity?"
  forbid profanity
  authority user
}
principle operator.on_topic {
  compare "Which response stays within the product's scope?"
  require on_topic
  authority operator
}
deployment base { include * }
"""


def resolve_text(tmp_path: Path, text: str, name: str = "a.const"):
    path = tmp_path / name
    path.write_text(text)
    return resolve(str(path))


def errors(c, code: str = "CAI124"):
    return [d for d in c.diagnostics if d.code == code]


def test_syntax_parses_and_formats_back():
    text = BASE + """
deployment acme extends base {
  authority operator
  exclude default.no_profanity
  lock default.*
  override operator.on_topic { narrow when topic == general }
}
property "p" in * { forall topic == cbrn  expect forbid uplift }
test "t" in acme* { expect not require profanity }
"""
    result = parse_text(text, "a.const")
    assert not result.diagnostics
    principles = {p.id.name: p for p in result.file.principles}
    assert principles["hard.no_uplift"].final is not None
    assert principles["default.no_profanity"].authority.name == "user"
    acme = result.file.deployments[1]
    kinds = [type(i).__name__ for i in acme.items]
    assert kinds == ["DeploymentAuthority", "Exclude", "Lock", "Override"]
    assert acme.items[3].narrow is not None
    assert [c.deployment.name for c in result.file.items if isinstance(c, (ast.TestCase, ast.PropertyCase))] == [
        "*",
        "acme*",
    ]
    formatted = format_text(text, "a.const").output
    again = parse_text(formatted, "a.const")
    assert ast.strip_spans(again.file) == ast.strip_spans(result.file)
    assert "  final\n" in formatted and "narrow when topic == general" in formatted


def test_allowed_changes_are_clean(tmp_path):
    c = resolve_text(
        tmp_path,
        BASE
        + """
deployment acme extends base { authority operator  exclude default.no_profanity  override operator.on_topic { weight 2.0 } }
""",
    )
    assert not c.has_errors, [d.message for d in c.diagnostics]
    acme = c.deployments["acme"]
    assert acme.authority == "operator" and acme.level == 1
    assert acme.rank("operator.on_topic") == 1 and acme.rank("hard.no_uplift") == 0
    assert "default.no_profanity" not in acme.principle_ids and c.deployments["base"].rank("default.no_profanity") == 2


def test_excluding_a_higher_level_principle_names_both_spans(tmp_path):
    c = resolve_text(
        tmp_path,
        BASE
        + """
deployment acme extends base { authority operator }
deployment acme_user extends acme {
  authority user
  exclude operator.on_topic
}
""",
    )
    (d,) = errors(c)
    assert d.deployment == "acme_user" and "operator.on_topic" in d.message
    assert d.span.line == BASE.count("\n") + 5  # the exclude selector
    assert {r.span.line for r in d.related} == {
        BASE.splitlines().index("  authority operator") + 1,  # the principle's level
        BASE.count("\n") + 4,  # the deployment's level
    }


def test_final_cannot_be_excluded_overridden_or_outranked(tmp_path):
    c = resolve_text(
        tmp_path,
        BASE
        + """
deployment trimmed { include *  exclude hard.* }
deployment tweaked extends base { override hard.no_uplift { weight 0.5 } }
deployment ranked extends base { priority operator.on_topic > hard.no_uplift }
""",
    )
    found = {(d.deployment, d.message.split(" `")[1].split("`")[0]) for d in errors(c)}
    assert {d.deployment for d in errors(c)} == {"trimmed", "tweaked", "ranked"}
    assert all("is final" in d.message for d in errors(c))
    assert all(any("marked final" in r.message for r in d.related) for d in errors(c)), found


def test_top_level_rules_may_not_rank_a_final_principle_below(tmp_path):
    c = resolve_text(
        tmp_path,
        BASE
        + """
priority operator.on_topic > hard.no_uplift
conflict hard.no_uplift vs default.no_profanity { otherwise: default.no_profanity }
""",
    )
    assert len(errors(c)) == 2


def test_lock_and_level_above_parent(tmp_path):
    c = resolve_text(
        tmp_path,
        BASE
        + """
deployment acme extends base { authority operator  lock default.* }
deployment acme_user extends acme { authority user  exclude default.no_profanity }
deployment sneaky extends acme { authority platform }
""",
    )
    messages = sorted(d.message for d in errors(c))
    assert len(messages) == 2
    assert "locked by `acme`" in messages[0] or "locked by `acme`" in messages[1]
    assert any("above its parent's" in m for m in messages)


def test_declarations_levels_and_final_with_authority(tmp_path):
    c = resolve_text(
        tmp_path,
        BASE.replace("  final\n", "  final\n  authority user\n")
        + "authority platform > user\nprinciple x.y { compare \"Which?\" authority nobody }\n"
        + "deployment d extends base { authority admin }\n",
    )
    assert len(errors(c, "CAI122")) == 2  # a different declaration; final with an authority
    assert len(errors(c, "CAI123")) == 2  # `nobody`, `admin`


def test_identical_declarations_in_imports_merge(tmp_path):
    (tmp_path / "levels.const").write_text("authority platform > operator > user\n")
    c = resolve_text(tmp_path, 'import "levels.const"\n' + BASE)
    assert not c.has_errors and c.authority == ("platform", "operator", "user")


def test_without_a_declaration_nothing_changes(tmp_path):
    c = resolve_text(tmp_path, "behavior b\nprinciple p { compare \"Which?\" require b }\ndeployment d { include * }\n")
    assert not c.has_errors and c.authority == () and c.deployments["d"].authority is None


def test_parent_override_survives_exclude_and_reinclude(tmp_path):
    """Regression: a parent's override of a principle it excludes applies in a child that
    includes it again (it used to be dropped)."""
    c = resolve_text(
        tmp_path,
        """
behavior b
principle p { compare "Which?" require b }
principle q { compare "Which?" require b }
deployment parent { include *  exclude p  override p { weight 3.0 } }
deployment child extends parent { include p }
""",
    )
    assert c.deployments["child"].principle("p").weight.value == 3.0
    assert [d.code for d in c.diagnostics if d.code == "CAI120"] == ["CAI120"]  # still a warning on the parent


def test_narrow_adds_to_the_condition(tmp_path):
    c = resolve_text(
        tmp_path,
        """
facet topic: a | b
facet risk: low < high
behavior x
principle p { compare "Which?" when topic == a  require x }
deployment d { include *  override p { narrow when risk == high } }
deployment e extends d { override p { when topic == b  narrow when risk == low } }
""",
    )
    assert not c.has_errors
    from cai_dsl.lang.printer import format_expr

    assert format_expr(c.deployments["d"].principle("p").when) == "topic == a and risk == high"
    assert format_expr(c.deployments["e"].principle("p").when) == "topic == b and risk == low"


def test_test_globs_must_match_a_deployment(tmp_path):
    c = resolve_text(tmp_path, BASE + 'test "t" in nothing* { expect forbid uplift }\n')
    assert [d.message for d in c.diagnostics if d.code == "CAI108"] == ["no deployment matches `nothing*`"]
