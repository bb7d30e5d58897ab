"""An OpenAI-compatible HTTP server over a local backend (stdlib ``http.server`` only).

Endpoints: ``GET /v1/models``, ``GET /health``, ``POST /v1/chat/completions`` (messages, max_tokens /
max_completion_tokens, temperature, top_p, seed, stop, n=1, logprobs, top_logprobs, and vLLM's
``continue_final_message`` / ``add_generation_prompt`` to continue a started assistant answer) and
``POST /v1/completions`` (prompt as text, token ids or a list of either; max_tokens, temperature, top_p, seed,
stop, logprobs, echo; ``max_tokens=0`` with ``echo`` returns only the prompt's log-probs).

Requests are handled on threads but model calls are serialized with a lock (one batch at a time; a
``/v1/completions`` request with a list of prompts is batched).  Streaming and ``n > 1`` are not supported.
The server binds to 127.0.0.1 unless told otherwise.  ``transform(messages, answer) -> answer`` post-processes
every chat answer (the hook for a constitutional critique/revise loop); it runs while the model lock is held,
so it must call the backend directly, never this server over HTTP.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cai_dsl.core.errors import CaiError

from cai_dsl.run.backends.base import (
    Backend,
    BackendError,
    GenerationParams,
    Prompt,
    continuation_ids,
    encode_text,
    prompt_ids,
)
from cai_dsl.run.prompts import PromptRenderer

__all__ = ["Transform", "chat_prompt", "make_server", "run_server", "serve_forever"]

Transform = Callable[[list[dict[str, str]], str], str]
"""``transform(messages, answer) -> answer``: rewrites each chat answer before it is returned."""

MAX_BODY_BYTES = 16 << 20
MAX_TOP_LOGPROBS = 20
DEFAULT_CHAT_MAX_TOKENS = 512
DEFAULT_COMPLETION_MAX_TOKENS = 16


class _RequestError(CaiError):
    def __init__(self, status: int, message: str, param: str | None = None, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.kind = kind


class CAIServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer holding the backend, its lock and the answer transform."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        backend: Backend,
        *,
        transform: Transform | None = None,
        model_name: str | None = None,
        api_key: str | None = None,
        verbose: bool = False,
        renderer: PromptRenderer | None = None,
    ) -> None:
        self.backend = backend
        self.transform = transform
        self.renderer = renderer
        self.model_name = model_name or _default_model_name(backend)
        self.api_key = api_key
        self.verbose = verbose
        self.lock = threading.Lock()
        super().__init__(address, _Handler)

    @property
    def url(self) -> str:
        """The API root, e.g. ``http://127.0.0.1:8000/v1``."""
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/v1"


def _default_model_name(backend: Any) -> str:
    loaded = getattr(backend, "loaded", None)
    if loaded is not None and getattr(loaded, "name", None):
        return str(loaded.name)
    return str(getattr(backend, "name", "cai-model"))


def make_server(
    backend: Backend,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    transform: Transform | None = None,
    model_name: str | None = None,
    api_key: str | None = None,
    verbose: bool = False,
    renderer: PromptRenderer | None = None,
) -> CAIServer:
    """Create (bind, not start) an OpenAI-compatible server over ``backend``; ``port=0`` picks a free port.

    ``transform(messages, answer)`` rewrites every chat answer; ``api_key`` makes the server require
    ``Authorization: Bearer <api_key>``.  Start it with ``serve_forever(server)`` or ``server.serve_forever()``
    in a thread; its URL is ``server.url``. With a ``renderer`` (a constitution's
    :class:`~cai_dsl.run.prompts.PromptRenderer`) chat prompts are the policy's prompts (:func:`chat_prompt`).
    """
    return CAIServer(
        (host, port), backend, transform=transform, model_name=model_name, api_key=api_key, verbose=verbose,
        renderer=renderer,
    )


