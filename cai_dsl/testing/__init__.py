"""Property-testing support for constitutions: hypothesis strategies and a pytest plugin.

    from hypothesis import given
    from cai_dsl.testing import load, scenarios

    constitution = load("constitutions/harmless-helpful.const")

    @given(scenarios(constitution, "base"))
    def test_benign_never_refused(scenario):
        policy = constitution.policy("base", scenario)
        if scenario["intent"] == "benign":
            assert policy.decisions["refuse"].status != "required"

See docs/testing.md.
"""

from cai_dsl.testing.strategies import LoadedConstitution, constitution_sources, load, scenarios

__all__ = ["LoadedConstitution", "constitution_sources", "load", "scenarios"]
