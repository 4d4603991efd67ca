"""Voicemail on disk: settings, greetings, recorded names and messages under ``<data_dir>/voicemail/``.

Layout (one directory per mailbox; the number is 1-10 digits, so it is a safe file name)::

    voicemail/
      .scratch/                 recordings in progress and not yet accepted (emptied on open)
      201/
        mailbox.json            settings: PIN hash, temporary on/off, greeting files, e-mail, limits, next id
        greeting-unavailable.wav, greeting-busy.wav, greeting-temporary.wav, name.wav
        msg-000007.wav          a message's audio (8 kHz 16-bit mono)
        msg-000007.json         its metadata: caller, caller name, time, duration, folder (new/saved)

Durability (ARCHITECTURE "Storage"; nothing is lost on a crash): every file is written to a temp file in the
same directory, fsynced and renamed into place, and the directory is fsynced. A message exists exactly when
its ``.json`` exists. Storing one goes: reserve the id in ``mailbox.json``; write ``msg-N.pending`` (the
metadata plus where the recording is); move the recording to ``msg-N.wav``; rename the pending file to
``msg-N.json``. Opening the store rolls an interrupted store forward (the recording is still in the scratch
directory or already moved), removes temp files and audio no metadata refers to (a delete interrupted
between its two unlinks), and empties the scratch directory. Ids only grow: the next one is kept in
``mailbox.json``, never derived from the files, so a deleted message's id is not reused.

The store is synchronous and thread-safe (one lock). It is a shell module: the call controller runs it in an
executor (ARCHITECTURE rule 4), e.g. ``await loop.run_in_executor(None, store.apply, effect)``. One process
owns a data directory (as it owns ``pbx.sqlite3``) and keeps its mailboxes in memory; an admin command run
beside it (``pbx voicemail greeting set``) changes ``mailbox.json`` only, so a cached mailbox is checked
against that file (inode, size, mtime: every write replaces it) on each use and read again when another
process changed it. (Two processes writing at the same instant can still lose one update: the admin command
is rare and the window is one file write.)
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from engine.files import TMP_SUFFIX, fsync_dir, move_durably, write_atomic
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
    VoicemailEffect,
)
from engine.voicemail.model import (
    DEFAULT_MAX_MESSAGE_S,
    DEFAULT_MAX_MESSAGES,
    DEFAULT_PIN,
    PIN_SALT_BYTES,
    Folder,
    GreetingKind,
    Mailbox,
    MailboxFullError,
    MessageInfo,
    VoicemailError,
    hash_pin,
    validate_mailbox_number,
)

logger = logging.getLogger(__name__)

SCRATCH: Final = ".scratch"
SETTINGS: Final = "mailbox.json"
NAME_FILE: Final = "name.wav"
FORMAT_VERSION: Final = 1
_PENDING: Final = ".pending"


def greeting_file(kind: GreetingKind) -> str:
    return f"greeting-{kind.value}.wav"


def message_stem(message_id: int) -> str:
    return f"msg-{message_id:06d}"




# -- the store ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Box:
    """One mailbox in memory: its settings document, its messages by id, and the identity of the
    ``mailbox.json`` it was read from or last wrote (see ``_stamp``)."""

    settings: dict[str, Any]
    messages: dict[int, MessageInfo] = field(default_factory=dict)
    stamp: tuple[int, int, int] | None = None


def _stamp(path: Path) -> tuple[int, int, int] | None:
    """(inode, size, mtime_ns) of ``path``, None when it is missing: a file replaced by another process's
    atomic write has a new inode."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


