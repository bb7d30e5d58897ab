"""Atomic files and directories: a reader sees the old content or the new one, never a half-written one.

:func:`write_atomic` writes a file through a temp file beside it (fsynced, then ``os.replace``);
:func:`publish_dir` builds a directory in a temp dir beside the target and renames it into place,
moving an existing directory aside first and removing it only once the new one is in place.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (best effort: not every platform can open a directory)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_atomic(path: str | os.PathLike[str], data: str | bytes) -> None:
    """Replace ``path``'s content with ``data`` (text is written as UTF-8, newlines untouched).

    The file keeps its permission bits; a new file gets the ones a plain ``open`` would give. A symlink is
    followed (its target is replaced). On any failure the old file is left as it was and no temp file remains.
    """
    target = Path(os.path.realpath(path))
    target.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(OSError):
            os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(target.parent)


def write_json_atomic(path: str | os.PathLike[str], payload: Any) -> None:
    """:func:`write_atomic` of ``payload`` as indented JSON with sorted keys and a trailing newline."""
    write_atomic(path, json.dumps(payload, indent=2, ensure_ascii=False, sort_keys=True) + "\n")


def _fsync_tree(root: Path) -> None:
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
    for directory in [root, *(p for p in root.rglob("*") if p.is_dir() and not p.is_symlink())]:
        _fsync_dir(directory)


def replace_dir(new: str | os.PathLike[str], final: str | os.PathLike[str]) -> None:
    """Move the finished directory ``new`` (on the same file system) to ``final``, atomically.

    Whatever is at ``final`` (a directory, a file or a symlink) is moved aside first and removed only once
    ``new`` is in place; if the rename fails it is put back. ``new``'s files are fsynced before the rename.
    """
    new, final = Path(new), Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    _fsync_tree(new)
    aside = None
    if final.exists() or final.is_symlink():
        aside = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
        os.replace(final, aside / final.name)
    try:
        os.replace(new, final)
    except BaseException:
        if aside is not None:
            os.replace(aside / final.name, final)
            shutil.rmtree(aside, ignore_errors=True)
        raise
    _fsync_dir(final.parent)
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


def remove_stale(final: str | os.PathLike[str]) -> None:
    """Remove the temp and set-aside directories a killed :func:`publish_dir` of ``final`` left behind.

    Only call it where no other process can be publishing ``final`` at the same time (or under a lock).
    """
    final = Path(final)
    for pattern in (f".{final.name}.tmp-*", f".{final.name}.old-*"):
        for stale in final.parent.glob(pattern):
            shutil.rmtree(stale, ignore_errors=True)


@contextlib.contextmanager
def publish_dir(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty temp directory beside ``final``; on a clean exit it is fsynced and renamed to ``final``
    (see :func:`replace_dir`), on an exception it is removed and ``final`` is left as it was.

    The directory gets the permission bits a plain ``mkdir`` would give (it is meant to be shared).
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        os.chmod(tmp, 0o777 & ~_umask())
        yield tmp
        replace_dir(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def read_limited(path: str | os.PathLike[str], limit: int) -> bytes | None:
    """The bytes of the regular file ``path``, or None when it holds more than ``limit`` bytes.

    The size is checked before reading and at most ``limit + 1`` bytes are ever read (a file that
    reports size 0, as under ``/proc``, cannot make it read more). A device, FIFO or directory raises
    ``ValueError`` without blocking; OS errors propagate as ``OSError``.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = "a directory" if stat.S_ISDIR(info.st_mode) else "a device, FIFO or socket"
            raise ValueError(f"it is {kind}, not a regular file")
        if info.st_size > limit:
            return None
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(limit + 1 - size, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return None if size > limit else b"".join(chunks)
    finally:
        os.close(fd)
