"""One CaiError base; one map from an exception to an exit code."""

import pytest

from cai_dsl.core.errors import CaiError, exit_code_for


def _project_exceptions():
    from cai_dsl.check.explain import ScenarioError
    from cai_dsl.compile.compiler import CompileError
    from cai_dsl.compile.interop import InteropError
    from cai_dsl.compile.targets import TargetError
    from cai_dsl.core.hashing import RunMismatch
    from cai_dsl.core.records import RecordError
    from cai_dsl.diagnostics import DiagnosticError
    from cai_dsl.run.backends.base import BackendError
    from cai_dsl.run.errors import RLAIFError, SFTError, SLCompileError, SLError
    from cai_dsl.run.loading import ModelError
    from cai_dsl.testing.strategies import ConstitutionErrors

    return {
        ScenarioError: 2, CompileError: 1, InteropError: 2, TargetError: 2, RunMismatch: 2, RecordError: 2,
        DiagnosticError: 1, BackendError: 2, RLAIFError: 2, SFTError: 2, SLCompileError: 1, SLError: 2,
        ModelError: 2, ConstitutionErrors: 1,
    }


def test_every_project_exception_is_a_cai_error_with_its_exit_code():
    for cls, code in _project_exceptions().items():
        assert issubclass(cls, CaiError), cls
        assert cls.exit_code == code, cls


def test_exit_codes():
    assert exit_code_for(CaiError("bad input")) == 2
    assert exit_code_for(RuntimeError("bug")) == 2
    assert exit_code_for(KeyboardInterrupt()) == 130
    assert exit_code_for(SystemExit(1)) == 1 and exit_code_for(SystemExit(None)) == 0

    class Diagnostics(CaiError):
        exit_code = 1

    assert exit_code_for(Diagnostics()) == 1


def test_scenario_error_is_still_a_value_error():
    from cai_dsl.check.explain import ScenarioError

    with pytest.raises(ValueError):
        raise ScenarioError("unknown facet")