def serve_forever(server: CAIServer) -> None:
    """Serve until interrupted (Ctrl-C), then close the socket."""
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def run_server(
    model_spec: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    batch_size: int = 8,
    *,
    transform: Transform | None = None,
    api_key: str | None = None,
) -> None:
    """Load ``model_spec`` into a transformers backend and serve it until interrupted (``cai serve``)."""
    from cai_dsl.run.backends.transformers_backend import TransformersBackend
    from cai_dsl.run.loading import DEFAULT_MODEL

    backend = TransformersBackend(model_spec or DEFAULT_MODEL, batch_size=batch_size)
    server = make_server(backend, host, port, transform=transform, api_key=api_key)
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: serving on {host}, reachable from other machines", file=sys.stderr)
    print(f"serving {backend.name} at {server.url} (Ctrl-C to stop)", file=sys.stderr)
    serve_forever(server)


# -------------------------------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    server: CAIServer
    protocol_version = "HTTP/1.1"
    server_version = "cai-serve/0.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature from the base class
        if self.server.verbose:
            super().log_message(format, *args)

    # -- plumbing ------------------------------------------------------------------------------------------

    def _send_json(self, status: int, payload: Any) -> None:
        body = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _send_error(self, err: _RequestError) -> None:
        self._send_json(
            err.status, {"error": {"message": err.message, "type": err.kind, "param": err.param, "code": None}}
        )

    def _authorize(self) -> None:
        key = self.server.api_key
        if key and self.headers.get("Authorization", "") != f"Bearer {key}":
            raise _RequestError(401, "invalid or missing API key", kind="authentication_error")

    def _read_body(self) -> bytes | _RequestError:
        """Read the whole request body up front, so that error replies leave the connection reusable."""
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            self.close_connection = True
            return _RequestError(411, "a Content-Length header is required")
        try:
            length = int(length_header)
        except ValueError:
            self.close_connection = True
            return _RequestError(400, "invalid Content-Length header")
        if length < 0 or length > MAX_BODY_BYTES:
            self.close_connection = True
            return _RequestError(413, f"request body larger than {MAX_BODY_BYTES} bytes")
        return self.rfile.read(length)

    @staticmethod
    def _parse_json(raw: bytes) -> dict[str, Any]:
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise _RequestError(400, f"request body is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise _RequestError(400, "request body must be a JSON object")
        return data

    def _dispatch(self, handler: Callable[[], Any]) -> None:
        try:
            self._authorize()
            self._send_json(200, handler())
        except _RequestError as err:
            self._send_error(err)
        except BackendError as exc:
            self._send_error(_RequestError(400, str(exc)))
        except (ValueError, TypeError) as exc:
            self._send_error(_RequestError(400, str(exc)))
        except Exception as exc:  # noqa: BLE001 - a request must never kill the server
            traceback.print_exc(file=sys.stderr)
            self._send_error(_RequestError(500, f"internal error: {type(exc).__name__}: {exc}", kind="server_error"))

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        path = self.path.split("?", 1)[0].rstrip("/")
        if path in ("/v1/models", "/models"):
            self._dispatch(self._models)
        elif path in ("/health", "/v1/health"):
            self._dispatch(lambda: {"status": "ok"})
        else:
            self._dispatch(lambda: _raise(_RequestError(404, f"unknown endpoint GET {path}")))

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        path = self.path.split("?", 1)[0].rstrip("/")
        raw = self._read_body()
        if isinstance(raw, _RequestError):
            self._dispatch(lambda: _raise(raw))
        elif path in ("/v1/chat/completions", "/chat/completions"):
            self._dispatch(lambda: self._locked(self._chat, self._parse_json(raw)))
        elif path in ("/v1/completions", "/completions"):
            self._dispatch(lambda: self._locked(self._completions, self._parse_json(raw)))
        else:
            self._dispatch(lambda: _raise(_RequestError(404, f"unknown endpoint POST {path}")))

    def _locked(self, handler: Callable[[dict[str, Any]], Any], req: dict[str, Any]) -> Any:
        # one request at a time touches the model and its tokenizer (neither is safe to share across threads)
        with self.server.lock:
            return handler(req)

    # -- endpoints -----------------------------------------------------------------------------------------

    def _models(self) -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": self.server.model_name, "object": "model", "created": 0, "owned_by": "cai-dsl"}],
        }

    def _chat(self, req: dict[str, Any]) -> dict[str, Any]:
        backend = self.server.backend
        _reject_unsupported(req)
        messages = _parse_messages(req.get("messages"))
        continue_final = bool(req.get("continue_final_message", False))
        if continue_final and messages[-1]["role"] != "assistant":
            raise _RequestError(400, "continue_final_message needs a final assistant message", "messages")
        prompt = chat_prompt(messages, self.server.renderer, continue_final=continue_final)
        max_tokens = req.get("max_completion_tokens", req.get("max_tokens"))
        params = _params(req, DEFAULT_CHAT_MAX_TOKENS if max_tokens is None else max_tokens)
        want_logprobs = bool(req.get("logprobs", False))
        top = _int_field(req, "top_logprobs", 0, 0, MAX_TOP_LOGPROBS)
        if top and not want_logprobs:
            raise _RequestError(400, "top_logprobs requires logprobs=true", "top_logprobs")
        if want_logprobs:
            tok, token_logprobs = _capabilities(backend, "logprobs")
        gen = backend.generate([prompt], params)[0]
        answer = gen.text
        if self.server.transform is not None:
            answer = self.server.transform([dict(m) for m in messages], answer)
            if not isinstance(answer, str):
                raise TypeError("the answer transform must return a string")
        logprobs = None
        if want_logprobs:
            text = backend.render(prompt)
            pids = prompt_ids(tok, text)
            cids = continuation_ids(tok, text, pids, answer)
            entries = token_logprobs([pids + cids], [len(pids)], top_k=top)[0] if cids else []
            logprobs = {"content": [_chat_logprob(tok, e, top) for e in entries]}
        completion_tokens = gen.completion_tokens
        if answer != gen.text and getattr(backend, "tokenizer", None) is not None:
            completion_tokens = len(encode_text(backend.tokenizer, answer))
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.server.model_name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": answer},
                    "logprobs": logprobs,
                    "finish_reason": gen.finish_reason,
                }
            ],
            "usage": {
                "prompt_tokens": gen.prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": gen.prompt_tokens + completion_tokens,
            },
        }

    def _completions(self, req: dict[str, Any]) -> dict[str, Any]:
        backend = self.server.backend
        _reject_unsupported(req)
        if req.get("suffix"):
            raise _RequestError(400, "suffix is not supported", "suffix")
        tok, token_logprobs = _capabilities(backend, "/v1/completions")
        generate_ids = getattr(backend, "generate_ids", None)
        if generate_ids is None:
            raise _RequestError(400, "this backend cannot serve /v1/completions")
        prompts = _parse_completion_prompts(req.get("prompt"), tok)
        params = _params(req, _int_field(req, "max_tokens", DEFAULT_COMPLETION_MAX_TOKENS, 0, None))
        echo = bool(req.get("echo", False))
        n_logprobs: int | None = None
        if req.get("logprobs") is not None and req.get("logprobs") is not False:
            n_logprobs = _int_field(req, "logprobs", 0, 0, MAX_TOP_LOGPROBS)
        gens = generate_ids([ids for ids, _ in prompts], params)
        choices = []
        lp_seqs: list[list[int]] = []
        lp_starts: list[int] = []
        splits: list[tuple[list[int], list[int]]] = []
        for (ids, text), gen in zip(prompts, gens, strict=True):
            cids = continuation_ids(tok, text, ids, gen.text)
            splits.append((ids, cids))
            if n_logprobs is not None:
                start = 1 if echo else len(ids)
                lp_seqs.append(ids + cids)
                lp_starts.append(min(start, len(ids) + len(cids)))
        entries_all = token_logprobs(lp_seqs, lp_starts, top_k=n_logprobs or 0) if n_logprobs is not None else None
        total_prompt = total_completion = 0
        for i, ((_, text), gen) in enumerate(zip(prompts, gens, strict=True)):
            total_prompt += gen.prompt_tokens
            total_completion += gen.completion_tokens
            logprobs = None
            if entries_all is not None:
                prompt_part, cids = splits[i]
                entries = entries_all[i]
                shown = prompt_part + cids if echo else cids
                base_offset = 0 if echo else len(text)
                logprobs = _completion_logprobs(tok, shown, entries, echo, n_logprobs or 0, base_offset)
            choices.append(
                {
                    "index": i,
                    "text": (text + gen.text) if echo else gen.text,
                    "logprobs": logprobs,
                    "finish_reason": gen.finish_reason,
                }
            )
        return {
            "id": f"cmpl-{uuid.uuid4().hex}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": self.server.model_name,
            "choices": choices,
            "usage": {
                "prompt_tokens": total_prompt,
                "completion_tokens": total_completion,
                "total_tokens": total_prompt + total_completion,
            },
        }


