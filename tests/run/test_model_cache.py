"""The model cache's recorded sha256 (issue 13, item 8): a corrupt or truncated cache is detected and rebuilt."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from cai_dsl.run import model_cache
from cai_dsl.run.model_cache import MANIFEST_NAME, atomic_build, cache_dir_for, source_info, weights_state

WEIGHTS = "model.safetensors"


class _Builder:
    """A fake dequantizer: a config and 4 KiB of 'weights'; counts its calls."""

    calls = 0

    def __call__(self, out: Path) -> None:
        self.calls += 1
        (out / "config.json").write_text('{"model_type": "llama"}')
        (out / WEIGHTS).write_bytes(bytes(range(256)) * 16)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CAI_CACHE_DIR", str(tmp_path / "cache"))
    src = tmp_path / "fake.gguf"
    src.write_bytes(b"GGUF" + b"\x00" * 64)
    info = source_info(src)
    final = cache_dir_for(src, info)
    build = _Builder()
    atomic_build(final, src, info, build)
    return src, info, final, build


def _corrupt_same_size_keep_mtime(path: Path) -> None:
    st = path.stat()
    with open(path, "r+b") as fh:
        fh.seek(1000)
        byte = fh.read(1)
        fh.seek(1000)
        fh.write(bytes([byte[0] ^ 0xFF]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns


def test_build_records_the_sha256_of_every_file(cache):
    _, _, final, _ = cache
    manifest = json.loads((final / MANIFEST_NAME).read_text())
    assert set(manifest["sha256"]) == set(manifest["files"]) == {"config.json", WEIGHTS}
    assert all(len(h) == 64 for h in manifest["sha256"].values())
    assert weights_state(final) == ("ok", "")


def test_same_size_corruption_with_preserved_mtime_is_rebuilt(cache, caplog):
    src, info, final, build = cache
    assert weights_state(final) == ("ok", "")  # checked (and memoized) once in this process
    _corrupt_same_size_keep_mtime(final / WEIGHTS)
    assert model_cache.cache_is_valid(final, info)  # the cheap size check cannot see it
    assert weights_state(final) == ("mismatch", WEIGHTS)
    with caplog.at_level(logging.WARNING, logger="cai_dsl.run.model_cache"):
        assert atomic_build(final, src, info, build) == final
    assert build.calls == 2
    [record] = [r for r in caplog.records if "rebuilding" in r.getMessage()]
    assert WEIGHTS in record.getMessage() and "\n" not in record.getMessage()
    assert weights_state(final, full=True) == ("ok", "")


def test_truncated_weights_are_rebuilt(cache):
    src, info, final, build = cache
    (final / WEIGHTS).write_bytes(b"x" * 10)
    atomic_build(final, src, info, build)
    assert build.calls == 2 and weights_state(final, full=True) == ("ok", "")


def test_verify_rehashes_past_the_memo(cache, monkeypatch):
    src, info, final, build = cache
    recorded = json.loads((final / MANIFEST_NAME).read_text())["sha256"]
    _corrupt_same_size_keep_mtime(final / WEIGHTS)
    # a memo that still believes the old contents (as if the stat state had not changed)
    monkeypatch.setattr(model_cache, "_hash_of_state", lambda path, *stat: recorded[Path(path).name])
    assert weights_state(final) == ("ok", "")
    assert weights_state(final, full=True) == ("mismatch", WEIGHTS)
    atomic_build(final, src, info, build, verify=True)
    assert build.calls == 2


def test_a_cache_without_hashes_gets_them_without_a_rebuild(cache):
    src, info, final, build = cache
    manifest = json.loads((final / MANIFEST_NAME).read_text())
    recorded = manifest.pop("sha256")
    (final / MANIFEST_NAME).write_text(json.dumps(manifest))
    assert weights_state(final) == ("unrecorded", "")
    atomic_build(final, src, info, build)
    assert build.calls == 1
    assert json.loads((final / MANIFEST_NAME).read_text())["sha256"] == recorded
