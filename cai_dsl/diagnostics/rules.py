"""The catalogue of diagnostics. Codes are stable: never renumber, only add.

Ranges (:data:`GROUPS`): CAI0xx input and syntax, CAI1xx names and resolution,
CAI2xx semantic (SMT) checks, CAI3xx operationalizability lints, CAI4xx tests and
properties. Each rule has a page at ``docs/rules/<CODE>.md`` whose header, index
entry and suppression section are generated from this registry
(:mod:`cai_dsl.diagnostics.docs`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from types import MappingProxyType
from typing import Mapping

from cai_dsl.diagnostics.model import Rule


@dataclass(frozen=True)
class Group:
    """A code range: its name, heading and one-line description (the rules index)."""

    prefix: str
    name: str
    title: str
    description: str


GROUPS: tuple[Group, ...] = (
    Group("CAI0", "syntax", "Input and syntax", "The file cannot be read or parsed."),
    Group("CAI1", "names", "Names and resolution", "Imports, references, deployments and settings."),
    Group("CAI2", "semantic", "Semantic checks", "Decided over all scenarios with an SMT solver, with a witness scenario."),
    Group(
        "CAI3",
        "operational",
        "Operationalizability",
        "Can a model actually evaluate the principle? Heuristic lints, plus one empirical check.",
    ),
    Group("CAI4", "tests", "Tests and properties", "`test` and `property` blocks, checked by `cai test`."),
)

_syntax = partial(Rule, group="syntax")
_names = partial(Rule, group="names")
_semantic = partial(Rule, group="semantic")
_operational = partial(Rule, group="operational")
_tests = partial(Rule, group="tests")

# -- input and syntax
SYNTAX_ERROR = _syntax("CAI001", "syntax-error", "error", "The file does not follow the grammar.")
UNTERMINATED_STRING = _syntax("CAI002", "unterminated-string", "error", "A string literal is not closed.")
INVALID_ENCODING = _syntax("CAI003", "invalid-encoding", "error", "The file is not valid UTF-8 text.")
NESTING_TOO_DEEP = _syntax("CAI004", "nesting-too-deep", "error", "An expression is nested too deeply.")
INVALID_LITERAL = _syntax("CAI005", "invalid-literal", "error", "A literal is malformed (escape, number, option).")
DUPLICATE_FIELD = _syntax("CAI006", "duplicate-field", "error", "A field is given twice in one block.")
UNREADABLE_FILE = _syntax("CAI007", "unreadable-file", "error", "A file cannot be read.")
INVALID_NAME = _syntax("CAI008", "invalid-name", "error", "A dotted name is used where a simple name is required.")
FILE_TOO_LARGE = _syntax("CAI009", "file-too-large", "error", "A file exceeds the size the parser accepts.")
BIDI_CONTROL = _syntax("CAI010", "bidi-control", "error", "A bidirectional control character (Trojan Source) in the file.")

# -- names and resolution
IMPORT_NOT_FOUND = _names("CAI101", "import-not-found", "error", "An imported file does not exist.")
IMPORT_CYCLE = _names("CAI102", "import-cycle", "error", "Files import each other in a cycle.")
UNDEFINED_PRINCIPLE = _names("CAI103", "undefined-principle", "error", "A principle id is not defined.")
UNDEFINED_FACET = _names("CAI104", "undefined-facet", "error", "A facet is not defined.")
UNDEFINED_FACET_VALUE = _names("CAI105", "undefined-facet-value", "error", "A value is not in its facet's domain.")
UNDEFINED_BEHAVIOR = _names("CAI106", "undefined-behavior", "error", "A behavior is not defined.")
UNDEFINED_NAME = _names("CAI107", "undefined-name", "error", "A name is neither a principle nor a group.")
UNDEFINED_DEPLOYMENT = _names("CAI108", "undefined-deployment", "error", "A deployment is not defined.")
DUPLICATE_DEFINITION = _names("CAI109", "duplicate-definition", "error", "A name is defined twice.")
ORDERED_COMPARISON_ON_UNORDERED = _names(
    "CAI110", "ordered-comparison-on-unordered-facet", "error", "<, <=, >, >= used on an unordered facet."
)
SELECTOR_MATCHES_NOTHING = _names("CAI111", "selector-matches-nothing", "warning", "A glob, tag or group selects no principle.")
UNUSED_FACET = _names("CAI112", "unused-facet", "warning", "A facet is never used in a condition.")
UNUSED_BEHAVIOR = _names("CAI113", "unused-behavior", "warning", "A behavior is never required, forbidden or preferred.")
UNKNOWN_SETTING = _names("CAI114", "unknown-setting", "error", "A `set` key the compiler does not know.")
DEPLOYMENT_CYCLE = _names("CAI115", "deployment-cycle", "error", "Deployments extend each other in a cycle.")
INVALID_SETTING_VALUE = _names("CAI116", "invalid-setting-value", "error", "A `set` value has the wrong type or range.")
DUPLICATE_VALUE = _names("CAI117", "duplicate-value", "error", "A facet lists the same value twice, or an exclusive set a behavior twice.")
GROUP_CYCLE = _names("CAI118", "group-cycle", "error", "Groups contain each other in a cycle.")
INVALID_CONFLICT_WINNER = _names("CAI119", "invalid-conflict-winner", "error", "A conflict rule picks a principle outside its pair.")
EXCLUDED_PRINCIPLE_OVERRIDDEN = _names(
    "CAI120", "override-of-excluded", "warning", "A deployment overrides a principle it does not include."
)
INVALID_PATTERN = _names("CAI121", "invalid-pattern", "error", "A behavior's marker or pattern is not a usable detector.")
INVALID_AUTHORITY = _names("CAI122", "invalid-authority", "error", "Two different `authority` declarations, a level listed twice, or a final principle with an `authority`.")
UNDEFINED_AUTHORITY_LEVEL = _names("CAI123", "undefined-authority-level", "error", "An `authority` names a level the declaration does not list.")
AUTHORITY_VIOLATION = _names("CAI124", "authority-violation", "error", "A deployment changes a principle its level may not change (final, locked or higher-level).", scope="deployment")
NUMBER_OUT_OF_RANGE = _names("CAI125", "number-out-of-range", "error", "A number compared with a number facet lies outside the facet's range.")
FACET_KIND_MISMATCH = _names("CAI126", "facet-kind-mismatch", "error", "A number facet compared with a value name or used with `in {...}`, or a symbolic facet compared with a number.")
IMPORT_OUTSIDE_PROJECT = _names(
    "CAI130", "import-outside-project", "error", "An import names a file outside the project, or not a `.const` file."
)
LIMIT_EXCEEDED = _names(
    "CAI131", "limit-exceeded", "error", "More facets, facet values or `extends` levels than the limits allow."
)

# -- semantic checks (decided with an SMT solver)
CONTRADICTION = _semantic("CAI201", "contradiction", "error", "Two active principles clash and nothing resolves it.", scope="deployment")
PRIORITY_CYCLE = _semantic("CAI202", "priority-cycle", "error", "The priority order has a cycle.")
CONFLICT_GAP = _semantic("CAI203", "conflict-rule-gap", "error", "A conflict rule leaves part of its clash unresolved.", scope="deployment")
UNSATISFIABLE_ASSUMPTION = _semantic("CAI204", "unsatisfiable-assumption", "error", "A deployment's assumptions admit no scenario.", scope="deployment")
NEVER_ACTIVE = _semantic("CAI205", "never-active", "warning", "A principle is active in no reachable scenario.", scope="deployment")
SHADOWED = _semantic("CAI206", "shadowed-principle", "warning", "A principle loses every clash it takes part in.")
UNREACHABLE_BRANCH = _semantic("CAI207", "unreachable-conflict-branch", "warning", "A conflict-rule branch can never decide.")
SELF_CLASH = _semantic("CAI208", "self-contradictory-principle", "error", "A principle requires and forbids the same behavior.")
FINAL_LOSES = _semantic("CAI209", "final-principle-loses", "error", "A final principle does not win a clash it takes part in.", scope="deployment")
UNDECIDED = _semantic("CAI220", "undecided", "warning", "The solver could not decide a check within its time budget.", scope="deployment")

# -- operationalizability
VAGUE_WORDING = _operational("CAI301", "vague-wording", "warning", "Wording names no observable criterion.")
COMPARE_NOT_A_QUESTION = _operational("CAI302", "compare-not-a-question", "warning", "A compare prompt does not ask to choose between responses.")
COMPOUND_PRINCIPLE = _operational("CAI303", "compound-principle", "warning", "A principle demands several unrelated things.")
NEGATIVE_ONLY = _operational("CAI304", "negative-only-framing", "warning", "A principle only forbids, with nothing to prefer.")
UNPAIRED_CRITIQUE = _operational("CAI305", "unpaired-critique-revise", "warning", "A critique without a revise, or the reverse.")
NO_EXAMPLES = _operational("CAI306", "no-examples", "warning", "A principle has no few-shot examples.")
OVER_REFUSAL_RISK = _operational("CAI307", "over-refusal-risk", "warning", "A harm-minimizing principle has no helpfulness counterweight.", scope="deployment")
NO_PROMPT_FORMS = _operational("CAI308", "no-prompt-forms", "warning", "A principle has no critique, revise or compare prompt.")
EMPIRICAL_INCONSISTENCY = _operational("CAI309", "empirical-inconsistency", "warning", "The model cannot evaluate a compare principle consistently.", scope="deployment")
UNOBSERVABLE_BEHAVIOR = _operational("CAI310", "unobservable-behavior", "warning", "A behavior a principle uses has no marker, pattern or judge question.")
JUDGE_NOT_A_QUESTION = _operational("CAI311", "judge-not-a-question", "warning", "A behavior's judge text is not a yes/no question.")
NEAR_DUPLICATE = _operational("CAI312", "near-duplicate-principle", "warning", "Two principles' prompts are near-identical.")

# -- tests and properties
TEST_FAILED = _tests("CAI401", "test-failed", "error", "A test's expectation does not hold.")
PROPERTY_REFUTED = _tests("CAI402", "property-refuted", "error", "A property has a counter-example.")
VACUOUS_TEST = _tests("CAI403", "vacuous-test", "warning", "A test or property matches no reachable scenario.")
TEST_UNDECIDED = _tests("CAI404", "test-undecided", "error", "The solver could not decide a test's expectation within its time budget.")


#: Every rule by code (the registry), sorted by code.
REGISTRY: Mapping[str, Rule] = MappingProxyType(
    {r.code: r for r in sorted((v for v in dict(globals()).values() if isinstance(v, Rule)), key=lambda r: r.code)}
)
_BY_NAME: Mapping[str, Rule] = MappingProxyType({r.name: r for r in REGISTRY.values()})


def all_rules() -> list[Rule]:
    """Every rule, sorted by code."""
    return list(REGISTRY.values())


def rule_by_code(code: str) -> Rule | None:
    """The rule with this code or name, if any."""
    return REGISTRY.get(code) or _BY_NAME.get(code)


def unsuppressible(code: str) -> bool:
    """Errors that leave a file meaningless (input, syntax, names and resolution): no ``# cai: ignore``,
    ``[tool.cai] ignore``/``severity`` or ``--ignore`` hides or downgrades them (compile would still fail)."""
    rule = REGISTRY.get(code)
    return rule is not None and rule.severity == "error" and rule.group in ("syntax", "names")


def group_of(rule: Rule) -> Group:
    """The group a rule belongs to."""
    return next(g for g in GROUPS if g.name == rule.group)


def rules_of(group: Group) -> list[Rule]:
    """The rules of one group, sorted by code."""
    return [r for r in REGISTRY.values() if r.group == group.name]
