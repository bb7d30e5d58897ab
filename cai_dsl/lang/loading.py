"""Loading: a root file and, transitively, every file it imports (relative to the
importing file; each file once; cycles, missing files and imports from outside the
project are diagnostics)."""

from __future__ import annotations

import os
from typing import Mapping

from cai_dsl.diagnostics import Diagnostic, rules
from cai_dsl.lang import ast
from cai_dsl.lang.parser import parse_file, parse_text
from cai_dsl.lang.project import Project, load_project


def load_closure(
    root: str, root_text: str | None, overlay: Mapping[str, str] | None = None, project: Project | None = None
) -> tuple[dict[str, ast.ConstitutionFile], dict[str, str], list[Diagnostic]]:
    """Parse ``root`` and every file it imports, depth first, each file once; a file
    whose path is in ``overlay`` is read from there (an editor's unsaved buffer).

    An import must name a regular ``.const`` file that ``project`` allows (under the project
    root, the standard library or a configured import path): anything else is an error that
    names the path and never reads the file. Iterative: import chains of any depth."""
    project = project or load_project(root)
    files: dict[str, ast.ConstitutionFile] = {}
    sources: dict[str, str] = {}
    diagnostics: list[Diagnostic] = []
    done: set[str] = set()
    current: list[str] = []  # the chain of importers of the file being loaded
    on_path: dict[str, int] = {}  # realpath -> its index in ``current``
    # an explicit depth-first walk: ("enter", path, import, in-memory text) and ("exit", realpath) items;
    # children are pushed in reverse so that files load in the same order as a recursive walk
    stack: list[tuple] = [("enter", root, None, root_text)]
    while stack:
        item = stack.pop()
        if item[0] == "exit":
            del on_path[item[1]]
            current.pop()
            continue
        _, path, via, text = item
        k = os.path.realpath(path)
        if k in on_path:
            loop = [*current[on_path[k] :], path]
            diagnostics.append(
                rules.IMPORT_CYCLE(
                    "import cycle: " + " -> ".join(_shown(p) for p in loop),
                    via.span if via else None,
                    help="move the shared declarations into a file that both import",
                )
            )
            continue
        if k in done:
            continue
        done.add(k)
        if text is None and via is not None:
            problem = _import_problem(project, path, tuple(current), via)
            if problem is not None:
                diagnostics.append(problem)
                continue
        result = parse_text(text, path) if text is not None else parse_file(path, project.max_file_bytes)
        sources[path] = result.text
        diagnostics.extend(result.diagnostics)
        if result.file is None:
            continue
        files[path] = result.file
        on_path[k] = len(current)
        current.append(path)
        stack.append(("exit", k))
        for imp in reversed(result.file.imports):
            target = os.path.normpath(os.path.join(os.path.dirname(path), imp.path.value))
            stack.append(("enter", target, imp, overlay.get(target) if overlay else None))
    # root first, then imports in load order
    ordered = {root: files[root]} if root in files else {}
    ordered.update(files)
    return ordered, sources, diagnostics


def _shown(path: str) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:  # another drive (Windows)
        return path


def _import_problem(project: Project, path: str, chain: tuple[str, ...], via: ast.Import) -> Diagnostic | None:
    """A diagnostic when ``path`` may not be imported or does not exist (naming it, never its content)."""
    problem = project.import_problem(path)
    if problem is not None:
        return rules.IMPORT_OUTSIDE_PROJECT(
            f"cannot import `{via.path.value}`: {problem}",
            via.path.span,
            help="imports resolve to `.const` files under the project root (the directory holding "
            "`pyproject.toml` or `.git`), the standard library, or `[tool.cai] import-paths`",
        )
    if not os.path.isfile(path):
        chain_text = " -> ".join(_shown(p) for p in [*chain, path])
        return rules.IMPORT_NOT_FOUND(
            f"imported file `{via.path.value}` not found ({chain_text})",
            via.path.span,
            help="import paths are relative to the importing file",
        )
    return None
