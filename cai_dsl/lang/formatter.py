"""The canonical formatter for `.const` files (``cai fmt``), in the spirit of black/Cedar.

The layout rules are those of the printer (:mod:`cai_dsl.lang.printer`).

:func:`format_text` refuses to return output that does not re-parse to the same AST
(ignoring layout) with the same comments, or that does not format to itself: it
returns a :class:`FormatterBug` instead, and ``cai fmt`` exits with status 2.
"""

from __future__ import annotations

import difflib
import json
import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, TextIO

from cai_dsl.core.files import write_atomic
from cai_dsl.diagnostics import Diagnostic
from cai_dsl.diagnostics.render import render_text
from cai_dsl.lang import ast
from cai_dsl.lang.parser import parse_text, read_source
from cai_dsl.lang.printer import format_ast

__all__ = ["FormatResult", "FormatterBug", "collect_const_files", "fmt_paths", "format_text", "unified_diff", "verify"]


# ------------------------------------------------------------------ results


@dataclass(frozen=True)
class FormatterBug:
    """The formatter could not print a file faithfully: nothing may be written for it."""

    path: str
    message: str
    detail: str = ""

    def render(self) -> str:
        """A human-readable report for stderr."""
        text = f"error: internal formatter error in {self.path}: {self.message}\n"
        text += "  = note: the file was left unchanged; please report this as a bug in `cai fmt`\n"
        if self.detail:
            text += "".join(f"  | {line}\n" for line in self.detail.splitlines())
        return text


@dataclass(frozen=True)
class FormatResult:
    """The canonical text (None on syntax errors or a formatter bug) and the parse diagnostics."""

    output: str | None
    diagnostics: list[Diagnostic] = field(default_factory=list)
    bug: FormatterBug | None = None

    @property
    def ok(self) -> bool:
        return self.output is not None


# ------------------------------------------------------------------ checked formatting


def _comment_texts(file: ast.ConstitutionFile) -> Counter:
    return Counter(c.text for c in file.comments)


def _ast_diff(before: object, after: object) -> str:
    a = json.dumps(before, indent=1, ensure_ascii=True, sort_keys=True).splitlines()
    b = json.dumps(after, indent=1, ensure_ascii=True, sort_keys=True).splitlines()
    lines = list(difflib.unified_diff(a, b, "input AST", "output AST", lineterm="", n=2))
    return "\n".join(lines[:60] + (["..."] if len(lines) > 60 else []))


def verify(before: ast.ConstitutionFile, output: str, path: str) -> FormatterBug | None:
    """Check that ``output`` re-parses to ``before`` (ignoring layout) with the same
    comments, and formats to itself; a :class:`FormatterBug` says what went wrong."""
    reparsed = parse_text(output, path)
    if not reparsed.ok or reparsed.file is None:
        first = next((d for d in reparsed.diagnostics if d.is_error), None)
        where = f" at line {first.span.line}" if first is not None and first.span is not None else ""
        message = first.message if first is not None else "no AST"
        return FormatterBug(path, f"the formatted text does not parse{where}: {message}")
    old, new = ast.strip_spans(before), ast.strip_spans(reparsed.file)
    if old != new:
        return FormatterBug(path, "the formatted text does not mean the same as the input", _ast_diff(old, new))
    if _comment_texts(before) != _comment_texts(reparsed.file):
        lost = _comment_texts(before) - _comment_texts(reparsed.file)
        extra = _comment_texts(reparsed.file) - _comment_texts(before)
        detail = "".join(f"lost: {t}\n" for t in lost.elements()) + "".join(f"added: {t}\n" for t in extra.elements())
        return FormatterBug(path, "the formatted text does not keep the same comments", detail)
    again = format_ast(reparsed.file)
    if again != output:
        detail = "".join(difflib.unified_diff(output.splitlines(True), again.splitlines(True), "first", "second"))
        return FormatterBug(path, "formatting is not idempotent on this file", detail)
    return None


