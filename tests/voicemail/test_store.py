"""The voicemail store on a real data directory: settings, greetings, messages, ids, counts, effects, and
crash safety (a child process is SIGKILLed at each step of storing a message; the store must reopen with no
broken message, no stray file and ids that never repeat)."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from engine.media.wav import encode_wav
from engine.voicemail.flows import (
    Applied,
    ClearGreeting,
    DeleteMessage,
    DiscardRecording,
    MailboxOpened,
    MarkSaved,
    OpenMailbox,
    SetGreeting,
    SetName,
    SetPin,
    SetTemporaryActive,
    StoreMessage,
)
from engine.voicemail.model import (
    Folder,
    GreetingKind,
    MailboxFullError,
    VoicemailError,
    hash_pin,
    verify_pin,
)
from engine.voicemail.store import VoicemailStore

T0 = dt.datetime(2026, 3, 2, 14, 5, tzinfo=dt.UTC)
REPO = Path(__file__).resolve().parents[2]


def wav(seconds: float = 1.5, hz: float = 440.0) -> bytes:
    t = np.arange(int(8000 * seconds)) / 8000.0
    return encode_wav((np.sin(2 * np.pi * hz * t) * 8000).astype(np.int16))


@pytest.fixture
def store(tmp_path: Path) -> VoicemailStore:
    s = VoicemailStore.open(tmp_path)
    s.ensure_mailbox("201")
    return s


def recording(store: VoicemailStore, token: str, data: bytes | None = None) -> Path:
    path = Path(store.scratch_path(token))
    path.write_bytes(data if data is not None else wav())
    return path


def test_new_mailbox_has_default_pin_and_persists(tmp_path: Path) -> None:
    store = VoicemailStore.open(tmp_path)
    assert store.mailbox("201") is None
    box = store.ensure_mailbox("201", email="ann@example.com")
    assert verify_pin("0000", box.pin_hash)
    assert box.email == "ann@example.com" and box.max_messages == 100 and box.max_message_s == 180.0
    store.set_pin("201", "4321")
    reopened = VoicemailStore.open(tmp_path).mailbox("201")
    assert (
        reopened is not None
        and verify_pin("4321", reopened.pin_hash)
        and not verify_pin("0000", reopened.pin_hash)
    )
    assert (tmp_path / "voicemail" / "201" / "mailbox.json").is_file()
    assert VoicemailStore.open(tmp_path).mailbox_numbers() == ["201"]


def test_invalid_numbers_do_not_exist_and_cannot_be_created(store: VoicemailStore) -> None:
    assert store.mailbox("../201") is None
    with pytest.raises(VoicemailError) as exc:
        store.ensure_mailbox("../x")
    assert exc.value.field == "mailbox"
    with pytest.raises(VoicemailError):
        store.deposit("999", "/nowhere.wav", "", "", T0, 2.0)


def test_deposit_list_save_delete_counts(store: VoicemailStore, tmp_path: Path) -> None:
    a = store.deposit("201", recording(store, "a", wav(2.0)), "202", "Bob", T0, 2.0)
    b = store.deposit("201", recording(store, "b"), "", "", T0 + dt.timedelta(minutes=1), 1.5)
    assert (a.id, b.id) == (1, 2)
    assert Path(a.audio_path).read_bytes() == wav(2.0)
    assert not (store.scratch_dir / "a.wav").exists()
    assert store.counts("201") == (2, 0)
    store.mark_saved("201", 1)
    assert store.counts("201") == (1, 1)
    assert [m.id for m in store.messages("201")] == [2, 1]  # new first
    reopened = VoicemailStore.open(tmp_path)
    assert [(m.id, m.folder, m.caller, m.received_at) for m in reopened.messages("201")] == [
        (2, Folder.NEW, "", T0 + dt.timedelta(minutes=1)),
        (1, Folder.SAVED, "202", T0),
    ]
    reopened.delete_message("201", 2)
    reopened.delete_message("201", 2)  # idempotent
    assert reopened.counts("201") == (0, 1)
    assert not Path(b.audio_path).exists()
    c = reopened.deposit("201", recording(reopened, "c"), "203", "", T0, 1.5)
    assert c.id == 3  # ids are never reused, even for the deleted last one
    assert VoicemailStore.open(tmp_path).all_counts() == {"201": (1, 1)}


def test_caller_names_with_undecodable_bytes_round_trip(store: VoicemailStore, tmp_path: Path) -> None:
    name = "J\udcfcrgen"  # how the SIP parser keeps a byte that is not UTF-8
    store.deposit("201", recording(store, "a"), "202", name, T0, 2.0)
    assert VoicemailStore.open(tmp_path).messages("201")[0].caller_name == name


def test_mailbox_full(store: VoicemailStore) -> None:
    store.update_mailbox("201", max_messages=1)
    store.deposit("201", recording(store, "a"), "202", "", T0, 2.0)
    rec = recording(store, "b")
    with pytest.raises(MailboxFullError):
        store.deposit("201", rec, "202", "", T0, 2.0)
    assert rec.exists() and store.counts("201") == (1, 0)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_messages": 0}, "max_messages"),
        ({"max_messages": 1000}, "max_messages"),
        ({"max_message_s": 1.0}, "max_message_s"),
        ({"email": "not-an-address"}, "email"),
        ({"email": "a@b\r\nBcc: x@y"}, "email"),
    ],
)
def test_bad_settings_name_the_field(store: VoicemailStore, kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(VoicemailError) as exc:
        store.update_mailbox("201", **kwargs)  # type: ignore[arg-type]
    assert exc.value.field == field


def test_naive_time_refused(store: VoicemailStore) -> None:
    with pytest.raises(VoicemailError) as exc:
        store.deposit("201", recording(store, "a"), "", "", dt.datetime(2026, 1, 1), 2.0)
    assert exc.value.field == "received_at"


def test_greetings_name_and_temporary(store: VoicemailStore, tmp_path: Path) -> None:
    box = store.set_greeting("201", GreetingKind.UNAVAILABLE, recording(store, "g", wav(1.0)))
    assert Path(box.greetings[GreetingKind.UNAVAILABLE]).read_bytes() == wav(1.0)
    box = store.set_greeting_audio("201", GreetingKind.BUSY, wav(2.0))
    assert set(box.greetings) == {GreetingKind.UNAVAILABLE, GreetingKind.BUSY}
    store.set_name("201", recording(store, "n"))
    store.set_temporary_active("201", True)
    reopened = VoicemailStore.open(tmp_path).mailbox("201")
    assert reopened is not None and reopened.temporary_active and reopened.name_path is not None
    assert set(reopened.greetings) == {GreetingKind.UNAVAILABLE, GreetingKind.BUSY}
    box = store.clear_greeting("201", GreetingKind.BUSY)
    assert set(box.greetings) == {GreetingKind.UNAVAILABLE}
    assert not (tmp_path / "voicemail" / "201" / "greeting-busy.wav").exists()


def test_apply_every_effect(store: VoicemailStore) -> None:
    opened = store.apply(OpenMailbox("201"))
    assert isinstance(opened, MailboxOpened) and opened.mailbox is not None and opened.messages == ()
    assert store.apply(OpenMailbox("555")) == MailboxOpened(None)
    rec = recording(store, "m")
    applied = store.apply(StoreMessage("201", str(rec), "202", "Bob", T0, 2.0))
    assert isinstance(applied, Applied) and applied.message is not None and applied.message.id == 1
    assert store.apply(MarkSaved("201", 1)) == Applied()
    assert store.counts("201") == (0, 1)
    assert store.apply(DeleteMessage("201", 1)) == Applied()
    assert store.counts("201") == (0, 0)
    store.apply(SetGreeting("201", GreetingKind.TEMPORARY, str(recording(store, "t"))))
    store.apply(SetTemporaryActive("201", True))
    store.apply(SetName("201", str(recording(store, "n"))))
    store.apply(SetPin("201", hash_pin("9876", b"0123456789abcdef", 1)))
    box = store.mailbox("201")
    assert box is not None and box.temporary_active and GreetingKind.TEMPORARY in box.greetings
    assert box.name_path is not None and verify_pin("9876", box.pin_hash)
    store.apply(ClearGreeting("201", GreetingKind.TEMPORARY))
    discard = recording(store, "d")
    assert store.apply(DiscardRecording(str(discard))) == Applied()
    assert not discard.exists()
    box = store.mailbox("201")
    assert box is not None and GreetingKind.TEMPORARY not in box.greetings


def test_autocreate_only_for_known_mailboxes(tmp_path: Path) -> None:
    store = VoicemailStore.open(tmp_path, autocreate=lambda n: n in {"202"})
    opened = store.apply(OpenMailbox("202"))
    assert isinstance(opened, MailboxOpened) and opened.mailbox is not None
    assert store.apply(OpenMailbox("203")) == MailboxOpened(None)
    assert store.mailbox_numbers() == ["202"]


def test_full_mailbox_race_drops_the_recording(store: VoicemailStore) -> None:
    store.update_mailbox("201", max_messages=1)
    store.deposit("201", recording(store, "a"), "", "", T0, 2.0)
    late = recording(store, "b")
    assert store.apply(StoreMessage("201", str(late), "", "", T0, 2.0)) == Applied()
    assert not late.exists() and store.counts("201") == (1, 0)


def test_discard_refuses_paths_outside_scratch(store: VoicemailStore, tmp_path: Path) -> None:
    victim = tmp_path / "keep.wav"
    victim.write_bytes(b"x")
    with pytest.raises(VoicemailError):
        store.discard(victim)
    assert victim.exists()
    for token in ("", "../x", ".hidden", "a/b"):
        with pytest.raises(VoicemailError):
            store.scratch_path(token)


def test_open_ignores_and_cleans_half_written_files(tmp_path: Path) -> None:
    store = VoicemailStore.open(tmp_path)
    store.ensure_mailbox("201")
    store.deposit("201", recording(store, "a"), "202", "", T0, 2.0)
    box_dir = tmp_path / "voicemail" / "201"
    (box_dir / ".msg-000009.json.123.456.tmp").write_bytes(b'{"id": 9, "fol')  # torn temp write
    (box_dir / ".mailbox.json.1.2.tmp").write_bytes(b"{")
    (box_dir / "msg-000007.wav").write_bytes(wav())  # audio whose metadata never got written
    (store.scratch_dir / "in-progress.wav").write_bytes(b"RIFF")
    reopened = VoicemailStore.open(tmp_path)
    assert [m.id for m in reopened.messages("201")] == [1]
    assert sorted(p.name for p in box_dir.iterdir()) == ["mailbox.json", "msg-000001.json", "msg-000001.wav"]
    assert list(reopened.scratch_dir.iterdir()) == []


def test_unreadable_message_metadata_is_skipped(store: VoicemailStore, tmp_path: Path) -> None:
    store.deposit("201", recording(store, "a"), "202", "", T0, 2.0)
    store.deposit("201", recording(store, "b"), "202", "", T0, 2.0)
    meta = tmp_path / "voicemail" / "201" / "msg-000002.json"
    doc = json.loads(meta.read_text())
    meta.write_text(json.dumps({**doc, "received_at": "not a time"}))
    assert [m.id for m in VoicemailStore.open(tmp_path).messages("201")] == [1]


# -- crash safety --------------------------------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import datetime as dt, os, signal, sys
    from pathlib import Path
    from engine.voicemail.store import VoicemailStore

    data_dir, op, nth = sys.argv[1], sys.argv[2], int(sys.argv[3])
    store = VoicemailStore.open(data_dir)
    rec = Path(store.scratch_path("crash"))
    rec.write_bytes(Path(data_dir, "audio.wav").read_bytes())
    real = getattr(os, op)
    calls = 0

    def crashing(*args, **kwargs):
        global calls
        calls += 1
        if calls == nth:
            os.kill(os.getpid(), signal.SIGKILL)  # the power goes: no finally blocks, no flush
        return real(*args, **kwargs)

    setattr(os, op, crashing)
    store.deposit("201", rec, "202", "Bob", dt.datetime(2026, 3, 2, 14, 5, tzinfo=dt.UTC), 2.0)
    """
)