# -------------------------------------------------------------------------------------------------------------
# request parsing helpers


def chat_prompt(
    messages: list[dict[str, str]], renderer: PromptRenderer | None = None, *, continue_final: bool = False
) -> Prompt:
    """The backend prompt of a chat request: the messages as sent, or with a ``renderer`` the policy's prompt
    (:mod:`cai_dsl.run.prompts`: the constitution's system prompt, unless the client sends its own, and the
    turns with control tokens neutralised). ``continue_final``: the last (assistant) message is the start of
    the answer."""
    prefix = ""
    if continue_final:
        messages, prefix = messages[:-1], messages[-1]["content"]
    if renderer is not None:
        system = [m["content"] for m in messages if m["role"] == "system"]
        if system:
            renderer = replace(renderer, system="\n\n".join(system))
        messages = renderer.messages([m for m in messages if m["role"] != "system"])
    return Prompt.from_messages(messages, assistant_prefix=prefix)


def _raise(err: Exception) -> Any:
    raise err


def _reject_unsupported(req: dict[str, Any]) -> None:
    if req.get("stream"):
        raise _RequestError(400, "streaming is not supported by cai serve", "stream")
    n = req.get("n", 1)
    if n not in (None, 1):
        raise _RequestError(400, "only n=1 is supported", "n")
    best_of = req.get("best_of", 1)
    if best_of not in (None, 1):
        raise _RequestError(400, "only best_of=1 is supported", "best_of")


