"""A backend for any OpenAI-compatible HTTP server (``cai serve``, vLLM, llama.cpp, TGI), stdlib only.

* ``generate`` posts to ``/v1/chat/completions``.  A prompt with an ``assistant_prefix`` needs the model to
  continue a started answer, which the chat API cannot express portably: with a local ``tokenizer`` the
  prompt is rendered here and sent as token ids to ``/v1/completions`` (exact); without one, it is sent as a final
  assistant message with ``continue_final_message`` / ``add_generation_prompt=false`` (vLLM's and
  ``cai serve``'s extension).
* ``score`` posts the token ids of prompt + continuation to ``/v1/completions`` with ``echo=true``,
  ``logprobs=1`` and ``max_tokens=0`` and sums the echoed log-probs of the continuation tokens.  Sending
  token ids (accepted by vLLM, the OpenAI legacy API and ``cai serve``) makes the prompt/continuation split
  exact and identical to the transformers backend.  Rendering the chat prompt needs the model's chat template,
  so ``score`` and ``render`` need ``tokenizer`` (a model spec or a directory holding only tokenizer files).
  Chat ``logprobs``/``top_logprobs`` with ``max_tokens=1`` was rejected: it only sees the first continuation
  token, and only when it ranks in the top 20.

Errors are retried with exponential backoff (connection errors, timeouts, HTTP 408/409/429/5xx, honouring
``Retry-After``); other failures raise ``BackendError`` with the server's message.  The API key comes from
``api_key`` or the ``OPENAI_API_KEY`` environment variable.
"""

from __future__ import annotations

import http.client
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from cai_dsl.run.backends.base import (
    BackendError,
    Generation,
    GenerationParams,
    Prompt,
    continuation_ids,
    prompt_ids,
    render_chat,
    truncate_at_stop,
)

__all__ = ["OpenAIBackend"]

_RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})