# Storing a message does 4 renames (id reservation, pending metadata, audio, metadata) and writes 2 files.
CRASH_POINTS = (
    [("replace", n) for n in (1, 2, 3, 4)]
    + [("write", n) for n in (1, 2)]
    + [("fsync", n) for n in (1, 3, 5)]
)


@pytest.mark.parametrize(("op", "nth"), CRASH_POINTS)
def test_crash_while_storing_leaves_no_broken_message(tmp_path: Path, op: str, nth: int) -> None:
    audio = wav(2.0, 300.0)
    (tmp_path / "audio.wav").write_bytes(audio)
    store = VoicemailStore.open(tmp_path)
    store.ensure_mailbox("201")
    first = store.deposit("201", recording(store, "first"), "203", "", T0, 1.5)
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path), op, str(nth)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr  # it really died mid-store
    reopened = VoicemailStore.open(tmp_path)
    messages = reopened.messages("201")
    ids = [m.id for m in messages]
    assert ids in ([first.id], [first.id, 2])  # rolled back or rolled forward, never half
    for m in messages:
        data = Path(m.audio_path).read_bytes()
        assert data == (audio if m.id == 2 else wav())
    if ids == [first.id, 2]:
        assert (
            messages[1].caller == "202" and messages[1].caller_name == "Bob" and messages[1].duration_s == 2.0
        )
    box_dir = tmp_path / "voicemail" / "201"
    leftovers = [p.name for p in box_dir.iterdir() if p.name.endswith((".tmp", ".pending"))]
    assert leftovers == []
    wavs = sorted(p.name for p in box_dir.glob("msg-*.wav"))
    assert wavs == [f"msg-{i:06d}.wav" for i in ids]
    assert list(reopened.scratch_dir.iterdir()) == []
    after = reopened.deposit("201", recording(reopened, "after"), "204", "", T0, 1.5)
    assert after.id > max(ids)
    assert reopened.mailbox("201") is not None  # mailbox.json still parses