def _capabilities(backend: Any, what: str) -> tuple[Any, Any]:
    tok = getattr(backend, "tokenizer", None)
    token_logprobs = getattr(backend, "token_logprobs", None)
    if tok is None or token_logprobs is None:
        raise _RequestError(400, f"{what} is not supported by this backend")
    return tok, token_logprobs


def _number(req: dict[str, Any], key: str, default: float) -> float:
    value = req.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _RequestError(400, f"{key} must be a number", key)
    return float(value)


def _int_field(req: dict[str, Any], key: str, default: int, lo: int | None, hi: int | None) -> int:
    value = req.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise _RequestError(400, f"{key} must be an integer", key)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise _RequestError(400, f"{key} must be between {lo} and {hi}", key)
    return value


def _params(req: dict[str, Any], max_tokens: Any) -> GenerationParams:
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 0:
        raise _RequestError(400, "max_tokens must be a non-negative integer", "max_tokens")
    temperature = _number(req, "temperature", 1.0)
    top_p = _number(req, "top_p", 1.0)
    if not 0 <= temperature <= 2:
        raise _RequestError(400, "temperature must be between 0 and 2", "temperature")
    if not 0 < top_p <= 1:
        raise _RequestError(400, "top_p must be in (0, 1]", "top_p")
    seed = req.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise _RequestError(400, "seed must be an integer", "seed")
    stop = req.get("stop")
    if stop is None:
        stops: tuple[str, ...] = ()
    elif isinstance(stop, str):
        stops = (stop,)
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        stops = tuple(stop)
    else:
        raise _RequestError(400, "stop must be a string or a list of strings", "stop")
    return GenerationParams(max_new_tokens=max_tokens, temperature=temperature, top_p=top_p, seed=seed, stop=stops)


