"""Atomic writes and file locks."""

import os

import pytest

from ganbench.files import FILE_MODE, Locked, atomic_path, atomic_write_text, file_lock, read_json, write_json


def test_record_files_are_readable_by_others_like_any_new_file(tmp_path):
    write_json(tmp_path / "a.json", {"x": 1})
    with atomic_path(tmp_path / "b.png") as tmp:
        tmp.write_bytes(b"png")
    for name in ("a.json", "b.png"):
        assert (tmp_path / name).stat().st_mode & 0o777 == FILE_MODE
    assert FILE_MODE & 0o044 == 0o044 or os.umask(os.umask(0)) & 0o044   # readable unless the umask forbids it
    assert not list(tmp_path.glob(".*"))                                  # no temporary files left behind


def test_a_failed_write_leaves_the_old_file_and_no_debris(tmp_path):
    path = tmp_path / "a.json"
    write_json(path, {"x": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert read_json(path) == {"x": 1} and sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]
    atomic_write_text(path, '{"x": 2}')
    assert read_json(path) == {"x": 2}


def test_a_held_lock_refuses_a_second_holder_without_waiting(tmp_path):
    with file_lock(tmp_path / ".lock"):
        with pytest.raises(Locked):
            with file_lock(tmp_path / ".lock", wait=False):
                pass
    with file_lock(tmp_path / ".lock", wait=False):   # released: free again
        pass
