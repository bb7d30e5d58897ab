"""The execution context: ONE place that decides where and how models run.

Every stage (SL-CAI, SFT, labelling, the preference model, PPO, DPO, evaluation, the empirical lint,
serving) asks an :class:`ExecutionContext` built from the program's (or target's) run parameters:

* :func:`resolve_device` turns the target's ``device`` into a concrete one (``auto``: ``cuda`` when torch
  sees a GPU, else ``cpu``); the context resolves it once, so every stage gets the same answer;
* the dtype policy (:func:`resolve_dtype`, :meth:`ExecutionContext.torch_dtype`, :attr:`ExecutionContext.bf16`):
  ``auto`` (the default CPU target's) is bfloat16 on a GPU and on a CPU with native bfloat16, else float32;
  bfloat16 means bfloat16 weights and mixed-precision training (float32 LoRA weights) on either;
* the backend factory (:meth:`ExecutionContext.backend`) for the target's backend (transformers, openai, vllm);
* model and adapter loading (:meth:`ExecutionContext.load`, :func:`with_adapter`), and :class:`ModelPool`,
  which loads each model spec once per job.
"""

from __future__ import annotations

import contextlib
import functools
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cai_dsl.compile.targets import BackendOptions
from cai_dsl.run.errors import RLAIFError

__all__ = [
    "ExecutionContext",
    "ModelPool",
    "check_adapter_dir",
    "cpu_has_native_bf16",
    "quiet_transformers",
    "resolve_device",
    "resolve_dtype",
    "with_adapter",
]


def resolve_device(name: str | None) -> str:
    """The concrete device of a target's ``device`` setting: ``auto`` is ``cuda`` when available, else ``cpu``."""
    if name in (None, "", "auto"):
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(name)


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes in bfloat16 natively (x86 AVX512-BF16 or AMX-BF16, read from ``/proc/cpuinfo`` once
    per process): there bfloat16 matmuls run about twice as fast as float32; elsewhere they are emulated and slower."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[-1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def resolve_dtype(name: str | None, device: str) -> str:
    """The concrete dtype of a target's ``dtype`` on ``device``: ``auto`` is ``bfloat16`` on a GPU and on a CPU with
    native bfloat16 (:func:`cpu_has_native_bf16`), else ``float32``; anything else stays as given."""
    if name in (None, ""):
        return "float32"
    if name != "auto":
        return str(name)
    if device.startswith("cuda") or (device == "cpu" and cpu_has_native_bf16()):
        return "bfloat16"
    return "float32"


@dataclass(frozen=True)
class ExecutionContext:
    """Device, dtype, backend and backend options of one job (see the module docstring).

    ``device`` and ``dtype`` are always concrete (``auto`` is resolved by :meth:`create`).
    """

    device: str = "cpu"
    dtype: str = "float32"
    backend_name: str = "transformers"
    options: BackendOptions = field(default_factory=BackendOptions)

    @classmethod
    def create(
        cls, device: str | None = "cpu", dtype: str | None = "float32", backend: str = "transformers",
        options: BackendOptions | None = None,
    ) -> "ExecutionContext":
        """A context with ``device`` and ``dtype`` resolved (:func:`resolve_device`, :func:`resolve_dtype`)."""
        concrete = resolve_device(device)
        return cls(concrete, resolve_dtype(dtype, concrete), backend, options or BackendOptions())

    @classmethod
    def of(cls, run: Any) -> "ExecutionContext":
        """The context of a program (``program.run``), a program, or a target."""
        run = getattr(run, "run", run)
        return cls.create(run.device, run.dtype, run.backend, run.backend_options)

    # -- dtype policy ------------------------------------------------------------------------------------

    @property
    def use_cpu(self) -> bool:
        """Whether the job runs on CPU (trainers' ``use_cpu``)."""
        return self.device == "cpu"

    @property
    def bf16(self) -> bool:
        """Whether trainers use bfloat16 mixed precision: the dtype is ``bfloat16`` (on CPU: bfloat16 base weights, the
        LoRA weights and optimizer state in float32, matmuls under CPU autocast; an isolated SFT step 1.5x faster than
        float32 here, ``bench/bench_dtype.py``, though `cai run`'s SFT stage did not gain: docs/benchmarks.md)."""
        return self.dtype == "bfloat16"

    def torch_dtype(self) -> Any:
        """The torch dtype models are loaded in."""
        import torch

        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[self.dtype]

    # -- models and backends -----------------------------------------------------------------------------

    def load(self, spec: str | os.PathLike[str], *, adapter: str | os.PathLike[str] | None = None, dtype: Any = None) -> Any:
        """A fresh ``LoadedModel`` of ``spec`` (optionally with ``adapter`` merged) on this device and dtype."""
        from cai_dsl.run.loading import load_model

        return load_model(spec, dtype=dtype if dtype is not None else self.torch_dtype(), device=self.device, adapter=adapter)

    def transformers_backend(self, loaded: Any, model: Any = None, *, batch_size: int | None = None) -> Any:
        """A TransformersBackend over ``loaded`` (or over ``model``, e.g. a PEFT-injected base, with its tokenizer)."""
        from cai_dsl.run.backends.transformers_backend import TransformersBackend
        from cai_dsl.run.loading import LoadedModel

        if model is not None:
            loaded = LoadedModel(model=model, tokenizer=loaded.tokenizer, name=loaded.name, path=loaded.path)
        return TransformersBackend(loaded, batch_size=batch_size or self.options.batch_size)

    def backend(self, spec: str, *, batch_size: int | None = None, loaded: Any = None) -> Any:
        """The target's backend serving model ``spec`` (for ``transformers``: loaded here, or ``loaded``)."""
        from cai_dsl.run.backends import make_backend

        opts = self.options
        if self.backend_name == "transformers":
            return self.transformers_backend(loaded if loaded is not None else self.load(spec), batch_size=batch_size)
        if self.backend_name == "openai":
            return make_backend(
                "openai",
                base_url=opts.base_url,
                model=spec,
                api_key=os.environ.get(opts.api_key_env) if opts.api_key_env else None,
                timeout=float(opts.timeout_s),
                concurrency=int(opts.max_concurrency),
                tokenizer=spec,
            )
        if self.backend_name == "batch":
            return make_backend("batch", directory=opts.batch_dir, model=spec, tokenizer=spec)
        return make_backend(
            self.backend_name,
            model=spec,
            tensor_parallel_size=int(opts.tensor_parallel_size),
            gpu_memory_utilization=float(opts.gpu_memory_utilization),
        )


