"""Semantic checks off the typing path: debounced, in a worker process, within a budget.

:class:`SemanticRunner` owns one manager thread and one worker process
(:mod:`cai_dsl.lsp.worker`). A submitted job waits ``delay`` seconds (a newer job for the
same file replaces it), then the whole file is checked as `cai lint` does, within
``Budget.run_s``. When that runs out the worker is killed (the solver cannot be
interrupted otherwise) and the file is checked again piece by piece: names and
wording lints, then each deployment within ``Budget.query_s``; a deployment that runs
out gets a "could not decide within N s" information diagnostic. A job superseded
while it runs is abandoned (its worker killed), so a slow check never delays the next.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from cai_dsl.core.errors import CaiError
from cai_dsl.core.source import Span
from cai_dsl.diagnostics import Diagnostic
from cai_dsl.diagnostics.dedupe import dedupe
from cai_dsl.lsp.findings import internal_error, undecided

STARTUP_TIMEOUT_S = 60.0
_POLL_S = 0.02


@dataclass(frozen=True)
class Budget:
    """Seconds for the whole check of one file, and for one deployment after that ran out."""

    run_s: float = 10.0
    query_s: float = 10.0


@dataclass(frozen=True)
class Job:
    key: str  # the root file's path
    version: int | None
    overlay: dict[str, str]  # open buffers, the root's included
    deployment_spans: dict[str, Span] = field(default_factory=dict)


@dataclass(frozen=True)
class JobResult:
    job: Job
    diagnostics: tuple[Diagnostic, ...]
    undecided: tuple[str, ...] = ()


class _Cancelled(CaiError):
    """The job was superseded or the runner closed."""


class _Worker:
    """One worker process and a thread reading its answers."""

    def __init__(self):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cai_dsl.lsp.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            encoding="utf-8",
        )
        self.answers: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.ready = False

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.answers.put(line)
        self.answers.put(None)

    def wait(self, timeout: float, cancelled: Callable[[], bool]) -> dict | None:
        """The next answer; None after ``timeout`` seconds; raises _Cancelled."""
        deadline = time.monotonic() + timeout
        while True:
            if cancelled():
                raise _Cancelled
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                line = self.answers.get(timeout=min(_POLL_S * 5, left))
            except queue.Empty:
                continue
            if line is None:
                return {"error": "the checker process exited"}
            return json.loads(line)

    def request(self, payload: dict, timeout: float, cancelled: Callable[[], bool]) -> dict | None:
        if not self.ready:
            if self.wait(STARTUP_TIMEOUT_S, cancelled) is None:
                return {"error": "the checker process did not start"}
            self.ready = True
        self.proc.stdin.write(json.dumps(payload) + "\n")
        self.proc.stdin.flush()
        return self.wait(timeout, cancelled)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


class SemanticRunner:
    """Runs jobs one at a time, newest per file, and hands each result to ``on_result``."""

    def __init__(self, on_result: Callable[[JobResult], None], budget: Budget = Budget(), delay: float = 0.3):
        self.on_result = on_result
        self.budget = budget
        self.delay = delay
        self._pending: dict[str, tuple[float, Job]] = {}
        self._cond = threading.Condition()
        self._closed = False
        self._worker: _Worker | None = None
        self._thread = threading.Thread(target=self._loop, name="cai-semantic", daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> None:
        with self._cond:
            self._pending[job.key] = (time.monotonic() + self.delay, job)
            self._cond.notify_all()

    def forget(self, key: str) -> None:
        with self._cond:
            self._pending.pop(key, None)
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=5)
        self._stop_worker()

    # ------------------------------------------------------------ the manager thread

    def _next(self) -> Job | None:
        with self._cond:
            while not self._closed:
                if self._pending:
                    key, (due, job) = min(self._pending.items(), key=lambda kv: kv[1][0])
                    wait = due - time.monotonic()
                    if wait <= 0:
                        del self._pending[key]
                        return job
                    self._cond.wait(timeout=wait)
                else:
                    self._cond.wait()
            return None

    def _loop(self) -> None:
        while (job := self._next()) is not None:
            try:
                result = self._run(job)
            except _Cancelled:
                self._stop_worker()
                continue
            except Exception as exc:  # never let the thread die: report and carry on
                self._stop_worker()
                result = JobResult(job, (internal_error(job.key, exc),))
            self.on_result(result)

    def _superseded(self, key: str) -> Callable[[], bool]:
        def check() -> bool:
            with self._cond:
                return self._closed or key in self._pending

        return check

    def _stop_worker(self) -> None:
        if self._worker is not None:
            self._worker.close()
            self._worker = None

    def _call(self, job: Job, timeout: float, **options) -> list[Diagnostic] | None:
        """Diagnostics of one request, or None when it ran past ``timeout`` (worker killed)."""
        if self._worker is None:
            self._worker = _Worker()
        payload = {"root": job.key, "overlay": job.overlay, **options}
        answer = self._worker.request(payload, timeout, self._superseded(job.key))
        if answer is None:
            self._stop_worker()
            return None
        if "error" in answer:
            self._stop_worker()
            raise RuntimeError(answer["error"])
        return [Diagnostic.model_validate(d) for d in answer["diagnostics"]]

    def _run(self, job: Job) -> JobResult:
        whole = self._call(job, self.budget.run_s, deployments=None)
        if whole is not None:
            return JobResult(job, tuple(whole))
        found = self._call(job, self.budget.run_s, semantic=False)
        if found is None:
            found = [undecided(None, Span(file=job.key, line=1, column=1, end_line=1, end_column=1), self.budget.run_s)]
        slow: list[str] = []
        for name in job.deployment_spans:
            part = self._call(job, self.budget.query_s, deployments=[name], operational=False)
            if part is None:
                slow.append(name)
            else:
                found.extend(part)
        found.extend(undecided(name, job.deployment_spans[name], self.budget.query_s) for name in slow)
        return JobResult(job, tuple(sorted(dedupe(found), key=Diagnostic.sort_key)), tuple(slow))