def _parse_messages(value: Any) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise _RequestError(400, "messages must be a non-empty list", "messages")
    out = []
    for m in value:
        if not isinstance(m, dict):
            raise _RequestError(400, "each message must be an object", "messages")
        role = m.get("role")
        if role == "developer":
            role = "system"
        if role not in ("system", "user", "assistant"):
            raise _RequestError(400, f"unsupported message role {role!r}", "messages")
        content = m.get("content")
        if isinstance(content, list):  # content parts: keep the text ones
            parts = []
            for part in content:
                if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                    raise _RequestError(400, "only text content parts are supported", "messages")
                parts.append(part["text"])
            content = "".join(parts)
        if content is None:
            content = ""
        if not isinstance(content, str):
            raise _RequestError(400, "message content must be a string", "messages")
        out.append({"role": role, "content": content})
    return out


def _parse_completion_prompts(value: Any, tok: Any) -> list[tuple[list[int], str]]:
    """Normalize a completions ``prompt`` to [(token ids, text)]."""

    def is_ids(x: Any) -> bool:
        return isinstance(x, list) and bool(x) and all(isinstance(t, int) and not isinstance(t, bool) for t in x)

    if isinstance(value, str):
        items: list[Any] = [value]
    elif is_ids(value):
        items = [value]
    elif isinstance(value, list) and value and all(isinstance(x, str) or is_ids(x) for x in value):
        items = value
    else:
        raise _RequestError(
            400, "prompt must be a string, a list of token ids, or a non-empty list of either", "prompt"
        )
    vocab = len(tok)
    out = []
    for item in items:
        if isinstance(item, str):
            ids = encode_text(tok, item, add_special_tokens=True)
            if not ids:
                raise _RequestError(400, "prompt must not be empty", "prompt")
            out.append((ids, item))
        else:
            if any(t < 0 or t >= vocab for t in item):
                raise _RequestError(400, f"token ids must be in [0, {vocab})", "prompt")
            out.append((list(item), tok.decode(item)))
    return out


def _token_str(tok: Any, token_id: int) -> str:
    return tok.decode([token_id])


def _chat_logprob(tok: Any, entry: Any, top: int) -> dict[str, Any]:
    s = _token_str(tok, entry.token_id)
    return {
        "token": s,
        "logprob": entry.logprob,
        "bytes": list(s.encode("utf-8")),
        "top_logprobs": [
            {"token": (t := _token_str(tok, i)), "logprob": lp, "bytes": list(t.encode("utf-8"))}
            for i, lp in entry.top[:top]
        ],
    }


def _completion_logprobs(
    tok: Any, shown: list[int], entries: list[Any], echo: bool, top: int, base_offset: int
) -> dict[str, Any]:
    """Legacy completions logprobs: tokens, token_logprobs (None for an echoed first token), top_logprobs."""
    tokens, token_logprobs, top_logprobs, offsets = [], [], [], []
    # entries cover shown[1:] when echoing (the first prompt token has no log-prob), else all of shown
    padded: list[Any] = ([None] if echo else []) + list(entries)
    offset = base_offset
    for token_id, entry in zip(shown, padded, strict=False):
        s = _token_str(tok, token_id)
        tokens.append(s)
        offsets.append(offset)
        offset += len(s)
        if entry is None:
            token_logprobs.append(None)
            top_logprobs.append(None)
        else:
            token_logprobs.append(entry.logprob)
            top_logprobs.append({_token_str(tok, i): lp for i, lp in entry.top[:top]} if top else {})
    return {"tokens": tokens, "token_logprobs": token_logprobs, "top_logprobs": top_logprobs, "text_offset": offsets}
