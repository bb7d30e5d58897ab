"""The project a constitution belongs to: its root, where imports may come from, input limits.

The project root is the nearest directory at or above the file named on the command line that holds
``pyproject.toml`` or ``.git`` (else that file's directory). An import resolves only to a regular
``.const`` file under the root, the packaged standard library, or a directory of ``[tool.cai]
import-paths`` (relative to the ``pyproject.toml``). ``[tool.cai]`` also sets the input limits:
``max-file-mib``, ``max-facets`` and ``max-facet-values``.
"""

from __future__ import annotations

import importlib.resources
import os
import stat
import tomllib
from dataclasses import dataclass
from typing import Mapping

from cai_dsl.diagnostics import Diagnostic, rules
from cai_dsl.lang import ast
from cai_dsl.lang.grammar import MAX_FILE_BYTES

#: Default limits on a constitution's vocabulary (``[tool.cai] max-facets`` / ``max-facet-values``).
MAX_FACETS = 256
MAX_FACET_VALUES = 64
#: The longest ``extends`` chain a deployment may have.
MAX_EXTENDS_DEPTH = 64


def stdlib_path() -> str:
    """The packaged standard library of constitutions (resolved)."""
    return os.path.realpath(str(importlib.resources.files("cai_dsl.stdlib")))


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


@dataclass(frozen=True)
class Project:
    """Where imports may resolve to and the input limits, for one root file."""

    root: str
    import_roots: tuple[str, ...]
    max_file_bytes: int = MAX_FILE_BYTES
    max_facets: int = MAX_FACETS
    max_facet_values: int = MAX_FACET_VALUES

    def import_problem(self, path: str) -> str | None:
        """Why ``path`` may not be imported (a sentence naming the path), or None when it may."""
        real = os.path.realpath(path)
        if not real.endswith(".const"):
            return f"`{path}` is not a `.const` file"
        if not any(_inside(real, folder) for folder in self.import_roots):
            return (
                f"`{path}` is outside the project (`{self.root}`), the standard library and the "
                "configured `[tool.cai] import-paths`"
            )
        try:
            mode = os.stat(real).st_mode
        except OSError:
            return None  # missing: reported as not found
        if not stat.S_ISREG(mode):
            return f"`{path}` is not a regular file"
        return None


def project_root(path: str) -> str:
    """The directory holding ``pyproject.toml`` or ``.git`` at or above ``path``'s directory, else that directory."""
    start = os.path.dirname(os.path.abspath(path))
    folder = start
    while True:
        if os.path.isfile(os.path.join(folder, "pyproject.toml")) or os.path.exists(os.path.join(folder, ".git")):
            return folder
        parent = os.path.dirname(folder)
        if parent == folder:
            return start
        folder = parent


def _tool_cai(root: str) -> dict:
    try:
        with open(os.path.join(root, "pyproject.toml"), "rb") as handle:
            data = tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return {}
    section = data.get("tool", {}).get("cai", {})
    return section if isinstance(section, dict) else {}


def _positive_int(value: object, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else default


def load_project(path: str) -> Project:
    """The :class:`Project` of the root file ``path`` (its ``[tool.cai]`` read once)."""
    root = project_root(path)
    section = _tool_cai(root)
    extra = section.get("import-paths", [])
    extra = [p for p in extra if isinstance(p, str)] if isinstance(extra, list) else []
    roots = (os.path.realpath(root), stdlib_path(), *(os.path.realpath(os.path.join(root, p)) for p in extra))
    mib = section.get("max-file-mib")
    max_bytes = int(mib * 2**20) if isinstance(mib, (int, float)) and not isinstance(mib, bool) and mib > 0 else MAX_FILE_BYTES
    return Project(
        root=root,
        import_roots=roots,
        max_file_bytes=max_bytes,
        max_facets=_positive_int(section.get("max-facets"), MAX_FACETS),
        max_facet_values=_positive_int(section.get("max-facet-values"), MAX_FACET_VALUES),
    )


def vocabulary_limits(facets: Mapping[str, ast.Facet], project: Project) -> list[Diagnostic]:
    """CAI123 when there are more facets, or more values in one facet, than the project allows."""
    out = []
    if len(facets) > project.max_facets:
        first = next(iter(facets.values()))
        out.append(
            rules.LIMIT_EXCEEDED(
                f"{len(facets)} facets; the limit is {project.max_facets}",
                first.name.span,
                help="merge facets that describe the same dimension, or raise `[tool.cai] max-facets`",
            )
        )
    for name, facet in facets.items():
        if len(facet.values) > project.max_facet_values:
            out.append(
                rules.LIMIT_EXCEEDED(
                    f"facet `{name}` has {len(facet.values)} values; the limit is {project.max_facet_values}",
                    facet.name.span,
                    help="group the values into coarser ones, or raise `[tool.cai] max-facet-values`",
                )
            )
    return out