class OpenAIBackend:
    """Generate and score through an OpenAI-compatible server.

    ``base_url`` is the API root (``http://host:port/v1``; a URL without a path gets ``/v1``).  ``model``
    defaults to the first id listed by ``GET /models``.  ``tokenizer`` (a model spec, a tokenizer directory or
    a tokenizer object) is needed for ``render`` and ``score``.  ``concurrency`` requests run in parallel.
    """

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000/v1",
        model: str | None = None,
        *,
        api_key: str | None = None,
        tokenizer: Any = None,
        timeout: float = 120.0,
        max_retries: int = 4,
        backoff: float = 0.5,
        max_backoff: float = 20.0,
        concurrency: int = 4,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        parsed = urllib.parse.urlsplit(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise BackendError(f"base_url must be an http(s) URL such as http://127.0.0.1:8000/v1, not {base_url!r}")
        path = parsed.path.rstrip("/") or "/v1"
        self.base_url = urllib.parse.urlunsplit((parsed.scheme, parsed.netloc, path, "", ""))
        self._model = model
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY") or None
        self.timeout = timeout
        self.max_retries = max(0, max_retries)
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.concurrency = max(1, concurrency)
        self._sleep = sleep
        self._tokenizer_source = tokenizer
        self._tokenizer: Any = None if isinstance(tokenizer, (str, os.PathLike)) else tokenizer

    # -- identity ------------------------------------------------------------------------------------------

    @property
    def model(self) -> str:
        """The model id sent with each request (asked from ``GET /models`` when not given)."""
        if self._model is None:
            data = self._request("GET", "/models")
            models = data.get("data") if isinstance(data, dict) else None
            if not models or not isinstance(models[0], dict) or "id" not in models[0]:
                raise BackendError(f"{self.base_url}/models lists no model; pass model= explicitly")
            self._model = str(models[0]["id"])
        return self._model

    @property
    def name(self) -> str:
        """``openai:<model>@<base_url>``."""
        return f"openai:{self._model or '?'}@{self.base_url}"

    @property
    def tokenizer(self) -> Any:
        """The local tokenizer used to render prompts (loaded lazily from the ``tokenizer`` spec)."""
        if self._tokenizer is None:
            if self._tokenizer_source is None:
                raise BackendError(
                    "The openai backend needs the served model's tokenizer to render prompts and score: pass "
                    "tokenizer=<model spec or directory with tokenizer files> (for cai serve over the default "
                    "model: tokenizer='embedded:smollm2-135m')."
                )
            from cai_dsl.run.loading import ModelError, load_tokenizer

            try:
                self._tokenizer = load_tokenizer(self._tokenizer_source)
            except ModelError as exc:
                raise BackendError(str(exc)) from exc
        return self._tokenizer

    def render(self, prompt: Prompt) -> str:
        """The text the server's model sees for ``prompt`` (rendered locally with the chat template)."""
        return render_chat(self.tokenizer, prompt)

    # -- HTTP ----------------------------------------------------------------------------------------------

    def _request(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        url = self.base_url + path
        body = None if payload is None else json.dumps(payload).encode("utf-8")
        headers = {"Accept": "application/json", "User-Agent": "cai-dsl"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        last_error = ""
        for attempt in range(self.max_retries + 1):
            retry_after: float | None = None
            try:
                req = urllib.request.Request(url, data=body, headers=headers, method=method)
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    raw = resp.read()
                try:
                    return json.loads(raw.decode("utf-8"))
                except ValueError as exc:
                    raise BackendError(f"{method} {url} returned a body that is not JSON: {raw[:200]!r}") from exc
            except urllib.error.HTTPError as exc:
                detail = _error_detail(exc)
                if exc.code not in _RETRY_STATUSES:
                    hint = " (check the API key: OPENAI_API_KEY)" if exc.code in (401, 403) else ""
                    raise BackendError(f"{method} {url} failed with HTTP {exc.code}: {detail}{hint}") from exc
                last_error = f"HTTP {exc.code}: {detail}"
                retry_after = _retry_after(exc.headers.get("Retry-After") if exc.headers else None)
            except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError) as exc:
                reason = getattr(exc, "reason", exc)
                last_error = f"{type(exc).__name__}: {reason}"
            if attempt < self.max_retries:
                delay = min(self.max_backoff, self.backoff * (2**attempt))
                if retry_after is not None:
                    delay = min(self.max_backoff, max(delay, retry_after))
                self._sleep(delay)
        raise BackendError(
            f"{method} {url} failed after {self.max_retries + 1} attempts ({last_error}). Is the server running "
            "and reachable? Start one with `cai serve`, or check base_url."
        )

    def _map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        if self.concurrency == 1 or len(items) <= 1:
            return [fn(x) for x in items]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(items))) as pool:
            return list(pool.map(fn, items))

    # -- generation ----------------------------------------------------------------------------------------

    def generate(self, prompts: Sequence[Prompt], params: GenerationParams | None = None) -> list[Generation]:
        """One chat completion per prompt (``concurrency`` at a time), returned in input order."""
        params = params or GenerationParams()
        model = self.model
        # payloads are built here, on one thread: fast tokenizers are not safe to share across threads
        requests = [self._generation_request(model, p, params) for p in prompts]
        return self._map(lambda r: self._generate_one(*r, params), requests)

    def _sampling(self, params: GenerationParams) -> dict[str, Any]:
        out: dict[str, Any] = {
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "n": 1,
        }
        if params.seed is not None:
            out["seed"] = params.seed
        if params.stop:
            out["stop"] = list(params.stop)
        return out

    def _generation_request(self, model: str, prompt: Prompt, params: GenerationParams) -> tuple[str, dict[str, Any]]:
        if prompt.assistant_prefix and (self._tokenizer is not None or self._tokenizer_source is not None):
            text = self.render(prompt)
            # token ids, not text: the server must not add a second BOS or re-split the prefix boundary
            return "/completions", {
                "model": model,
                "prompt": prompt_ids(self.tokenizer, text),
                **self._sampling(params),
            }
        messages = prompt.message_dicts()
        payload: dict[str, Any] = {"model": model, "messages": messages, **self._sampling(params)}
        if prompt.assistant_prefix:
            payload["messages"] = [*messages, {"role": "assistant", "content": prompt.assistant_prefix}]
            payload["continue_final_message"] = True
            payload["add_generation_prompt"] = False
        return "/chat/completions", payload

    def _generate_one(self, endpoint: str, payload: dict[str, Any], params: GenerationParams) -> Generation:
        data = self._request("POST", endpoint, payload)
        choice = _first_choice(data, endpoint)
        if endpoint == "/completions":
            content = choice.get("text")
        else:
            content = (choice.get("message") or {}).get("content")
        if not isinstance(content, str):
            raise BackendError(f"the server returned no text: {json.dumps(choice)[:300]}")
        content, hit = truncate_at_stop(content, params.stop)
        finish = choice.get("finish_reason") or "stop"
        finish = "stop" if hit or finish in ("stop", "eos", "stop_sequence", "end_turn") else "length"
        usage = data.get("usage") or {}
        return Generation(
            text=content,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            finish_reason=finish,
        )

    # -- scoring -------------------------------------------------------------------------------------------

    def score(self, prompts: Sequence[Prompt], continuations: Sequence[str]) -> list[list[float]]:
        """Total log-prob of each continuation after each rendered prompt, from echoed prompt log-probs."""
        if not continuations:
            return [[] for _ in prompts]
        model = self.model
        jobs = self._score_jobs(prompts, continuations)  # tokenized on this thread, sent concurrently
        return self._map(lambda job: self._score_one(model, *job), jobs)

    def _score_jobs(self, prompts: Sequence[Prompt], continuations: Sequence[str]) -> list[tuple[int, list[list[int]]]]:
        """Per prompt: its token count and the token ids of prompt + each continuation."""
        tok = self.tokenizer
        jobs = []
        for p in prompts:
            text = render_chat(tok, p)
            pids = prompt_ids(tok, text)
            jobs.append((len(pids), [pids + continuation_ids(tok, text, pids, c) for c in continuations]))
        return jobs

    @staticmethod
    def _score_payload(model: str, seqs: list[list[int]]) -> dict[str, Any]:
        return {"model": model, "prompt": seqs, "max_tokens": 0, "echo": True, "logprobs": 1, "temperature": 0}

    def post(self, path: str, payload: dict[str, Any]) -> Any:
        """POST ``payload`` to ``path`` under the API root (with retries); the decoded JSON reply."""
        return self._request("POST", path, payload)

    def _score_one(self, model: str, n_prompt: int, seqs: list[list[int]]) -> list[float]:
        data = self._request("POST", "/completions", self._score_payload(model, seqs))
        choices = data.get("choices") if isinstance(data, dict) else None
        if not isinstance(choices, list) or len(choices) != len(seqs):
            raise BackendError(
                "the server did not return one completion per scored sequence; scoring needs /v1/completions "
                "with token-id prompts, echo and logprobs (supported by vLLM and cai serve)"
            )
        choices = sorted(choices, key=lambda c: c.get("index", 0))
        scores = []
        for seq, choice in zip(seqs, choices, strict=True):
            lp = (choice.get("logprobs") or {}).get("token_logprobs")
            if not isinstance(lp, list) or len(lp) < len(seq):
                raise BackendError(
                    "the server returned no prompt log-probs (echo + logprobs); scoring needs vLLM or cai serve"
                )
            values = lp[n_prompt : len(seq)]
            if any(v is None for v in values):
                raise BackendError("the server returned a null log-prob inside the continuation")
            scores.append(float(sum(values)))
        return scores


def _first_choice(data: Any, endpoint: str) -> dict[str, Any]:
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise BackendError(f"{endpoint} returned no choices: {json.dumps(data)[:300]}")
    return choices[0]


def _error_detail(exc: urllib.error.HTTPError) -> str:
    try:
        raw = exc.read().decode("utf-8", "replace")
    except Exception:  # noqa: BLE001 - best effort
        return exc.reason if isinstance(exc.reason, str) else "no detail"
    try:
        data = json.loads(raw)
        err = data.get("error") if isinstance(data, dict) else None
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        if isinstance(err, str):
            return err
        if isinstance(data, dict) and data.get("message"):
            return str(data["message"])
    except ValueError:
        pass
    return raw[:300] or str(exc.reason)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
