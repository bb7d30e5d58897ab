"""The language server: pygls wiring, the per-buffer analysis schedule, the requests.

Every open buffer is analysed as a root file, like `cai lint FILE`, with the other open
buffers standing in for their files on disk. A change re-analyses the buffer and every
open buffer that loads it. The fast analysis (parse, resolve, names) runs in a thread a
moment after typing stops; the semantic checks follow in :class:`SemanticRunner`.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import os
import re
from concurrent.futures import ThreadPoolExecutor

from lsprotocol import types
from pygls.lsp.server import LanguageServer
from pygls.uris import to_fs_path

from cai_dsl.diagnostics import Diagnostic
from cai_dsl.lang import ast
from cai_dsl.lsp.actions import formatting_edits, priority_actions
from cai_dsl.lsp.analysis import Analysis, analyze
from cai_dsl.lsp.completion import complete
from cai_dsl.lsp.convert import Converter
from cai_dsl.lsp.hover import hover_text
from cai_dsl.lsp.index import Key, Occurrence
from cai_dsl.lsp.positions import LineIndex
from cai_dsl.lsp.semantic import Budget, Job, JobResult, SemanticRunner
from cai_dsl.lsp.symbols import document_symbols

NAME = "cai-lsp"
SYNTAX_DELAY_S = 0.05
MAX_PUBLISHED = 500
_FAST_CODE = re.compile(r"^CAI[01]")
_WORD_AT = re.compile(r"#?[A-Za-z_][\w.]*\*?|[\w.]*\*")
_TEST_IN = re.compile(r"^\s*(?:test|property)\s+\"")  # a glob there matches deployments


def _path(uri: str) -> str:
    return os.path.normpath(os.path.abspath(to_fs_path(uri) or uri))


class Session:
    """The state of one client connection: analyses, semantic results, schedules."""

    def __init__(self, server: LanguageServer, budget: Budget):
        self.server = server
        self.budget = budget
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cai-analysis")
        self.runner: SemanticRunner | None = None
        self.analyses: dict[str, Analysis] = {}
        self.good: dict[str, Analysis] = {}  # the last analysis whose buffer parsed
        self.semantic: dict[str, tuple[int, JobResult]] = {}
        self.generation: dict[str, int] = {}
        self.analysed: dict[str, int] = {}
        self.tasks: dict[str, asyncio.Task] = {}

    # ------------------------------------------------------------ helpers

    @property
    def encoding(self) -> str:
        enc = self.server.workspace.position_encoding or "utf-16"
        return str(getattr(enc, "value", enc))

    def text(self, uri: str) -> str:
        return self.server.workspace.get_text_document(uri).source

    def overlay(self) -> dict[str, str]:
        return {_path(uri): self.text(uri) for uri in self.generation}

    def current(self, uri: str) -> Analysis | None:
        a = self.analyses.get(uri)
        return a if a is not None and a.index is not None else self.good.get(uri)

    # ------------------------------------------------------------ scheduling

    def touch(self, uri: str) -> None:
        """Re-analyse ``uri`` and every open buffer that loads it."""
        path = _path(uri)
        importers = [u for u, a in self.analyses.items() if u != uri and path in a.closure]
        for u in [uri, *importers]:
            if u not in self.generation and u != uri:
                continue
            self.generation[u] = self.generation.get(u, 0) + 1
            task = self.tasks.get(u)
            if task is None or task.done():
                self.tasks[u] = asyncio.get_running_loop().create_task(self._analyse(u))

    async def _analyse(self, uri: str) -> None:
        loop = asyncio.get_running_loop()
        while uri in self.generation:
            gen = self.generation[uri]
            await asyncio.sleep(SYNTAX_DELAY_S)
            if self.generation.get(uri) != gen:
                continue
            doc = self.server.workspace.get_text_document(uri)
            overlay = self.overlay()
            analysis = await loop.run_in_executor(self.pool, analyze, _path(uri), doc.source, overlay, doc.version)
            if self.generation.get(uri) != gen:
                continue
            self.analyses[uri], self.analysed[uri] = analysis, gen
            if analysis.index is not None:
                self.good[uri] = analysis
            self.publish(uri)
            if analysis.checkable:
                self._runner().submit(Job(analysis.path, gen, self.overlay(), analysis.deployment_spans()))
            return

    def _runner(self) -> SemanticRunner:
        if self.runner is None:
            loop = asyncio.get_running_loop()
            self.runner = SemanticRunner(lambda r: loop.call_soon_threadsafe(self._semantic_done, r), self.budget)
        return self.runner

    def _semantic_done(self, result: JobResult) -> None:
        for uri, a in self.analyses.items():
            if a.path == result.job.key and self.analysed.get(uri) == result.job.version:
                self.semantic[uri] = (result.job.version, result)
                self.publish(uri)

    def publish(self, uri: str) -> None:
        a = self.analyses.get(uri)
        if a is None:
            return
        gen, result = self.semantic.get(uri, (None, None))
        if result is not None and gen == self.analysed.get(uri):
            found: list[Diagnostic] = list(result.diagnostics)
        else:  # until the new semantic results arrive, keep showing the previous ones
            stale = [d for d in result.diagnostics if not _FAST_CODE.match(d.code)] if result and a.checkable else []
            found = [*a.diagnostics, *stale]
        convert, anchors = Converter(a, self.encoding), a.import_anchors()
        shown = [convert.diagnostic(d, anchors) for d in found[:MAX_PUBLISHED]]
        self.server.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=uri, diagnostics=shown, version=a.version)
        )

    # ------------------------------------------------------------ document sync

    def did_open(self, params: types.DidOpenTextDocumentParams) -> None:
        self.generation.setdefault(params.text_document.uri, 0)
        self.touch(params.text_document.uri)

    def did_change(self, params: types.DidChangeTextDocumentParams) -> None:
        self.touch(params.text_document.uri)

    def did_save(self, params: types.DidSaveTextDocumentParams) -> None:
        self.touch(params.text_document.uri)

    def did_close(self, params: types.DidCloseTextDocumentParams) -> None:
        uri = params.text_document.uri
        for table in (self.generation, self.analyses, self.good, self.semantic, self.analysed):
            table.pop(uri, None)
        if self.runner is not None:
            self.runner.forget(_path(uri))
        self.server.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=uri, diagnostics=[]))
        for u, a in list(self.analyses.items()):
            if _path(uri) in a.closure:
                self.touch(u)

    def did_change_watched(self, params: types.DidChangeWatchedFilesParams) -> None:
        for change in params.changes:
            path = _path(change.uri)
            for u, a in list(self.analyses.items()):
                if path in a.closure:
                    self.touch(u)

    # ------------------------------------------------------------ navigation

    def _locate(self, uri: str, position: types.Position) -> tuple[Analysis, Key, types.Range | None] | None:
        """The name under the cursor; from the word alone when the buffer does not parse now."""
        a = self.analyses.get(uri)
        if a is not None and a.index is not None:
            line, column = LineIndex(a.text, self.encoding).point(position)
            occ: Occurrence | None = a.index.at(a.path, line, column)
            return (a, occ.key, Converter(a, self.encoding).range(occ.span)) if occ else None
        good = self.good.get(uri)
        if good is None:
            return None
        lines = LineIndex(self.text(uri), self.encoding)
        row, column = lines.point(position)
        text = lines.lines[row - 1]
        word = next((m.group(0) for m in _WORD_AT.finditer(text) if m.start() <= column - 1 <= m.end()), None)
        if not word:
            return None
        if word.startswith("#"):
            return good, ("tag", word[1:]), None
        if word.endswith("*"):
            return good, ("deployments" if _TEST_IN.match(text) else "glob", word), None
        for kind in ("principle", "behavior", "facet", "group", "deployment", "authority"):
            if word in good.index.names(kind):
                return good, (kind, word), None
        return None

    def hover(self, params: types.HoverParams) -> types.Hover | None:
        found = self._locate(params.text_document.uri, params.position)
        if found is None:
            return None
        a, key, where = found
        text = hover_text(a.index, key)
        if text is None:
            return None
        return types.Hover(contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value=text), range=where)

    def definition(self, params: types.DefinitionParams) -> list[types.Location]:
        found = self._locate(params.text_document.uri, params.position)
        if found is None:
            return []
        a, key, _ = found
        convert = Converter(a, self.encoding)
        return [convert.location(span) for span in a.index.definitions(key)]

    def references(self, params: types.ReferenceParams) -> list[types.Location]:
        found = self._locate(params.text_document.uri, params.position)
        if found is None:
            return []
        _, key, _ = found
        out: dict[tuple, types.Location] = {}
        for a in {id(x): x for x in [*self.analyses.values(), *self.good.values()] if x.index}.values():
            convert = Converter(a, self.encoding)
            for span in a.index.references(key, params.context.include_declaration):
                out.setdefault((span.file, span.line, span.column), convert.location(span))
        return list(out.values())

    def symbols(self, params: types.DocumentSymbolParams) -> list[types.DocumentSymbol]:
        a = self.current(params.text_document.uri)
        if a is None or a.constitution is None or a.path not in a.constitution.files:
            return []
        return document_symbols(a.constitution.files[a.path], Converter(a, self.encoding))

    def completion(self, params: types.CompletionParams) -> types.CompletionList:
        lines = LineIndex(self.text(params.text_document.uri), self.encoding)
        row, column = lines.point(params.position)
        a = self.current(params.text_document.uri)
        items = complete(lines.lines[row - 1][: column - 1], a.index if a else None)
        return types.CompletionList(is_incomplete=False, items=items)

    # ------------------------------------------------------------ edits

    def formatting(self, params: types.DocumentFormattingParams) -> list[types.TextEdit]:
        uri = params.text_document.uri
        return formatting_edits(self.text(uri), _path(uri), self.encoding)

    def code_action(self, params: types.CodeActionParams) -> list[types.CodeAction]:
        uri = params.text_document.uri
        a = self.analyses.get(uri)
        file: ast.ConstitutionFile | None = None
        if a is not None and a.constitution is not None:
            file = a.constitution.files.get(a.path)
        return priority_actions(uri, file, self.text(uri), list(params.context.diagnostics), self.encoding)

    # ------------------------------------------------------------ lifecycle

    def initialize(self, params: types.InitializeParams) -> None:
        options = params.initialization_options if isinstance(params.initialization_options, dict) else {}
        budget = options.get("budget")
        if isinstance(budget, (int, float)) and budget > 0:
            self.budget = Budget(run_s=float(budget), query_s=float(budget))
        elif isinstance(budget, dict):
            run_s = float(budget.get("run", self.budget.run_s))
            self.budget = Budget(run_s=run_s, query_s=float(budget.get("query", self.budget.query_s)))

    def initialized(self, params: types.InitializedParams) -> None:
        """Ask the client to report changes of `.const` files on disk (imports of open buffers)."""
        workspace = self.server.client_capabilities.workspace
        watched = workspace.did_change_watched_files if workspace else None
        if watched is not None and watched.dynamic_registration:
            options = types.DidChangeWatchedFilesRegistrationOptions(
                watchers=[types.FileSystemWatcher(glob_pattern="**/*.const")]
            )
            registration = types.Registration(
                id="cai-const-files", method=types.WORKSPACE_DID_CHANGE_WATCHED_FILES, register_options=options
            )
            self.server.client_register_capability(types.RegistrationParams(registrations=[registration]))

    def shutdown(self, params=None) -> None:
        if self.runner is not None:
            self.runner.close()
            self.runner = None
        self.pool.shutdown(wait=False, cancel_futures=True)


def _version() -> str:
    try:
        return importlib.metadata.version("cai-dsl")
    except importlib.metadata.PackageNotFoundError:
        return "0"


def _plain(method):
    """A plain function around a bound method (pygls marks handlers with attributes)."""

    def handler(*args):
        return method(*args)

    return handler


def build_server(budget: Budget = Budget()) -> LanguageServer:
    """A language server for `.const` files, its features registered (nothing global)."""
    server = LanguageServer(NAME, _version(), text_document_sync_kind=types.TextDocumentSyncKind.Full)
    session = Session(server, budget)
    features = {
        types.INITIALIZE: session.initialize,
        types.INITIALIZED: session.initialized,
        types.SHUTDOWN: session.shutdown,
        types.TEXT_DOCUMENT_DID_OPEN: session.did_open,
        types.TEXT_DOCUMENT_DID_CHANGE: session.did_change,
        types.TEXT_DOCUMENT_DID_SAVE: session.did_save,
        types.TEXT_DOCUMENT_DID_CLOSE: session.did_close,
        types.WORKSPACE_DID_CHANGE_WATCHED_FILES: session.did_change_watched,
        types.TEXT_DOCUMENT_HOVER: session.hover,
        types.TEXT_DOCUMENT_DEFINITION: session.definition,
        types.TEXT_DOCUMENT_REFERENCES: session.references,
        types.TEXT_DOCUMENT_DOCUMENT_SYMBOL: session.symbols,
        types.TEXT_DOCUMENT_FORMATTING: session.formatting,
    }
    for method, handler in features.items():
        server.feature(method)(_plain(handler))
    server.feature(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions(trigger_characters=[" ", "{", ",", "#"]))(
        _plain(session.completion)
    )
    server.feature(
        types.TEXT_DOCUMENT_CODE_ACTION, types.CodeActionOptions(code_action_kinds=[types.CodeActionKind.QuickFix])
    )(_plain(session.code_action))
    return server


def serve(tcp_port: int | None = None, budget_s: float | None = None) -> None:
    """Run the server on stdio, or on ``127.0.0.1:tcp_port``, until the client exits;
    ``budget_s`` bounds the semantic checks of one file (and of one deployment)."""
    server = build_server(Budget(budget_s, budget_s) if budget_s else Budget())
    if tcp_port is None:
        server.start_io()
    else:
        server.start_tcp("127.0.0.1", tcp_port)
