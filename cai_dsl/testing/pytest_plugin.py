"""pytest plugin (registered through the ``pytest11`` entry point).

Fixtures:
- ``load_constitution``: ``load_constitution("path.const")`` resolves a file and
  fails the test with rendered diagnostics if it has errors.
- ``lint_constitution``: runs the full checker and returns its diagnostics.

Marker-free helper: ``assert_constitution_passes(path)`` lints with zero errors and
runs the file's own `test`/`property` blocks, failing with counter-examples.
Every SMT query runs within a :class:`~cai_dsl.semantics.budget.Budget` (default 10 s per
query, 300 s per call); what could hide an error and is not decided in time fails.
"""

from __future__ import annotations

import pytest

from cai_dsl.semantics.budget import Budget
from cai_dsl.testing.strategies import ConstitutionErrors, LoadedConstitution, load


def assert_constitution_passes(path, budget: Budget | None = None) -> LoadedConstitution:
    """Lint ``path`` (errors fail) and run its tests and properties (failures fail), every SMT query within
    ``budget`` (default: a fresh :class:`Budget`); an undecided expectation, or an undecided check that could
    hide an error (CAI404, CAI220), fails too."""
    from cai_dsl.check.checker import check
    from cai_dsl.diagnostics.render import render_text
    from cai_dsl.check.tests import failures_as_diagnostics, run_tests

    loaded = load(path)
    constitution = loaded.constitution
    budget = budget or Budget()
    errors = [d for d in check(constitution, budget=budget, strict_undecided=True) if d.is_error]
    errors += [d for d in failures_as_diagnostics(run_tests(constitution, budget)) if d.is_error]
    if errors:
        pytest.fail(render_text(errors, constitution.sources), pytrace=False)
    return loaded


@pytest.fixture
def load_constitution():
    def _load(path) -> LoadedConstitution:
        try:
            return load(path)
        except ConstitutionErrors as exc:
            pytest.fail(str(exc), pytrace=False)

    return _load


@pytest.fixture
def lint_constitution():
    from cai_dsl.check.checker import check
    from cai_dsl.lang.resolver import resolve

    def _lint(path, deployments=None, budget: Budget | None = None):
        return check(resolve(str(path)), deployments, budget=budget or Budget())

    return _lint