class VoicemailStore:
    """Mailboxes and messages under ``<data_dir>/voicemail``. Build with ``VoicemailStore.open``.

    Args:
        root: the ``voicemail`` directory.
        autocreate: which unknown mailbox numbers ``OpenMailbox`` creates with default settings (the lead
            passes "is a line's extension or a shared mailbox"); None creates none.
        new_salt: salt source for default PINs.
    """

    def __init__(
        self,
        root: Path,
        *,
        autocreate: Callable[[str], bool] | None = None,
        new_salt: Callable[[], bytes] = lambda: os.urandom(PIN_SALT_BYTES),
    ) -> None:
        self.root = root
        self.scratch_dir = root / SCRATCH
        self.autocreate = autocreate
        self._new_salt = new_salt
        self._lock = threading.RLock()
        self._boxes: dict[str, _Box] = {}

    @classmethod
    def open(
        cls,
        data_dir: Path | str,
        *,
        autocreate: Callable[[str], bool] | None = None,
        new_salt: Callable[[], bytes] = lambda: os.urandom(PIN_SALT_BYTES),
        recover: bool = True,
    ) -> VoicemailStore:
        """Open (creating when missing) ``<data_dir>/voicemail`` and recover from an interrupted run.

        Args:
            recover: finish or undo interrupted writes and empty the scratch directory. Only the process
                that owns the data directory (``pbx serve``) does this; a CLI command run beside a live
                engine passes False so that it never removes a recording in progress.

        Raises:
            OSError: the directory cannot be created or read.
        """
        store = cls(Path(data_dir) / "voicemail", autocreate=autocreate, new_salt=new_salt)
        store.root.mkdir(parents=True, exist_ok=True)
        store.scratch_dir.mkdir(exist_ok=True)
        if not recover:
            return store
        for directory in sorted(store.root.iterdir()):
            if directory.is_dir() and directory.name.isdigit():
                store._recover(directory)
        for leftover in store.scratch_dir.iterdir():
            logger.info("removing an unfinished recording %s", leftover)
            _remove(leftover)
        return store

    # -- mailboxes ------------------------------------------------------------------------------------------
    def scratch_path(self, token: str) -> str:
        """A fresh path for the recorder (a deposit's recording, before it becomes a message).

        Raises:
            VoicemailError: ``token`` is empty or not a plain file name.
        """
        if not token or "/" in token or token.startswith(".") or "\0" in token:
            raise VoicemailError("token", f"not a plain file name: {token!r}")
        return str(self.scratch_dir / f"{token}.wav")

    def mailbox_numbers(self) -> list[str]:
        """Every mailbox that exists on disk."""
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and (p / SETTINGS).is_file())

    def mailbox(self, number: str) -> Mailbox | None:
        """The mailbox's settings, or None when it does not exist (an invalid number does not exist).

        Raises:
            VoicemailError: its ``mailbox.json`` is unreadable.
        """
        try:
            validate_mailbox_number(number)
        except VoicemailError:
            return None
        with self._lock:
            box = self._load(number)
            return None if box is None else self._mailbox(number, box)

    def ensure_mailbox(self, number: str, *, email: str | None = None) -> Mailbox:
        """The mailbox, created with default settings (PIN 0000) when missing.

        Raises:
            VoicemailError: ``number`` is not 1-10 digits.
            OSError: it cannot be written.
        """
        validate_mailbox_number(number)
        with self._lock:
            box = self._load(number)
            if box is None:
                settings: dict[str, Any] = {
                    "version": FORMAT_VERSION,
                    "pin_hash": hash_pin(DEFAULT_PIN, self._new_salt()),
                    "temporary_active": False,
                    "greetings": {},
                    "name": None,
                    "email": email,
                    "attach_audio": True,
                    "max_messages": DEFAULT_MAX_MESSAGES,
                    "max_message_s": DEFAULT_MAX_MESSAGE_S,
                    "next_id": 1,
                }
                directory = self.root / number
                directory.mkdir(exist_ok=True)
                write_atomic(directory / SETTINGS, _dump(settings))
                fsync_dir(self.root)
                box = _Box(settings, stamp=_stamp(directory / SETTINGS))
                self._boxes[number] = box
            return self._mailbox(number, box)

    def update_mailbox(
        self,
        number: str,
        *,
        email: str | None = None,
        clear_email: bool = False,
        attach_audio: bool | None = None,
        max_messages: int | None = None,
        max_message_s: float | None = None,
    ) -> Mailbox:
        """Change settings an admin sets; arguments left None stay as they are.

        Raises:
            VoicemailError: no such mailbox, or a limit out of range (``max_messages`` 1-999, what the
                prompts can count; ``max_message_s`` 5-3600).
        """
        if max_messages is not None and not 1 <= max_messages <= 999:
            raise VoicemailError("max_messages", "must be between 1 and 999")
        if max_message_s is not None and not 5.0 <= max_message_s <= 3600.0:
            raise VoicemailError("max_message_s", "must be between 5 and 3600 seconds")
        if email is not None and ("@" not in email or any(c in email for c in "\r\n<>, ")):
            raise VoicemailError("email", f"not an e-mail address: {email!r}")
        changes: dict[str, Any] = {}
        if email is not None or clear_email:
            changes["email"] = None if clear_email else email
        if attach_audio is not None:
            changes["attach_audio"] = attach_audio
        if max_messages is not None:
            changes["max_messages"] = max_messages
        if max_message_s is not None:
            changes["max_message_s"] = max_message_s
        return self._change(number, changes)

    def set_pin(self, number: str, pin: str) -> None:
        """Set a new PIN (stored hashed with a fresh salt).

        Raises:
            VoicemailError: no such mailbox, or the PIN is not 4-10 digits.
        """
        self._change(number, {"pin_hash": hash_pin(pin, self._new_salt())})

    def set_pin_hash(self, number: str, pin_hash: str) -> None:
        """Store a PIN hashed by ``engine.voicemail.model.hash_pin`` (the menu's ``SetPin``).

        Raises:
            VoicemailError: no such mailbox.
        """
        self._change(number, {"pin_hash": pin_hash})

    def set_temporary_active(self, number: str, active: bool) -> None:
        """Switch the temporary greeting on or off.

        Raises:
            VoicemailError: no such mailbox.
        """
        self._change(number, {"temporary_active": active})

    def set_greeting(self, number: str, kind: GreetingKind, source: Path | str) -> Mailbox:
        """Install the WAV at ``source`` (moved, not copied) as the greeting of ``kind``.

        Raises:
            VoicemailError: no such mailbox.
            OSError: the file cannot be moved.
        """
        with self._lock:
            self._require(number)
            move_durably(Path(source), self.root / number / greeting_file(kind))
            return self._set_greeting_name(number, kind, greeting_file(kind))

    def set_greeting_audio(self, number: str, kind: GreetingKind, wav: bytes) -> Mailbox:
        """Install ``wav`` (8 kHz 16-bit mono WAV bytes, already converted) as the greeting of ``kind``.

        Raises:
            VoicemailError: no such mailbox.
            OSError: it cannot be written.
        """
        with self._lock:
            self._require(number)
            write_atomic(self.root / number / greeting_file(kind), wav)
            return self._set_greeting_name(number, kind, greeting_file(kind))

    def clear_greeting(self, number: str, kind: GreetingKind) -> Mailbox:
        """Remove the greeting of ``kind`` (a missing one is fine).

        Raises:
            VoicemailError: no such mailbox.
        """
        with self._lock:
            box = self._require(number)
            greetings = dict(box.settings["greetings"])
            greetings.pop(kind.value, None)
            mailbox = self._change(number, {"greetings": greetings})
            _remove(self.root / number / greeting_file(kind))
            return mailbox

    def set_name(self, number: str, source: Path | str) -> Mailbox:
        """Install the WAV at ``source`` (moved) as the mailbox's recorded name.

        Raises:
            VoicemailError: no such mailbox.
            OSError: the file cannot be moved.
        """
        with self._lock:
            self._require(number)
            move_durably(Path(source), self.root / number / NAME_FILE)
            return self._change(number, {"name": NAME_FILE})

    # -- messages -------------------------------------------------------------------------------------------
    def deposit(
        self,
        number: str,
        recording: Path | str,
        caller: str,
        caller_name: str,
        received_at: datetime,
        duration_s: float,
    ) -> MessageInfo:
        """Store the finished recording at ``recording`` (moved) as a new message.

        Raises:
            VoicemailError: no such mailbox, ``received_at`` without a time zone, a negative duration.
            MailboxFullError: the mailbox holds ``max_messages`` already (the recording is left in place).
            OSError: the files cannot be written.
        """
        if received_at.utcoffset() is None:
            raise VoicemailError("received_at", "must be timezone-aware")
        if not duration_s >= 0.0:
            raise VoicemailError("duration_s", "must not be negative")
        source = Path(recording)
        with self._lock:
            box = self._require(number)
            if len(box.messages) >= int(box.settings["max_messages"]):
                raise MailboxFullError("mailbox", f"mailbox {number} is full")
            message_id = int(box.settings["next_id"])
            self._change(number, {"next_id": message_id + 1})  # reserve first: ids never repeat
            directory = self.root / number
            stem = message_stem(message_id)
            audio = directory / f"{stem}.wav"
            info = MessageInfo(
                message_id,
                number,
                Folder.NEW,
                caller,
                caller_name,
                received_at,
                float(duration_s),
                str(audio),
            )
            pending = directory / f"{stem}{_PENDING}"
            write_atomic(pending, _dump({**_message_doc(info), "source": str(source)}))
            try:
                move_durably(source, audio)
            except OSError:
                _remove(pending)
                raise
            os.replace(pending, directory / f"{stem}.json")
            fsync_dir(directory)
            box.messages[message_id] = info
            return info

    def messages(self, number: str) -> list[MessageInfo]:
        """The mailbox's messages: new ones first, then saved, oldest first in each; [] for no mailbox."""
        with self._lock:
            box = self._load(number) if _is_number(number) else None
            if box is None:
                return []
            return sorted(box.messages.values(), key=lambda m: (m.folder is not Folder.NEW, m.id))

    def counts(self, number: str) -> tuple[int, int]:
        """(new, saved) message counts, for MWI; (0, 0) for no mailbox."""
        messages = self.messages(number)
        new = sum(1 for m in messages if m.folder is Folder.NEW)
        return new, len(messages) - new

    def all_counts(self) -> dict[str, tuple[int, int]]:
        """(new, saved) for every mailbox (the MWI service is primed with this at start-up)."""
        return {number: self.counts(number) for number in self.mailbox_numbers()}

    def mark_saved(self, number: str, message_id: int) -> None:
        """Move a message from new to saved (a saved one stays saved).

        Raises:
            VoicemailError: no such mailbox or message.
        """
        with self._lock:
            box = self._require(number)
            info = box.messages.get(message_id)
            if info is None:
                raise VoicemailError("message_id", f"no message {message_id} in mailbox {number}")
            if info.folder is Folder.SAVED:
                return
            saved = replace(info, folder=Folder.SAVED)
            write_atomic(self.root / number / f"{message_stem(message_id)}.json", _dump(_message_doc(saved)))
            box.messages[message_id] = saved

    def delete_message(self, number: str, message_id: int) -> None:
        """Delete a message (a missing one is fine: deleting is idempotent).

        Raises:
            VoicemailError: no such mailbox.
        """
        with self._lock:
            box = self._require(number)
            directory = self.root / number
            stem = message_stem(message_id)
            # Metadata first: once it is gone the message is gone; leftover audio is removed on open.
            _remove(directory / f"{stem}.json")
            fsync_dir(directory)
            _remove(directory / f"{stem}.wav")
            box.messages.pop(message_id, None)

    def discard(self, path: Path | str) -> None:
        """Delete a scratch recording that is not kept. Only files in the scratch directory are touched.

        Raises:
            VoicemailError: ``path`` is not in the scratch directory.
        """
        target = Path(path)
        if target.parent.resolve() != self.scratch_dir.resolve():
            raise VoicemailError("path", f"not a scratch recording: {target}")
        _remove(target)

    # -- effects from the flows -----------------------------------------------------------------------------
    def apply(self, effect: VoicemailEffect) -> MailboxOpened | Applied:
        """Apply one effect returned by ``DepositFlow``/``MenuFlow`` and return the outcome to resume with.

        A mailbox that filled up between the caller's greeting and the end of the recording loses the
        recording (logged; ``Applied(message=None)``).

        Raises:
            VoicemailError: the effect names a mailbox or message that does not exist.
            OSError: the disk failed.
        """
        if isinstance(effect, OpenMailbox):
            mailbox = self.mailbox(effect.mailbox)
            autocreate = self.autocreate
            if (
                mailbox is None
                and autocreate is not None
                and _is_number(effect.mailbox)
                and autocreate(effect.mailbox)
            ):
                mailbox = self.ensure_mailbox(effect.mailbox)
            if mailbox is None:
                return MailboxOpened(None)
            return MailboxOpened(mailbox, tuple(self.messages(effect.mailbox)))
        if isinstance(effect, StoreMessage):
            try:
                info = self.deposit(
                    effect.mailbox,
                    effect.tmp_path,
                    effect.caller,
                    effect.caller_name,
                    effect.received_at,
                    effect.duration_s,
                )
            except MailboxFullError:
                logger.warning("mailbox %s filled up during a recording: message dropped", effect.mailbox)
                self.discard(effect.tmp_path)
                return Applied()
            return Applied(info)
        if isinstance(effect, DiscardRecording):
            self.discard(effect.path)
        elif isinstance(effect, MarkSaved):
            self.mark_saved(effect.mailbox, effect.message_id)
        elif isinstance(effect, DeleteMessage):
            self.delete_message(effect.mailbox, effect.message_id)
        elif isinstance(effect, SetGreeting):
            self.set_greeting(effect.mailbox, effect.kind, effect.path)
        elif isinstance(effect, ClearGreeting):
            self.clear_greeting(effect.mailbox, effect.kind)
        elif isinstance(effect, SetTemporaryActive):
            self.set_temporary_active(effect.mailbox, effect.active)
        elif isinstance(effect, SetPin):
            self.set_pin_hash(effect.mailbox, effect.pin_hash)
        elif isinstance(effect, SetName):
            self.set_name(effect.mailbox, effect.path)
        return Applied()

    # -- internals ------------------------------------------------------------------------------------------
    def _load(self, number: str) -> _Box | None:
        directory = self.root / number
        settings_path = directory / SETTINGS
        stamp = _stamp(settings_path)
        box = self._boxes.get(number)
        if box is not None:
            if box.stamp == stamp:
                return box
            logger.info("mailbox %s was changed by another process: reading it again", number)
            del self._boxes[number]
        if stamp is None or not settings_path.is_file():
            return None
        settings = _read_json(settings_path)
        box = _Box(settings, stamp=stamp)
        for meta in sorted(directory.glob("msg-*.json")):
            doc = _read_json(meta)
            try:
                info = _message_from_doc(doc, number, directory)
            except (KeyError, TypeError, ValueError) as exc:
                logger.error("skipping unreadable message metadata %s: %s", meta, exc)
                continue
            if not Path(info.audio_path).is_file():
                logger.error("skipping message %s: its audio is missing", meta)
                continue
            box.messages[info.id] = info
        self._boxes[number] = box
        return box

    def _require(self, number: str) -> _Box:
        validate_mailbox_number(number)
        box = self._load(number)
        if box is None:
            raise VoicemailError("mailbox", f"no mailbox {number}")
        return box

    def _change(self, number: str, changes: dict[str, Any]) -> Mailbox:
        with self._lock:
            box = self._require(number)
            settings = {**box.settings, **changes}
            path = self.root / number / SETTINGS
            write_atomic(path, _dump(settings))
            box.settings = settings
            box.stamp = _stamp(path)
            return self._mailbox(number, box)

    def _set_greeting_name(self, number: str, kind: GreetingKind, name: str) -> Mailbox:
        box = self._require(number)
        return self._change(number, {"greetings": {**box.settings["greetings"], kind.value: name}})

    def _mailbox(self, number: str, box: _Box) -> Mailbox:
        s = box.settings
        directory = self.root / number
        greetings = {
            GreetingKind(kind): str(directory / name)
            for kind, name in s.get("greetings", {}).items()
            if kind in {k.value for k in GreetingKind} and (directory / name).is_file()
        }
        name = s.get("name")
        return Mailbox(
            number=number,
            pin_hash=str(s["pin_hash"]),
            greetings=greetings,
            temporary_active=bool(s.get("temporary_active", False)),
            name_path=str(directory / name) if name and (directory / name).is_file() else None,
            email=s.get("email"),
            attach_audio=bool(s.get("attach_audio", True)),
            max_messages=int(s.get("max_messages", DEFAULT_MAX_MESSAGES)),
            max_message_s=float(s.get("max_message_s", DEFAULT_MAX_MESSAGE_S)),
        )

    def _recover(self, directory: Path) -> None:
        """Finish or undo what a crash interrupted in one mailbox directory (see the module docstring)."""
        for tmp in directory.glob(f"*{TMP_SUFFIX}"):
            logger.info("removing a half-written file %s", tmp)
            _remove(tmp)
        for pending in sorted(directory.glob(f"msg-*{_PENDING}")):
            stem = pending.name[: -len(_PENDING)]
            audio = directory / f"{stem}.wav"
            try:
                source = Path(_read_json(pending)["source"])
            except (VoicemailError, KeyError, TypeError):
                _remove(pending)
                continue
            if not audio.exists() and source.is_file():
                move_durably(source, audio)
            if audio.exists():
                logger.info("completing message %s interrupted by a crash", pending)
                os.replace(pending, directory / f"{stem}.json")
            else:
                _remove(pending)
            fsync_dir(directory)
        known = {p.name[: -len(".json")] for p in directory.glob("msg-*.json")}
        for audio in directory.glob("msg-*.wav"):
            if audio.name[: -len(".wav")] not in known:
                logger.info("removing audio without metadata %s", audio)
                _remove(audio)