def format_text(text: str, path: str = "<string>") -> FormatResult:
    """Parse and format ``text``. Syntax errors come back as diagnostics (no output);
    output that fails the self-check comes back as a ``bug`` (no output)."""
    parsed = parse_text(text, path)
    if not parsed.ok or parsed.file is None:
        return FormatResult(None, list(parsed.diagnostics))
    try:
        output = format_ast(parsed.file)
        bug = verify(parsed.file, output, path)
    except Exception as exc:  # a crash in the printer is a formatter bug, never the user's fault
        bug = FormatterBug(path, f"the formatter crashed: {type(exc).__name__}: {exc}")
    if bug is not None:
        return FormatResult(None, list(parsed.diagnostics), bug)
    return FormatResult(output, list(parsed.diagnostics))


# ------------------------------------------------------------------ cai fmt


_SKIP_DIRS = frozenset({"__pycache__", "node_modules"})


def collect_const_files(paths: Iterable[str]) -> list[str]:
    """Files named on the command line, plus every ``*.const`` under named directories
    (sorted; hidden directories and symlinks to files outside the directory are skipped).
    Missing paths are kept, to be reported."""
    found: list[str] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            walked = []
            inside = os.path.realpath(path)
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in _SKIP_DIRS)
                for f in files:
                    # a symlink to a file outside the directory is not the directory's to rewrite
                    real = os.path.realpath(os.path.join(root, f))
                    if f.endswith(".const") and (real == inside or real.startswith(inside.rstrip(os.sep) + os.sep)):
                        walked.append(os.path.join(root, f))
            found.extend(sorted(walked))
        else:
            found.append(str(path))
    seen: set[str] = set()
    return [p for p in found if not (p in seen or seen.add(p))]


def unified_diff(before: str, after: str, path: str) -> str:
    """A unified diff of ``before`` -> ``after`` labelled with ``path``."""
    out = []
    for line in difflib.unified_diff(before.splitlines(True), after.splitlines(True), path, path):
        out.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return "".join(out)


def _has_bom(path: str) -> bool:
    with open(path, "rb") as handle:
        return handle.read(3) == b"\xef\xbb\xbf"


def _plural(n: int) -> str:
    return f"{n} file" + ("" if n == 1 else "s")


def fmt_paths(
    paths: list[str],
    *,
    check: bool = False,
    diff: bool = False,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """``cai fmt [--check] [--diff] PATH...``. Without flags, rewrites files that are not
    canonical (atomically); ``--check`` lists them and ``--diff`` prints a unified diff,
    both writing nothing. Exit status: 0 clean (or reformatted), 1 if a file would
    change under ``--check``/``--diff`` or has errors, 2 on an internal formatter bug."""
    stdout = stdout if stdout is not None else sys.stdout
    stderr = stderr if stderr is not None else sys.stderr
    write = not (check or diff)
    changed = unchanged = errors = bugs = 0
    for path in collect_const_files(paths):
        text, diagnostics = read_source(path)  # regular files only, size checked before reading
        if text is None:
            stderr.write(render_text(diagnostics, {}))
            errors += 1
            continue
        result = format_text(text, path)
        if result.bug is not None:
            stderr.write(result.bug.render())
            bugs += 1
            continue
        if result.output is None:
            stderr.write(render_text(result.diagnostics, {path: text}))
            errors += 1
            continue
        if text == result.output and not _has_bom(path):
            unchanged += 1
            continue
        changed += 1
        if diff:
            stdout.write(unified_diff(text, result.output, path))
        elif check:
            stdout.write(f"would reformat {path}\n")
        if write:
            try:
                write_atomic(path, result.output)
            except OSError as exc:
                stderr.write(f"error: cannot write {path}: {exc.strerror or exc}\n")
                errors += 1
                changed -= 1
                continue
            stdout.write(f"reformatted {path}\n")
    verb = "reformatted" if write else "would be reformatted"
    summary = [f"{_plural(changed)} {verb}", f"{_plural(unchanged)} already formatted"]
    if errors:
        summary.append(f"{_plural(errors)} with errors")
    if bugs:
        summary.append(f"{_plural(bugs)} not formatted because of an internal error")
    stderr.write(", ".join(summary) + "\n")
    if bugs:
        return 2
    if errors or (changed and not write):
        return 1
    return 0