class ModelPool:
    """Loads each model spec once per job (no global cache: the pool lives as long as the job)."""

    def __init__(self, device: str | None = "cpu", dtype: str | None = "float32", *, context: ExecutionContext | None = None) -> None:
        self.context = context or ExecutionContext.create(device, dtype)
        self.device = self.context.device
        self.dtype = self.context.dtype
        self._models: dict[str, Any] = {}

    @classmethod
    def of(cls, program: Any) -> "ModelPool":
        """The pool of a program's execution context."""
        return cls(context=ExecutionContext.of(program))

    def load(self, spec: str) -> Any:
        """The ``LoadedModel`` of ``spec`` (loaded on first use)."""
        from cai_dsl.run.loading import ModelError

        if spec not in self._models:
            try:
                self._models[spec] = self.context.load(spec)
            except ModelError as exc:
                raise RLAIFError(str(exc)) from None
        return self._models[spec]


def check_adapter_dir(adapter: Path) -> Path:
    """``adapter`` if it is a PEFT adapter directory, else RLAIFError saying what is missing."""
    adapter = Path(adapter)
    if not adapter.is_dir():
        raise RLAIFError(f"{adapter}: no such adapter directory (expected a PEFT adapter saved by `cai sl`/`cai rl`)")
    if not (adapter / "adapter_config.json").is_file():
        raise RLAIFError(f"{adapter}: not a PEFT adapter directory (no adapter_config.json)")
    return adapter


def with_adapter(
    loaded: Any, adapter: Path | None, *, adapter_name: str = "default", trainable: bool = False, what: str = "adapter"
) -> Any:
    """Wrap ``loaded.model`` with a PEFT adapter (returns the PeftModel), or None when ``adapter`` is None."""
    if adapter is None:
        return None
    from peft import PeftModel

    check_adapter_dir(adapter)
    try:
        with quiet_transformers():
            return PeftModel.from_pretrained(loaded.model, str(adapter), adapter_name=adapter_name, is_trainable=trainable)
    except Exception as exc:  # peft raises several types for a mismatched adapter
        raise RLAIFError(
            f"{adapter}: cannot load the {what} onto {loaded.name}: {type(exc).__name__}: {exc}. "
            "Was it trained on another base model?"
        ) from None


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' load reports, datasets' progress bars and library FutureWarnings for a block."""
    from transformers.utils import logging as hf_logging

    try:
        import datasets
    except ImportError:  # pragma: no cover - datasets is a dependency
        datasets = None
    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    ds_bars = datasets.is_progress_bar_enabled() if datasets is not None else False
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    if ds_bars:
        datasets.disable_progress_bars()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            # peft, saving a LoRA adapter of a model loaded from our cache: LoRA never trains the embeddings
            warnings.filterwarnings("ignore", message="Could not find a config file in", category=UserWarning)
            yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()
        if ds_bars:
            datasets.enable_progress_bars()
