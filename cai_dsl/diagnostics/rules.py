"""The catalogue of diagnostics. Codes are stable: never renumber, only add.

Ranges: CAI0xx input and syntax, CAI1xx names and resolution, CAI2xx semantic
(SMT) checks, CAI3xx operationalizability lints, CAI4xx tests and properties.
Each rule has a page at ``docs/rules/<CODE>.md``.
"""

from __future__ import annotations

from cai_dsl.diagnostics.base import Rule

# -- input and syntax
SYNTAX_ERROR = Rule("CAI001", "syntax-error", "error", "The file does not follow the grammar.")
UNTERMINATED_STRING = Rule("CAI002", "unterminated-string", "error", "A string literal is not closed.")
INVALID_ENCODING = Rule("CAI003", "invalid-encoding", "error", "The file is not valid UTF-8 text.")
NESTING_TOO_DEEP = Rule("CAI004", "nesting-too-deep", "error", "An expression is nested too deeply.")
INVALID_LITERAL = Rule("CAI005", "invalid-literal", "error", "A literal is malformed (escape, number, option).")
DUPLICATE_FIELD = Rule("CAI006", "duplicate-field", "error", "A field is given twice in one block.")
UNREADABLE_FILE = Rule("CAI007", "unreadable-file", "error", "A file cannot be read.")
INVALID_NAME = Rule("CAI008", "invalid-name", "error", "A dotted name is used where a simple name is required.")
FILE_TOO_LARGE = Rule("CAI009", "file-too-large", "error", "A file exceeds the size the parser accepts.")

# -- names and resolution
IMPORT_NOT_FOUND = Rule("CAI101", "import-not-found", "error", "An imported file does not exist.")
IMPORT_CYCLE = Rule("CAI102", "import-cycle", "error", "Files import each other in a cycle.")
UNDEFINED_PRINCIPLE = Rule("CAI103", "undefined-principle", "error", "A principle id is not defined.")
UNDEFINED_FACET = Rule("CAI104", "undefined-facet", "error", "A facet is not defined.")
UNDEFINED_FACET_VALUE = Rule("CAI105", "undefined-facet-value", "error", "A value is not in its facet's domain.")
UNDEFINED_BEHAVIOR = Rule("CAI106", "undefined-behavior", "error", "A behavior is not defined.")
UNDEFINED_NAME = Rule("CAI107", "undefined-name", "error", "A name is neither a principle nor a group.")
UNDEFINED_DEPLOYMENT = Rule("CAI108", "undefined-deployment", "error", "A deployment is not defined.")
DUPLICATE_DEFINITION = Rule("CAI109", "duplicate-definition", "error", "A name is defined twice.")
ORDERED_COMPARISON_ON_UNORDERED = Rule(
    "CAI110", "ordered-comparison-on-unordered-facet", "error", "<, <=, >, >= used on an unordered facet."
)
SELECTOR_MATCHES_NOTHING = Rule("CAI111", "selector-matches-nothing", "warning", "A glob, tag or group selects no principle.")
UNUSED_FACET = Rule("CAI112", "unused-facet", "warning", "A facet is never used in a condition.")
UNUSED_BEHAVIOR = Rule("CAI113", "unused-behavior", "warning", "A behavior is never required, forbidden or preferred.")
UNKNOWN_SETTING = Rule("CAI114", "unknown-setting", "error", "A `set` key the compiler does not know.")
DEPLOYMENT_CYCLE = Rule("CAI115", "deployment-cycle", "error", "Deployments extend each other in a cycle.")
INVALID_SETTING_VALUE = Rule("CAI116", "invalid-setting-value", "error", "A `set` value has the wrong type or range.")
DUPLICATE_VALUE = Rule("CAI117", "duplicate-value", "error", "A facet lists the same value twice, or an exclusive set a behavior twice.")
GROUP_CYCLE = Rule("CAI118", "group-cycle", "error", "Groups contain each other in a cycle.")
INVALID_CONFLICT_WINNER = Rule("CAI119", "invalid-conflict-winner", "error", "A conflict rule picks a principle outside its pair.")
EXCLUDED_PRINCIPLE_OVERRIDDEN = Rule(
    "CAI120", "override-of-excluded", "warning", "A deployment overrides a principle it does not include."
)

# -- semantic checks (decided with an SMT solver)
CONTRADICTION = Rule("CAI201", "contradiction", "error", "Two active principles clash and nothing resolves it.")
PRIORITY_CYCLE = Rule("CAI202", "priority-cycle", "error", "The priority order has a cycle.")
CONFLICT_GAP = Rule("CAI203", "conflict-rule-gap", "error", "A conflict rule leaves part of its clash unresolved.")
UNSATISFIABLE_ASSUMPTION = Rule("CAI204", "unsatisfiable-assumption", "error", "A deployment's assumptions admit no scenario.")
NEVER_ACTIVE = Rule("CAI205", "never-active", "warning", "A principle is active in no reachable scenario.")
SHADOWED = Rule("CAI206", "shadowed-principle", "warning", "A principle loses every clash it takes part in.")
UNREACHABLE_BRANCH = Rule("CAI207", "unreachable-conflict-branch", "warning", "A conflict-rule branch can never decide.")
SELF_CLASH = Rule("CAI208", "self-contradictory-principle", "error", "A principle requires and forbids the same behavior.")

# -- operationalizability
VAGUE_WORDING = Rule("CAI301", "vague-wording", "warning", "Wording names no observable criterion.")
COMPARE_NOT_A_QUESTION = Rule("CAI302", "compare-not-a-question", "warning", "A compare prompt does not ask to choose between responses.")
COMPOUND_PRINCIPLE = Rule("CAI303", "compound-principle", "warning", "A principle demands several unrelated things.")
NEGATIVE_ONLY = Rule("CAI304", "negative-only-framing", "warning", "A principle only forbids, with nothing to prefer.")
UNPAIRED_CRITIQUE = Rule("CAI305", "unpaired-critique-revise", "warning", "A critique without a revise, or the reverse.")
NO_EXAMPLES = Rule("CAI306", "no-examples", "warning", "A principle has no few-shot examples.")
OVER_REFUSAL_RISK = Rule("CAI307", "over-refusal-risk", "warning", "A harm-minimizing principle has no helpfulness counterweight.")
NO_PROMPT_FORMS = Rule("CAI308", "no-prompt-forms", "warning", "A principle has no critique, revise or compare prompt.")
EMPIRICAL_INCONSISTENCY = Rule("CAI309", "empirical-inconsistency", "warning", "The model cannot evaluate a compare principle consistently.")

# -- tests and properties
TEST_FAILED = Rule("CAI401", "test-failed", "error", "A test's expectation does not hold.")
PROPERTY_REFUTED = Rule("CAI402", "property-refuted", "error", "A property has a counter-example.")
VACUOUS_TEST = Rule("CAI403", "vacuous-test", "warning", "A test or property matches no reachable scenario.")


def all_rules() -> list[Rule]:
    """Every rule in this module, sorted by code."""
    return sorted((v for v in globals().values() if isinstance(v, Rule)), key=lambda r: r.code)


def rule_by_code(code: str) -> Rule | None:
    for rule in all_rules():
        if rule.code == code or rule.name == code:
            return rule
    return None
