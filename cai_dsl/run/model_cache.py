"""The atomic, locked and verified cache of dequantized GGUF models (a directory with a ``cai-cache.json``).

A cache is built in a temporary directory beside its final place, completed by a manifest written last and
renamed into place, all under an exclusive file lock, so an interrupted or concurrent build never leaves a
half-written cache that looks valid.  The manifest records the source's fingerprint and, for every file, its
size and sha256 (taken at build time).

Verification (:func:`weights_state`): the sizes are checked on every use; the sha256 of each file is checked
the first time a process uses the file and again whenever its size, mtime, ctime or inode changes (so a
same-size rewrite is caught even when the mtime was put back: that changes the ctime), and every time with
``full=True`` (``load_model(..., verify=True)``).  The hash is not repeated on every load of one process
because it costs more than the load: the 538 MB embedded model hashes in ~1.2 s (~0.45 GB/s, warm page
cache, a shared 2-core machine) and loads in ~0.3 s.  A mismatch logs one warning line and the cache is
rebuilt.  A cache written before hashes were recorded gets them (trusting its sizes) on first use.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

from cai_dsl.core.files import publish_dir, remove_stale, write_json_atomic
from cai_dsl.core.hashing import sha256_file

__all__ = [
    "MANIFEST_FORMAT",
    "MANIFEST_NAME",
    "atomic_build",
    "cache_dir_for",
    "cache_is_valid",
    "cache_root",
    "file_lock",
    "lock_path",
    "source_info",
    "weights_state",
]

MANIFEST_NAME = "cai-cache.json"
MANIFEST_FORMAT = 1
_FINGERPRINT_CHUNK = 1 << 20  # 1 MiB read at each end of the source file
_log = logging.getLogger(__name__)


def cache_root() -> Path:
    """Return the cache directory of cai-dsl (``$CAI_CACHE_DIR`` or the platform user cache dir)."""
    override = os.environ.get("CAI_CACHE_DIR")
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("cai-dsl"))


def source_info(source: Path) -> dict[str, Any]:
    """Cheap content fingerprint of a (possibly large) source file: size + hash of its first/last MiB."""
    size = source.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with open(source, "rb") as fh:
        digest.update(fh.read(_FINGERPRINT_CHUNK))
        if size > 2 * _FINGERPRINT_CHUNK:
            fh.seek(size - _FINGERPRINT_CHUNK)
            digest.update(fh.read(_FINGERPRINT_CHUNK))
        elif size > _FINGERPRINT_CHUNK:
            digest.update(fh.read())
    return {"name": source.name, "size": size, "fingerprint": digest.hexdigest()}


def cache_dir_for(source: Path, info: dict[str, Any]) -> Path:
    """The cache directory of ``source`` (its stem and fingerprint)."""
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in source.stem)[:80]
    return cache_root() / "models" / f"{stem}-{info['fingerprint'][:16]}"


def _read_manifest(final: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((final / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def cache_is_valid(final: Path, info: dict[str, Any]) -> bool:
    """A cache is valid when its manifest (written last) matches the source and lists files that all exist
    with their recorded sizes (the cheap check; :func:`weights_state` checks the contents)."""
    manifest = _read_manifest(final)
    if manifest is None or manifest.get("format") != MANIFEST_FORMAT:
        return False
    source = manifest.get("source") or {}
    if source.get("size") != info["size"] or source.get("fingerprint") != info["fingerprint"]:
        return False
    files = manifest.get("files")
    if not isinstance(files, dict) or "config.json" not in files:
        return False
    for rel, size in files.items():
        p = final / rel
        try:
            if not p.is_file() or p.stat().st_size != size:
                return False
        except OSError:
            return False
    return True


@functools.lru_cache(maxsize=256)
def _hash_of_state(path: str, size: int, mtime_ns: int, ctime_ns: int, inode: int) -> str:
    """sha256 of ``path`` in the stat state given (a memo: a file is hashed again once its stat changes)."""
    return sha256_file(path)


def _file_hash(path: Path, full: bool) -> str:
    if full:
        return sha256_file(path)
    st = path.stat()
    return _hash_of_state(str(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def weights_state(final: Path, *, full: bool = False) -> tuple[Literal["ok", "unrecorded", "mismatch"], str]:
    """Whether the files of a (size-valid) cache match their recorded sha256: ``("ok", "")``,
    ``("unrecorded", "")`` when the manifest has no hashes, or ``("mismatch", file)``; ``full`` rehashes."""
    manifest = _read_manifest(final) or {}
    hashes = manifest.get("sha256")
    if not isinstance(hashes, dict) or not hashes:
        return "unrecorded", ""
    for rel, expected in sorted(hashes.items()):
        try:
            if _file_hash(final / rel, full) != expected:
                return "mismatch", rel
        except OSError:
            return "mismatch", rel
    return "ok", ""


def _file_table(root: Path) -> tuple[dict[str, int], dict[str, str]]:
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name != MANIFEST_NAME)
    return (
        {str(p.relative_to(root)): p.stat().st_size for p in files},
        {str(p.relative_to(root)): sha256_file(p) for p in files},
    )


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` (created if missing) for the duration of the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def lock_path(final: Path) -> Path:
    """The lock file of the cache directory ``final``."""
    return final.parent / f".{final.name}.lock"


def atomic_build(
    final: Path, source: Path, info: dict[str, Any], build: Callable[[Path], None], *, verify: bool = False
) -> Path:
    """Return ``final`` once it holds a valid, verified cache of ``source``, building it with ``build(tmpdir)``
    if needed (``verify``: rehash every file even if this process checked it already).

    Safe against concurrent callers (an exclusive flock; latecomers wait and reuse the result), interrupted
    builds (leftover temp dirs are removed; a cache without a valid manifest is rebuilt) and corrupted files
    (a sha256 mismatch: one warning, then a rebuild).
    """
    if cache_is_valid(final, info) and weights_state(final, full=verify)[0] == "ok":
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(lock_path(final)):
        if cache_is_valid(final, info):  # possibly built by another process while we waited
            state, bad = weights_state(final, full=verify)
            if state == "ok":
                return final
            if state == "unrecorded":  # a cache from before hashes were recorded: record them now
                manifest = _read_manifest(final) or {}
                write_json_atomic(final / MANIFEST_NAME, {**manifest, "sha256": _file_table(final)[1]})
                return final
            _log.warning("warning: the cached model file %s does not match its sha256; rebuilding the cache", final / bad)
        remove_stale(final)  # under the lock: no other builder is running
        with publish_dir(final) as tmp:
            build(tmp)
            files, hashes = _file_table(tmp)
            manifest = {
                "format": MANIFEST_FORMAT,
                "source": {**info, "path": str(source), "sha256": sha256_file(source)},
                "files": files,
                "sha256": hashes,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            write_json_atomic(tmp / MANIFEST_NAME, manifest)
    return final
