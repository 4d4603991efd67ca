"""engine.files: a durable write leaves the old file or the new one, never a half, and no temp file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.files import TMP_SUFFIX, InUseError, hold_lock, move_durably, write_atomic


def test_write_atomic_replaces_the_whole_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "greeting.wav"
    write_atomic(target, b"old")
    write_atomic(str(target), b"new" * 100_000)
    assert target.read_bytes() == b"new" * 100_000
    assert [p.name for p in tmp_path.iterdir()] == ["greeting.wav"]


def test_a_failed_write_keeps_the_old_file_and_removes_its_temp(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "mailbox.json"
    write_atomic(target, b"{}")

    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        write_atomic(target, b'{"pin": "new"}')
    monkeypatch.undo()
    assert target.read_bytes() == b"{}"
    assert not list(tmp_path.glob(f"*{TMP_SUFFIX}"))


def test_move_durably_moves_a_finished_file_into_place(tmp_path: Path) -> None:
    source, dest = tmp_path / "scratch.wav", tmp_path / "box" / "msg-000001.wav"
    dest.parent.mkdir()
    source.write_bytes(b"RIFF")
    move_durably(source, dest)
    assert dest.read_bytes() == b"RIFF" and not source.exists()


def test_hold_lock_is_exclusive_names_the_holder_and_is_released_on_close(tmp_path: Path) -> None:
    path = tmp_path / "pbx.lock"
    fd = hold_lock(path, "the data directory X")
    try:
        assert path.read_text() == f"{os.getpid()}\n"
        held = rf"the data directory X is in use by another process \(pid {os.getpid()}\)"
        with pytest.raises(InUseError, match=held):
            hold_lock(path, "the data directory X")
    finally:
        os.close(fd)
    os.close(hold_lock(path, "the data directory X"))  # free again once the holder closed it
