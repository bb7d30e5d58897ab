"""The seam for many machines: requests written as an OpenAI batch file, answers read back from its results.

``BatchFileBackend`` builds exactly the requests the ``openai`` backend would send (``/v1/chat/completions``
bodies for generation, ``/v1/completions`` token-id bodies with ``echo`` + ``logprobs`` for scoring, see
:mod:`cai_dsl.run.backends.openai_backend`) but, instead of sending them, looks each one up in the results
files of its directory by ``custom_id`` (a hash of the URL and body, so the same request always has the same
id). When any request of a call has no result yet, every missing one is added to ``DIR/requests.jsonl`` and
:class:`BatchPending` is raised (exit code 3): run that file with ``vllm run-batch``, the OpenAI Batch API,
any batch runner, or :func:`run_batch` (``cai batch run``) against a server, put the output next to it as
``DIR/results*.jsonl`` and rerun the same command. Every stage that uses a backend (SL initial / critique /
revision, labelling, evaluation) keeps its finished records, so each rerun goes one dependent step further
and none is recomputed.

File formats are the OpenAI Batch API's: a request line ``{"custom_id", "method": "POST", "url", "body"}``, a
result line ``{"id", "custom_id", "response": {"status_code", "request_id", "body"}, "error"}``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from cai_dsl.core.files import write_atomic
from cai_dsl.core.hashing import canonical_json, sha256_text
from cai_dsl.core.records import RecordFile, read_jsonl
from cai_dsl.run.backends.base import BackendError, Generation, GenerationParams, Prompt
from cai_dsl.run.backends.openai_backend import OpenAIBackend

__all__ = ["BatchFileBackend", "BatchPending", "custom_id", "run_batch"]

EXIT_PENDING = 3
REQUESTS = "requests.jsonl"


class BatchPending(BackendError):
    """Requests are waiting in a batch file; the message says how to run it and continue."""

    exit_code = EXIT_PENDING


def custom_id(url: str, body: dict[str, Any]) -> str:
    """The id of a request: the same URL and body always give the same id."""
    return "cai-" + sha256_text(canonical_json({"url": url, "body": body}))[:40]


def _results(directory: Path) -> dict[str, dict[str, Any]]:
    """``custom_id -> result line`` over every ``results*.jsonl`` of ``directory`` (later files win)."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(directory.glob("results*.jsonl")):
        for line in read_jsonl(path).records:
            cid = line.get("custom_id") if isinstance(line, dict) else None
            if isinstance(cid, str):
                out[cid] = line
    return out


class BatchFileBackend(OpenAIBackend):
    """The ``openai`` backend's requests, through batch files in ``directory`` (module docstring).

    ``model`` is the model id written into every body (there is no server to ask); ``tokenizer`` (a model spec
    or tokenizer directory) renders prompts with assisted prefixes and tokenizes scored sequences.
    """

    def __init__(self, directory: str | Path, model: str, *, tokenizer: Any = None) -> None:
        super().__init__("http://batch.invalid/v1", model=model, tokenizer=tokenizer, concurrency=1, max_retries=0)
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._results = _results(self.directory)

    @property
    def name(self) -> str:
        return f"batch:{self.model}@{self.directory}"

    @property
    def requests_path(self) -> Path:
        return self.directory / REQUESTS

    def generate(self, prompts: Sequence[Prompt], params: GenerationParams | None = None) -> list[Generation]:
        params = params or GenerationParams()
        requests = [self._generation_request(self.model, p, params) for p in prompts]
        self._require(requests)
        return [self._generate_one(endpoint, payload, params) for endpoint, payload in requests]

    def score(self, prompts: Sequence[Prompt], continuations: Sequence[str]) -> list[list[float]]:
        jobs = self._score_jobs(prompts, continuations)
        self._require([("/completions", self._score_payload(self.model, seqs)) for _, seqs in jobs])
        return [self._score_one(self.model, n, seqs) for n, seqs in jobs]

    def _require(self, requests: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """Raise :class:`BatchPending` after writing the requests that have no result yet."""
        missing = {}
        for endpoint, body in requests:
            url = "/v1" + endpoint
            cid = custom_id(url, body)
            if cid not in self._results:
                missing.setdefault(cid, {"custom_id": cid, "method": "POST", "url": url, "body": body})
        if not missing:
            return
        path = self.requests_path
        known = {r.get("custom_id"): r for r in read_jsonl(path).records} if path.is_file() else {}
        added = [r for cid, r in missing.items() if cid not in known]
        lines = [*known.values(), *added]
        write_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in lines))
        raise BatchPending(
            f"{len(missing)} requests have no result yet ({len(added)} added to {path}, {len(lines)} in the file). "
            f"Run the file with `cai batch run {path} --url URL`, `vllm run-batch -i {path} -o "
            f"{self.directory / 'results.jsonl'}` or the OpenAI Batch API, save the output as "
            f"{self.directory}/results*.jsonl, then rerun this command."
        )

    def _request(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        cid = custom_id("/v1" + path, payload or {})
        line = self._results.get(cid)
        if line is None:
            raise BatchPending(f"request {cid} has no result in {self.directory}")
        response = line.get("response") if isinstance(line.get("response"), dict) else {}
        if line.get("error") or response.get("status_code") != 200:
            detail = line.get("error") or (response.get("body") or {}).get("error") or response.get("status_code")
            raise BackendError(f"{self.directory}: batch request {cid} failed: {json.dumps(detail)[:300]}")
        return response.get("body")


def run_batch(
    requests: str | Path,
    base_url: str,
    output: str | Path,
    *,
    api_key: str | None = None,
    concurrency: int = 16,
    timeout: float = 600.0,
    on_result: Callable[[int, int], None] | None = None,
) -> tuple[int, int]:
    """Send every request of a batch file to an OpenAI-compatible server (``base_url`` ending in ``/v1``) and
    write the results file; requests already answered in ``output`` are skipped (resumable). Returns
    (answered now, failed). ``on_result(done, total)`` reports progress."""
    requests, output = Path(requests), Path(output)
    lines = read_jsonl(requests).records
    for r in lines:
        if not isinstance(r.get("custom_id"), str) or not isinstance(r.get("body"), dict) \
                or not str(r.get("url", "")).startswith("/v1/"):
            raise BackendError(f"{requests}: request {r.get('custom_id')!r} needs a string `custom_id`, a `url` "
                               "under /v1/ and a `body` object")
    results = RecordFile(output, key_field="custom_id")
    results.retain(lambda line: (line.get("response") or {}).get("status_code") == 200)  # failures are retried
    todo = [r for r in lines if not results.done(r["custom_id"])]
    client = OpenAIBackend(base_url, model="unused", api_key=api_key, timeout=timeout, max_retries=2)
    lock = threading.Lock()
    failed = 0

    def one(r: dict[str, Any]) -> None:
        nonlocal failed
        try:
            body, status, error = client.post(r["url"][len("/v1"):], r["body"]), 200, None
        except BackendError as exc:
            body, status, error = None, 500, {"message": str(exc)}
        line = {"id": f"batch_req_{r['custom_id']}", "custom_id": r["custom_id"],
                "response": {"status_code": status, "request_id": r["custom_id"], "body": body}, "error": error}
        with lock:  # each result is on disk before the next is counted: a killed run loses nothing finished
            results.append(line)
            failed += status != 200
            if on_result:
                on_result(len(results.records), len(lines))

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        list(pool.map(one, todo))
    return len(todo), failed
