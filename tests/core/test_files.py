"""Atomic files and directory publish: a reader sees the old content or the new, never a mix."""

import os
import stat

import pytest

from cai_dsl.core import files
from cai_dsl.core.files import publish_dir, remove_stale, replace_dir, write_atomic, write_json_atomic


def test_write_atomic_replaces_and_leaves_no_temp(tmp_path):
    target = tmp_path / "out" / "x.json"
    write_atomic(target, "one")
    write_atomic(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in target.parent.iterdir()] == ["x.json"]


def test_write_atomic_keeps_mode_follows_symlinks_and_writes_bytes_unchanged(tmp_path):
    target = tmp_path / "a.const"
    target.write_text("old")
    os.chmod(target, 0o640)
    link = tmp_path / "link.const"
    link.symlink_to(target)
    write_atomic(link, "new\r\n\u2028")
    assert link.is_symlink() and target.read_bytes() == "new\r\n\u2028".encode()
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    write_atomic(tmp_path / "b.bin", b"\x00\xff")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\xff"


def test_a_failure_mid_write_leaves_the_old_file_intact(tmp_path, monkeypatch):
    target = tmp_path / "x.json"
    write_json_atomic(target, {"v": 1})

    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(files.os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, "half")
    assert target.read_text() == '{\n  "v": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_publish_dir_replaces_a_directory_and_cleans_up(tmp_path):
    final = tmp_path / "adapter"
    with publish_dir(final) as tmp:
        (tmp / "w.bin").write_bytes(b"one")
    with publish_dir(final) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".adapter.tmp-")
        (tmp / "w.bin").write_bytes(b"two")
    assert (final / "w.bin").read_bytes() == b"two"
    assert [p.name for p in tmp_path.iterdir()] == ["adapter"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(final.stat().st_mode) == 0o777 & ~umask  # shared, not mkdtemp's private 0700


def test_a_failed_publish_leaves_the_old_directory(tmp_path):
    final = tmp_path / "policy"
    with publish_dir(final) as tmp:
        (tmp / "w.bin").write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with publish_dir(final) as tmp:
            (tmp / "w.bin").write_bytes(b"new")
            raise RuntimeError("killed while saving")
    assert (final / "w.bin").read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["policy"]


def test_replace_dir_replaces_a_file_or_symlink_and_restores_on_failure(tmp_path, monkeypatch):
    final = tmp_path / "cache"
    final.write_text("a stale file")
    new = tmp_path / "new"
    new.mkdir()
    (new / "m.json").write_text("{}")
    replace_dir(new, final)
    assert (final / "m.json").read_text() == "{}" and not new.exists()
    other = tmp_path / "other"
    other.mkdir()
    real_replace = os.replace

    def failing(src, dst):
        if str(src) == str(other):
            raise OSError("cross-device")
        return real_replace(src, dst)

    monkeypatch.setattr(files.os, "replace", failing)
    with pytest.raises(OSError, match="cross-device"):
        replace_dir(other, final)
    assert (final / "m.json").read_text() == "{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "other"]


def test_remove_stale_removes_leftovers_of_killed_publishes(tmp_path):
    final = tmp_path / "adapter"
    for name in (".adapter.tmp-dead", ".adapter.old-dead", ".other.tmp-keep"):
        (tmp_path / name).mkdir()
    remove_stale(final)
    assert [p.name for p in tmp_path.iterdir()] == [".other.tmp-keep"]
