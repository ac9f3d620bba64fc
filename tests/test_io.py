"""Atomic writes: the file a reader sees, its permissions, and damaged JSON."""

import os
import stat

import pytest
import torch

from grok_circuits.io import atomic_write_json, atomic_write_text, atomic_write_with, read_json


@pytest.fixture
def umask():
    """Set the process umask for one test, then restore it."""
    before = os.umask(0o022)
    os.umask(before)
    yield os.umask
    os.umask(before)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_follow_the_umask(tmp_path, umask, mask, mode):
    umask(mask)
    atomic_write_text(tmp_path / "a.txt", "new")
    atomic_write_text(tmp_path / "a.txt", "replaced")  # a replacement too
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == mode
    assert (tmp_path / "a.txt").read_text() == "replaced"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]  # no temporary file left


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o002, 0o664)])
def test_a_writer_that_replaces_the_file_still_gets_the_umask_mode(tmp_path, umask, mask, mode):
    # safetensors writes a file of its own (0o600) over the one atomic_write_with created
    from safetensors.torch import save_file

    umask(mask)
    path = tmp_path / "w.safetensors"
    atomic_write_with(path, lambda tmp: save_file({"w": torch.zeros(2)}, str(tmp)))
    assert stat.S_IMODE(path.stat().st_mode) == mode
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]


def test_read_json_names_a_damaged_file(tmp_path):
    atomic_write_json(tmp_path / "ok.json", {"a": [1, 2]})
    assert read_json(tmp_path / "ok.json") == {"a": [1, 2]}
    (tmp_path / "bad.json").write_bytes(bytes(range(128, 256)))
    with pytest.raises(ValueError, match=r"bad\.json is damaged"):
        read_json(tmp_path / "bad.json")
    (tmp_path / "cut.json").write_text('{"a": [1, ')
    with pytest.raises(ValueError, match=r"cut\.json is damaged"):
        read_json(tmp_path / "cut.json")
