"""One thread owns the model: every backend call of ``cai serve`` runs there, and concurrent chat generations
with equal decoding parameters are run as one batch (micro-batching).

A request thread calls :meth:`ModelWorker.generate` (batchable) or :meth:`ModelWorker.call` (anything else
that touches the backend: log-probs, the answer transform, raw-text completions) and waits for its result.
The worker takes the oldest job; for a generation it then collects further generations with the same
:class:`~cai_dsl.run.backends.base.GenerationParams` (up to ``max_batch``) until none has arrived for
``window_s`` seconds (a burst of concurrent clients, whose requests land over tens of milliseconds, becomes one
batch, while a lone request waits only ``window_s``), at most ``max_wait_s`` after the first, and runs them in
one ``backend.generate`` call. While a batch runs, new requests queue, so under load each batch takes
everything that arrived meanwhile. Jobs it passes over keep their order.

With LoRA adapters served next to the base (``select``), every job names its model (``None``: the base); a
batch only takes generations for the same model, and each job runs inside ``select(model)``.

Greedy answers do not depend on the batch they ran in (beyond float noise); a sampled request with an explicit
``seed`` runs alone, so that the same seed gives the same answer (as without batching).
"""

from __future__ import annotations

import collections
import threading
import time
import contextlib
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from cai_dsl.run.backends.base import Backend, Generation, GenerationParams, Prompt

__all__ = ["ModelWorker", "WorkerStats"]


@dataclass
class _Job:
    future: Future
    fn: Callable[[], Any] | None = None
    prompt: Prompt | None = None
    params: GenerationParams | None = None
    model: str | None = None

    @property
    def batchable(self) -> bool:
        p = self.params
        return self.fn is None and p is not None and (p.greedy or p.seed is None)


@dataclass
class WorkerStats:
    """Counters of a worker: generation batches run and the largest; other calls."""

    batches: int = 0
    generations: int = 0
    largest_batch: int = 0
    calls: int = 0


class ModelWorker:
    """The thread that runs every call on ``backend`` (module docstring)."""

    def __init__(self, backend: Backend, *, max_batch: int = 16, window_s: float = 0.01, max_wait_s: float | None = None,
                 select: Callable[[str | None], contextlib.AbstractContextManager] | None = None):
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if window_s < 0 or (max_wait_s is not None and max_wait_s < 0):
            raise ValueError("window_s and max_wait_s must be >= 0")
        self.backend = backend
        self.select = select
        self.max_batch = max_batch
        self.window_s = window_s
        self.max_wait_s = window_s if max_wait_s is None else max(window_s, max_wait_s)
        self.stats = WorkerStats()
        self._queue: collections.deque[_Job] = collections.deque()
        self._ready = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="cai-model-worker", daemon=True)
        self._thread.start()

    # -- request side --------------------------------------------------------------------------------------

    def generate(self, prompt: Prompt, params: GenerationParams, model: str | None = None) -> Generation:
        """One answer to ``prompt`` by ``model`` (an adapter's name; None: the base), possibly computed in a batch
        with concurrent requests."""
        return self._submit(_Job(Future(), prompt=prompt, params=params, model=model)).result()

    def call(self, fn: Callable[[], Any], model: str | None = None) -> Any:
        """Run ``fn()`` on the worker thread (alone, with ``model`` selected) and return its result or raise its
        exception."""
        return self._submit(_Job(Future(), fn=fn, model=model)).result()

    def close(self) -> None:
        """Stop after the queued jobs; further submissions raise RuntimeError."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join()

    def _submit(self, job: _Job) -> Future:
        with self._ready:
            if self._closed:
                raise RuntimeError("the model worker is closed")
            self._queue.append(job)
            self._ready.notify_all()
        return job.future

    # -- worker side ---------------------------------------------------------------------------------------

    def _take(self) -> list[_Job] | None:
        """The next job, or the next batch of generations with equal parameters (None: closed and drained)."""
        with self._ready:
            while not self._queue:
                if self._closed:
                    return None
                self._ready.wait()
            first = self._queue.popleft()
            if not first.batchable:
                return [first]
            batch = [first]
            start = time.monotonic()
            cap, deadline = start + self.max_wait_s, start + self.window_s
            while len(batch) < self.max_batch:
                arrived = self._matching(first, self.max_batch - len(batch))
                if arrived:  # still arriving: wait for a quiet window again (never past the cap)
                    batch.extend(arrived)
                    deadline = min(cap, time.monotonic() + self.window_s)
                left = deadline - time.monotonic()
                if len(batch) >= self.max_batch or left <= 0 or self._closed:
                    break
                self._ready.wait(left)
            return batch

    def _matching(self, first: _Job, limit: int) -> list[_Job]:
        """Remove and return queued batchable generations with the parameters and model of ``first`` (oldest
        first, at most ``limit``)."""
        taken, kept = [], collections.deque()
        while self._queue:
            job = self._queue.popleft()
            if len(taken) < limit and job.batchable and job.params == first.params and job.model == first.model:
                taken.append(job)
            else:
                kept.append(job)
        self._queue = kept
        return taken

    def _run(self) -> None:
        while True:
            jobs = self._take()
            if jobs is None:
                return
            if jobs[0].fn is not None:
                self.stats.calls += 1
                fn = jobs[0].fn
                _settle(jobs[0].future, lambda: self._selected(jobs[0].model, fn))
                continue
            self._generate(jobs)

    def _selected(self, model: str | None, fn: Callable[[], Any]) -> Any:
        if self.select is None:
            return fn()
        with self.select(model):
            return fn()

    def _generate(self, jobs: Sequence[_Job]) -> None:
        live = [j for j in jobs if j.future.set_running_or_notify_cancel()]
        if not live:
            return
        self.stats.batches += 1
        self.stats.generations += len(live)
        self.stats.largest_batch = max(self.stats.largest_batch, len(live))
        try:
            gens = self._selected(live[0].model, lambda: self.backend.generate([j.prompt for j in live], live[0].params))
        except BaseException as exc:  # noqa: BLE001 - handed to every waiting request
            for j in live:
                j.future.set_exception(exc)
            return
        for j, g in zip(live, gens, strict=True):
            j.future.set_result(g)


def _settle(future: Future, fn: Callable[[], Any]) -> None:
    if not future.set_running_or_notify_cancel():
        return
    try:
        future.set_result(fn())
    except BaseException as exc:  # noqa: BLE001 - handed to the waiting request
        future.set_exception(exc)