def _is_number(number: str) -> bool:
    try:
        validate_mailbox_number(number)
    except VoicemailError:
        return False
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
        return
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _dump(doc: dict[str, Any]) -> bytes:
    # ensure_ascii: caller names may hold lone surrogates (undecodable SIP bytes); escaped, they round-trip.
    return json.dumps(doc, indent=2, sort_keys=True).encode("ascii")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise VoicemailError(str(path), f"unreadable: {exc}") from None
    if not isinstance(doc, dict):
        raise VoicemailError(str(path), "not a JSON object")
    return doc


def _message_doc(info: MessageInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "folder": info.folder.value,
        "caller": info.caller,
        "caller_name": info.caller_name,
        "received_at": info.received_at.isoformat(),
        "duration_s": info.duration_s,
        "audio": Path(info.audio_path).name,
    }


def _message_from_doc(doc: dict[str, Any], number: str, directory: Path) -> MessageInfo:
    received_at = datetime.fromisoformat(doc["received_at"])
    if received_at.utcoffset() is None:
        raise ValueError("received_at has no time zone")
    audio = str(doc["audio"])
    if "/" in audio or audio.startswith("."):
        raise ValueError(f"bad audio file name {audio!r}")
    return MessageInfo(
        id=int(doc["id"]),
        mailbox=number,
        folder=Folder(doc["folder"]),
        caller=str(doc["caller"]),
        caller_name=str(doc["caller_name"]),
        received_at=received_at,
        duration_s=float(doc["duration_s"]),
        audio_path=str(directory / audio),
    )
