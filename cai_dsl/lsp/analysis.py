"""The fast half of the analysis, run on every (debounced) change: parse and resolve the
buffer with its imports (unsaved buffers first), name-level diagnostics, the symbol index.

The semantic checks (SMT) run separately and bounded, in :mod:`cai_dsl.lsp.semantic`.
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass, field
from typing import Mapping

from cai_dsl.check.checker import check
from cai_dsl.check.config import LintConfig, load_lint_config
from cai_dsl.core.source import Span
from cai_dsl.diagnostics import Diagnostic
from cai_dsl.lang.resolver import Constitution, resolve
from cai_dsl.lsp.findings import internal_error
from cai_dsl.lsp.index import SymbolIndex, build_index, import_target


@dataclass(frozen=True)
class Analysis:
    """One buffer's state: its text, what parsed, name-level diagnostics, the index."""

    path: str
    version: int | None
    text: str
    constitution: Constitution | None
    index: SymbolIndex | None  # None when the buffer itself did not parse
    diagnostics: tuple[Diagnostic, ...] = ()
    config: LintConfig = field(default_factory=LintConfig)

    @property
    def closure(self) -> frozenset[str]:
        """Every file this buffer loads (itself included), parsed or not."""
        if self.constitution is None:
            return frozenset([self.path])
        return frozenset([self.path, *self.constitution.sources, *self.constitution.files])

    @property
    def checkable(self) -> bool:
        """Whether the semantic checks can say anything (they need an error-free resolution)."""
        return self.constitution is not None and not self.constitution.has_errors

    def deployment_spans(self) -> dict[str, Span]:
        if self.constitution is None:
            return {}
        return {name: decl.name.span for name, decl in self.constitution.deployment_decls.items()}

    def import_anchors(self) -> dict[str, Span]:
        """For each imported file, the root's `import` statement that (transitively) loads it."""
        c = self.constitution
        root = c.files.get(self.path) if c is not None else None
        if root is None:
            return {}
        anchors: dict[str, Span] = {}
        for imp in root.imports:
            queue = deque([import_target(self.path, imp)])
            while queue:
                target = queue.popleft()
                if target in anchors or target == self.path:
                    continue
                anchors[target] = imp.span
                file = c.files.get(target)
                if file is not None:
                    queue.extend(import_target(target, i) for i in file.imports)
        return anchors


def lint_config_for(path: str) -> LintConfig:
    """``[tool.cai]`` of the nearest pyproject.toml above the file (as `cai lint` run there)."""
    try:
        return load_lint_config(os.path.dirname(path) or ".")
    except Exception:  # an unreadable configuration must not stop the editor
        return LintConfig()


def analyze(path: str, text: str, overlay: Mapping[str, str], version: int | None = None) -> Analysis:
    """Parse and resolve ``text`` as the file ``path``; never raises."""
    config = lint_config_for(path)
    try:
        constitution = resolve(path, text, overlay)
        diagnostics = config.apply(check(constitution, semantic=False, operational=False))
        index = build_index(constitution) if path in constitution.files else None
    except Exception as exc:  # RecursionError on user-controlled depth, a bug: reported, not fatal
        return Analysis(path, version, text, None, None, (internal_error(path, exc),), config)
    return Analysis(path, version, text, constitution, index, tuple(diagnostics), config)
