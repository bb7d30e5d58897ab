"""The architecture as tests: the layer contract, module size, no private imports, no guarded imports.

See docs/architecture.md. Each test names every offender, so a failure says what to fix.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "cai_dsl"
MAX_LINES = 600


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _is_cai_module(name: str | None) -> bool:
    return name is not None and (name == "cai_dsl" or name.startswith("cai_dsl."))


def test_layer_contract_holds():
    """`lint-imports` (pyproject.toml [tool.importlinter]): each stage imports only the stages below it."""
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    assert exe, "import-linter is not installed (pip install -e '.[dev]')"
    result = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_no_module_over_600_lines():
    too_long = {}
    for path in _modules():
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_LINES:
            too_long[_rel(path)] = lines
    assert not too_long, f"modules over {MAX_LINES} lines: {too_long}"


def test_no_imports_of_private_names():
    """``from cai_dsl.x import _y`` reaches into another module's internals (a module's own names are fine)."""
    offenders = []
    for path in _modules():
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.ImportFrom) and (node.level or _is_cai_module(node.module)):
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        offenders.append(f"{_rel(path)}:{node.lineno}: from {'.' * node.level}{node.module or ''} import {alias.name}")
    assert not offenders, "imports of private names:\n" + "\n".join(offenders)


def _imports_cai(body: list[ast.stmt]) -> bool:
    for stmt in body:
        for node in ast.walk(stmt):
            if isinstance(node, ast.ImportFrom) and (node.level or _is_cai_module(node.module)):
                return True
            if isinstance(node, ast.Import) and any(_is_cai_module(a.name) for a in node.names):
                return True
            if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module":
                if node.args and isinstance(node.args[0], ast.Constant | ast.JoinedStr):
                    text = node.args[0].value if isinstance(node.args[0], ast.Constant) else ast.unparse(node.args[0])
                    if "cai_dsl" in str(text):
                        return True
    return False


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    names = []
    if handler.type is not None:
        types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
        names = [t.id if isinstance(t, ast.Name) else getattr(t, "attr", "") for t in types]
    return any(n in ("ImportError", "ModuleNotFoundError") for n in names)


def test_no_guarded_imports_of_cai_modules():
    """``try: import cai_dsl.x / except ImportError`` hides a broken module; every stage always exists."""
    offenders = []
    for path in _modules():
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.Try) and any(_catches_import_error(h) for h in node.handlers):
                if _imports_cai(node.body):
                    offenders.append(f"{_rel(path)}:{node.lineno}")
    assert not offenders, "try/except ImportError around cai_dsl imports:\n" + "\n".join(offenders)


def test_every_package_is_listed_for_installation():
    """pyproject.toml lists packages explicitly (the data packages are mapped from top-level folders), so a
    new sub-package that is not listed would be missing from a wheel."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in PACKAGE.rglob("__init__.py")}
    assert not found - listed, f"add to [tool.setuptools] packages: {sorted(found - listed)}"