def test_crash_after_the_audio_moved_rolls_forward(tmp_path: Path) -> None:
    (tmp_path / "audio.wav").write_bytes(wav(2.0, 300.0))
    VoicemailStore.open(tmp_path).ensure_mailbox("201")
    subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path), "replace", "4"], cwd=REPO, timeout=60, check=False
    )
    assert [m.id for m in VoicemailStore.open(tmp_path).messages("201")] == [1]


def test_crash_before_the_audio_moved_rolls_forward_from_scratch(tmp_path: Path) -> None:
    (tmp_path / "audio.wav").write_bytes(wav(2.0, 300.0))
    VoicemailStore.open(tmp_path).ensure_mailbox("201")
    subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path), "replace", "3"], cwd=REPO, timeout=60, check=False
    )
    assert [m.id for m in VoicemailStore.open(tmp_path).messages("201")] == [1]
    assert os.listdir(tmp_path / "voicemail" / ".scratch") == []


def test_a_change_by_another_process_is_seen_and_kept(store: VoicemailStore, tmp_path: Path) -> None:
    # The engine keeps mailboxes in memory; `pbx voicemail greeting set` runs beside it with its own store.
    assert store.mailbox("201") is not None  # loaded (and cached) by the engine
    admin = VoicemailStore.open(tmp_path, recover=False)
    admin.set_greeting_audio("201", GreetingKind.UNAVAILABLE, wav(hz=450.0))
    box = store.mailbox("201")
    assert box is not None and GreetingKind.UNAVAILABLE in box.greetings
    store.set_temporary_active("201", True)  # the engine's own write keeps the admin's greeting
    settings = json.loads((tmp_path / "voicemail" / "201" / "mailbox.json").read_text())
    assert settings["greetings"] == {"unavailable": "greeting-unavailable.wav"}
    assert settings["temporary_active"] is True
    box = admin.mailbox("201")
    assert box is not None and box.temporary_active  # and the other way round
