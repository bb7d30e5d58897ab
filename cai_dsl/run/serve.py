"""An OpenAI-compatible HTTP server over a local backend (stdlib ``http.server`` only).

Endpoints: ``GET /v1/models``, ``GET /health``, ``POST /v1/chat/completions`` (messages, max_tokens /
max_completion_tokens, temperature, top_p, seed, stop, n=1, logprobs, top_logprobs, and vLLM's
``continue_final_message`` / ``add_generation_prompt`` to continue a started assistant answer) and
``POST /v1/completions`` (prompt as text, token ids or a list of either; max_tokens, temperature, top_p, seed,
stop, logprobs, echo; ``max_tokens=0`` with ``echo`` returns only the prompt's log-probs).

Requests are handled on threads; every model call runs on one worker thread (:mod:`cai_dsl.run.serve_batching`),
which batches concurrent chat completions with equal decoding parameters (up to ``ServeLimits.max_batch``,
collected for ``ServeLimits.batch_window_s``); a ``/v1/completions`` request with a list of prompts is one
batch. Requests are parsed, validated and (for ``/v1/completions``) tokenized on their own thread first.  Streaming, tools and ``n > 1`` are not supported
(a 400 naming the field, :mod:`cai_dsl.run.serve_requests`).  :class:`ServeLimits` bounds the body size
(413 from ``Content-Length``, before reading), ``max_tokens``, prompts per request and the socket timeout.
LoRA adapters can be served next to the base (:class:`ServedAdapters`, ``cai serve --lora NAME=PATH``, like
vLLM's ``--lora-modules``): a request whose ``model`` is an adapter's name runs with that adapter active.
The server binds to 127.0.0.1 unless told otherwise; any other address needs an API key.  ``transform(messages, answer) -> answer`` post-processes
every chat answer (the hook for a constitutional critique/revise loop); it runs on the model worker, so it
must call the backend directly, never this server over HTTP.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import json
import socket
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cai_dsl.core.errors import CaiError

from cai_dsl.run.backends.base import Backend, BackendError, Prompt, continuation_ids, encode_text, prompt_ids
from cai_dsl.run.prompts import PromptRenderer
from cai_dsl.run.serve_adapters import ServedAdapters, load_served_adapters
from cai_dsl.run.serve_batching import ModelWorker
from cai_dsl.run.serve_requests import (
    CHAT_FIELDS,
    COMPLETION_FIELDS,
    RequestError,
    ServeLimits,
    check_fields,
    int_field,
    parse_completion_prompts,
    parse_messages,
    parse_params,
)

__all__ = [
    "ServeError", "ServeLimits", "ServedAdapters", "Transform", "load_served_adapters", "chat_prompt", "is_loopback", "make_server", "require_api_key",
    "run_server", "serve_forever",
]

Transform = Callable[[list[dict[str, str]], str], str]
"""``transform(messages, answer) -> answer``: rewrites each chat answer before it is returned."""

DEFAULT_CHAT_MAX_TOKENS = 512
DEFAULT_COMPLETION_MAX_TOKENS = 16


class ServeError(CaiError):
    """The server cannot start as configured (e.g. a non-loopback address without an API key)."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def require_api_key(host: str, api_key: str | None) -> None:
    """Raise :class:`ServeError` when ``host`` is not loopback and there is no API key."""
    if not api_key and not is_loopback(host):
        raise ServeError(
            f"serving on {host} (not a loopback address) needs an API key: pass --api-key-env NAME "
            "or --api-key KEY, or bind to 127.0.0.1"
        )


class CAIServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer holding the backend, its model worker and the answer transform."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # connections waiting to be accepted (the default, 5, refuses bursts of clients)

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
        limits: ServeLimits | None = None,
        adapters: ServedAdapters | None = None,
    ) -> None:
        require_api_key(address[0], api_key)
        self.adapters = adapters
        self.backend = backend
        self.limits = limits or ServeLimits()
        self.transform = transform
        self.renderer = renderer
        self.model_name = model_name or _default_model_name(backend)
        self.api_key = api_key
        self.verbose = verbose
        self.worker = ModelWorker(backend, max_batch=self.limits.max_batch, window_s=self.limits.batch_window_s,
                                  max_wait_s=self.limits.batch_max_wait_s,
                                  select=adapters.use if adapters is not None else None)
        self.names = {self.model_name, str(getattr(backend, "name", self.model_name))}
        if adapters is not None and (clash := self.names & set(adapters.names)):
            raise ServeError(f"an adapter is named like the base model: {sorted(clash)[0]!r}")
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request, client_address) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def server_close(self) -> None:
        """Close the socket, end the connections still open (idle keep-alive clients: their handler threads
        would outlive the server, and a process exiting with them aborted), stop the model worker."""
        super().server_close()
        with self._connections_lock:
            open_now = list(self._connections)
        for conn in open_now:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self.worker.close()

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
    limits: ServeLimits | None = None,
    adapters: ServedAdapters | None = None,
) -> CAIServer:
    """Create (bind, not start) an OpenAI-compatible server over ``backend``; ``port=0`` picks a free port.

    ``transform(messages, answer)`` rewrites every chat answer; ``api_key`` makes the server require
    ``Authorization: Bearer <api_key>`` (required for a non-loopback ``host``: else :class:`ServeError`);
    ``limits`` bounds requests (:class:`ServeLimits`).  Start it with ``serve_forever(server)`` or ``server.serve_forever()``
    in a thread; its URL is ``server.url``. ``adapters`` (:func:`load_served_adapters`) are served under their
    names next to the base. With a ``renderer`` (a constitution's
    :class:`~cai_dsl.run.prompts.PromptRenderer`) chat prompts are the policy's prompts (:func:`chat_prompt`).
    """
    return CAIServer(
        (host, port), backend, transform=transform, model_name=model_name, api_key=api_key, verbose=verbose,
        renderer=renderer, limits=limits, adapters=adapters,
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
    limits: ServeLimits | None = None,
    adapters: Mapping[str, str | Path] | None = None,
) -> None:
    """Load ``model_spec`` into a transformers backend (with ``adapters``, served name -> LoRA directory, served
    next to it) and serve it until interrupted (``cai serve``)."""
    require_api_key(host, api_key)  # before loading the model
    from cai_dsl.run.backends.transformers_backend import TransformersBackend
    from cai_dsl.run.loading import DEFAULT_MODEL, load_model

    served = None
    if adapters:
        backend, served = load_served_adapters(load_model(model_spec or DEFAULT_MODEL), adapters, batch_size=batch_size)
    else:
        backend = TransformersBackend(model_spec or DEFAULT_MODEL, batch_size=batch_size)
    server = make_server(backend, host, port, transform=transform, api_key=api_key, limits=limits, adapters=served)
    if not is_loopback(host):
        print(f"warning: serving on {host}, reachable from other machines", file=sys.stderr)
    lora = f" with adapter(s) {', '.join(served.names)}" if served else ""
    print(f"serving {backend.name}{lora} at {server.url} (Ctrl-C to stop)", file=sys.stderr)
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

    def setup(self) -> None:
        self.timeout = self.server.limits.timeout_s  # a half-sent request cannot hold a thread for longer
        super().setup()

    def _send_json(self, status: int, payload: Any) -> None:
        body = json.dumps(payload).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
        except OSError:  # the client went away (or stopped reading): nothing to answer
            self.close_connection = True

    def _send_error(self, err: RequestError) -> None:
        self._send_json(err.status, err.payload())

    def _authorize(self) -> None:
        key = self.server.api_key
        given = self.headers.get("Authorization", "").encode("utf-8", "surrogateescape")
        if key and not hmac.compare_digest(given, f"Bearer {key}".encode()):
            raise RequestError(401, "invalid or missing API key", kind="authentication_error", code="invalid_api_key")

    def _read_body(self) -> bytes:
        """Read the whole request body up front, so that error replies leave the connection reusable; the size
        is checked from ``Content-Length`` before anything is read."""
        limit = self.server.limits.max_body_bytes
        length_header = self.headers.get("Content-Length")
        self.close_connection = True  # until the body has been read whole
        if length_header is None:
            raise RequestError(411, "a Content-Length header is required")
        try:
            length = int(length_header)
        except ValueError:
            raise RequestError(400, "invalid Content-Length header") from None
        if length < 0:
            raise RequestError(400, "invalid Content-Length header")
        if length > limit:
            raise RequestError(413, f"request body larger than {limit} bytes", code="request_too_large")
        try:
            raw = self.rfile.read(length)
        except TimeoutError:
            raise RequestError(408, "timed out reading the request body", code="timeout") from None
        if len(raw) < length:
            raise RequestError(400, "request body shorter than its Content-Length")
        self.close_connection = False
        return raw

    @staticmethod
    def _parse_json(raw: bytes) -> dict[str, Any]:
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise RequestError(400, f"request body is not valid JSON: {exc}") from None
        except RecursionError:
            raise RequestError(400, "request body is not valid JSON: nested too deeply") from None
        if not isinstance(data, dict):
            raise RequestError(400, "request body must be a JSON object")
        return data

    def _check_model(self, req: dict[str, Any]) -> str | None:
        """The adapter a request names (None: the base model); 404 for a model this server does not serve."""
        model = req.get("model")
        if model is None:
            return None
        if not isinstance(model, str):
            raise RequestError(400, "model must be a string", "model")
        adapters = self.server.adapters
        if adapters is not None and model in adapters.names:
            return model
        if model not in self.server.names:
            served = [self.server.model_name, *(adapters.names if adapters else ())]
            raise RequestError(
                404, f"the model {model!r} does not exist (this server serves {', '.join(map(repr, served))})",
                "model", code="model_not_found",
            )
        return None

    def _dispatch(self, handler: Callable[[], Any]) -> None:
        try:
            self._send_json(200, handler())
        except RequestError as err:
            self._send_error(err)
        except (BackendError, ValueError, TypeError) as exc:
            self._send_error(RequestError(400, str(exc)))
        except Exception as exc:  # noqa: BLE001 - a request must never kill the server
            traceback.print_exc(file=sys.stderr)
            self._send_error(RequestError(500, f"internal error: {type(exc).__name__}: {exc}", kind="server_error"))

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        path = self.path.split("?", 1)[0].rstrip("/")
        endpoints = {
            "/v1/models": self._models, "/models": self._models,
            "/health": lambda: {"status": "ok"}, "/v1/health": lambda: {"status": "ok"},
        }

        def handle() -> Any:
            self._authorize()
            if path not in endpoints:
                raise RequestError(404, f"unknown endpoint GET {path}")
            return endpoints[path]()

        self._dispatch(handle)

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        path = self.path.split("?", 1)[0].rstrip("/")
        endpoints = {
            "/v1/chat/completions": self._chat, "/chat/completions": self._chat,
            "/v1/completions": self._completions, "/completions": self._completions,
        }

        def handle() -> Any:
            # the body (at most limits.max_body_bytes) is read first: a reply with unread data resets the socket
            raw = self._read_body()
            self._authorize()
            if path not in endpoints:
                raise RequestError(404, f"unknown endpoint POST {path}")
            req = self._parse_json(raw)
            return endpoints[path](req, self._check_model(req))

        self._dispatch(handle)

    # -- endpoints -----------------------------------------------------------------------------------------

    def _models(self) -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": self.server.model_name, "object": "model", "created": 0, "owned_by": "cai-dsl"}] + [
                {"id": name, "object": "model", "created": 0, "owned_by": "cai-dsl", "parent": self.server.model_name}
                for name in (self.server.adapters.names if self.server.adapters else ())
            ],
        }

    def _chat(self, req: dict[str, Any], adapter: str | None = None) -> dict[str, Any]:
        backend, worker, limits = self.server.backend, self.server.worker, self.server.limits
        check_fields(req, CHAT_FIELDS)
        messages = parse_messages(req.get("messages"))
        continue_final = bool(req.get("continue_final_message", False))
        if continue_final and messages[-1]["role"] != "assistant":
            raise RequestError(400, "continue_final_message needs a final assistant message", "messages")
        prompt = chat_prompt(messages, self.server.renderer, continue_final=continue_final)
        budget = "max_completion_tokens" if req.get("max_completion_tokens") is not None else "max_tokens"
        params = parse_params(req, budget, DEFAULT_CHAT_MAX_TOKENS, limits)
        if req.get("logprobs") is not None and not isinstance(req["logprobs"], bool):
            raise RequestError(400, "logprobs must be a boolean", "logprobs")
        want_logprobs = bool(req.get("logprobs", False))
        top = int_field(req, "top_logprobs", 0, 0, limits.max_top_logprobs)
        if top and not want_logprobs:
            raise RequestError(400, "top_logprobs requires logprobs=true", "top_logprobs")
        if want_logprobs:
            tok, token_logprobs = _capabilities(backend, "logprobs", "logprobs")
        gen = worker.generate(prompt, params, adapter)  # batched with concurrent requests for the same model
        answer = gen.text
        transform = self.server.transform
        if transform is not None:  # it calls the backend: on the worker
            answer = worker.call(lambda: transform([dict(m) for m in messages], gen.text), adapter)
        if not isinstance(answer, str):
            raise TypeError("the answer transform must return a string")
        logprobs = None
        if want_logprobs:
            text = backend.render(prompt)
            pids = prompt_ids(tok, text)
            cids = continuation_ids(tok, text, pids, answer)
            entries = worker.call(lambda: token_logprobs([pids + cids], [len(pids)], top_k=top)[0], adapter) if cids else []
            logprobs = {"content": [_chat_logprob(tok, e, top) for e in entries]}
        completion_tokens = gen.completion_tokens
        if answer != gen.text and getattr(backend, "tokenizer", None) is not None:
            completion_tokens = len(encode_text(backend.tokenizer, answer))
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": adapter or self.server.model_name,
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

    def _completions(self, req: dict[str, Any], adapter: str | None = None) -> dict[str, Any]:
        backend, worker, limits = self.server.backend, self.server.worker, self.server.limits
        check_fields(req, COMPLETION_FIELDS)
        if req.get("suffix"):
            raise RequestError(400, "suffix is not supported", "suffix", code="unsupported_parameter")
        tok, token_logprobs = _capabilities(backend, "/v1/completions")
        generate_ids = getattr(backend, "generate_ids", None)
        if generate_ids is None:
            raise RequestError(400, "this backend cannot serve /v1/completions")
        # tokenized on the request's thread: encoding (no padding/truncation change) only reads the tokenizer
        prompts = parse_completion_prompts(req.get("prompt"), tok, limits)
        params = parse_params(req, "max_tokens", DEFAULT_COMPLETION_MAX_TOKENS, limits)
        echo = bool(req.get("echo", False))
        n_logprobs: int | None = None
        if req.get("logprobs") is not None and req.get("logprobs") is not False:
            n_logprobs = int_field(req, "logprobs", 0, 0, limits.max_top_logprobs)
        gens = worker.call(lambda: generate_ids([ids for ids, _ in prompts], params), adapter)
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
        entries_all = None
        if n_logprobs is not None:
            entries_all = worker.call(lambda: token_logprobs(lp_seqs, lp_starts, top_k=n_logprobs), adapter)
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
            "model": adapter or self.server.model_name,
            "choices": choices,
            "usage": {
                "prompt_tokens": total_prompt,
                "completion_tokens": total_completion,
                "total_tokens": total_prompt + total_completion,
            },
        }


# -------------------------------------------------------------------------------------------------------------
# helpers


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


def _capabilities(backend: Any, what: str, param: str | None = None) -> tuple[Any, Any]:
    tok = getattr(backend, "tokenizer", None)
    token_logprobs = getattr(backend, "token_logprobs", None)
    if tok is None or token_logprobs is None:
        raise RequestError(400, f"{what} is not supported by this backend", param, code="unsupported_parameter")
    return tok, token_logprobs


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
