"""The voicemail call flows as pure state machines: leaving a message (deposit) and the ``*98``/``*99`` menu.

Both speak the vocabulary of ``engine.script``: ``start()`` returns the first action,
``resume(outcome)`` the next one. Besides media actions they return voicemail *effects* (``OpenMailbox``,
``StoreMessage``, ``MarkSaved`` ...), which the call controller applies to the store
(``VoicemailStore.apply`` does it, in an executor) and answers with ``MailboxOpened`` or ``Applied``. After
``Hangup`` (or once the caller hung up and any clean-up effect was applied) the flow returns ``Done`` for
every further outcome.

After ``HungUp`` (or ``Recorded(ended="hangup")``) a flow may still return effects: a message recorded up to
the hang-up is stored, an unconfirmed greeting recording is discarded. The controller applies those and
resumes with ``Applied`` until it gets ``Done``; it plays no more media.

Each flow is a transition table ``(state, outcome type) -> handler`` (STYLE 3.4); a missing pair is our own
misuse and raises ``FlowError``.

The menu, key by key (issue 5; ``*`` goes back, ``#`` skips):

* login: ``*99`` passes the line's own mailbox, ``*98201`` the dialled one, bare ``*98`` asks
  (``vm-enter-mailbox``, digits then ``#``). The PIN is digits then ``#``. A wrong PIN (or an unknown mailbox:
  the caller is not told which) says ``vm-invalid-pin`` and asks again (the mailbox too when it was asked
  for); the third failure says ``vm-invalid-pin``, ``goodbye`` and hangs up. A timeout counts as a try.
* after login: "You have N new messages" (``say_count``, and the saved ones when there are any), then the
  main menu: ``1`` listen, ``0`` mailbox options, ``#`` goodbye, ``*`` the menu again.
* listening (new messages first, then saved, oldest first in each): during or after a message ``4`` previous,
  ``5`` repeat, ``6`` next, ``#`` skip to the next, ``7`` delete (then the next one plays), ``9`` save (then
  the next one plays), ``8`` envelope (time received, caller), ``*`` main menu.
* **When a message stops being new**: when it was heard to the end, or saved with ``9``. This is Asterisk's
  rule (a heard message moves to Old) narrowed to *heard to the end*, so that a message skipped with ``#``/
  ``6`` or cut off by a hang-up keeps the lamp lit.
* options (``0``): ``1`` record the unavailable greeting, ``2`` the busy greeting, ``3`` the name, ``4``
  temporary greeting menu (its state is announced; ``1`` record, ``2`` switch on/off, ``*`` back), ``5``
  change PIN (entered twice, 4-10 digits, ``#`` after each), ``*`` main menu.
* every recording: ``vm-record-after-tone``, beep, record until ``#``/silence/maximum; then ``1`` accept,
  ``2`` review (plays it, then the review menu again), ``3`` re-record, ``*`` discard. Accepting a temporary
  greeting also switches it on (as Asterisk, where the temporary greeting is active while it exists); ``2``
  in the temporary menu switches it off and on again, and records one first when there is none.
* invalid keys: ``invalid-option`` and the menu again; no key: the menu is repeated up to 3 times, then
  ``goodbye``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, tzinfo
from pathlib import PurePath
from typing import ClassVar, Final, Protocol

from engine.script import (
    Answer,
    Answered,
    Collect,
    Collected,
    File,
    Hangup,
    HungUp,
    MediaAction,
    MediaOutcome,
    Play,
    Played,
    PromptItem,
    Record,
    Recorded,
    Sound,
)
from engine.voicemail.model import (
    DEFAULT_MAX_GREETING_S,
    MIN_MESSAGE_S,
    DepositReason,
    Folder,
    GreetingKind,
    Mailbox,
    MessageInfo,
    VoicemailError,
    choose_greeting,
    digit_sounds,
    hash_pin,
    validate_mailbox_number,
    validate_pin,
    verify_pin,
)

MAX_PIN_TRIES: Final = 3
#: A menu nobody answers is offered again this many times, then the call ends (issue 5).
MAX_MENU_REPEATS: Final = 3
MENU_TIMEOUT_S: Final = 5.0
DIGIT_TIMEOUT_S: Final = 3.0
RECORD_SILENCE_S: Final = 5.0
#: Digits a skipped greeting may leave in the buffer (drained so that they cannot end the recording).
_DRAIN_DIGITS: Final = 32


class FlowError(Exception):
    """The controller resumed a flow with an outcome its state does not expect (our own bug)."""


# -- effects: what the controller applies to the store -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OpenMailbox:
    """Load a mailbox's settings and messages. Outcome: ``MailboxOpened`` (``mailbox`` None if unknown)."""

    mailbox: str


@dataclass(frozen=True, slots=True)
class StoreMessage:
    """Move the recording at ``tmp_path`` into the mailbox as a new message. Outcome: ``Applied``."""

    mailbox: str
    tmp_path: str
    caller: str
    caller_name: str
    received_at: datetime
    duration_s: float


@dataclass(frozen=True, slots=True)
class DiscardRecording:
    """Delete a recording that is not kept (too short, not accepted). Outcome: ``Applied``."""

    path: str


@dataclass(frozen=True, slots=True)
class MarkSaved:
    mailbox: str
    message_id: int


@dataclass(frozen=True, slots=True)
class DeleteMessage:
    mailbox: str
    message_id: int


@dataclass(frozen=True, slots=True)
class SetGreeting:
    """Install the recording at ``path`` as the mailbox's greeting of ``kind`` (the file is moved)."""

    mailbox: str
    kind: GreetingKind
    path: str


@dataclass(frozen=True, slots=True)
class ClearGreeting:
    mailbox: str
    kind: GreetingKind


@dataclass(frozen=True, slots=True)
class SetTemporaryActive:
    mailbox: str
    active: bool


@dataclass(frozen=True, slots=True)
class SetPin:
    mailbox: str
    pin_hash: str


@dataclass(frozen=True, slots=True)
class SetName:
    """Install the recording at ``path`` as the mailbox's recorded name (the file is moved)."""

    mailbox: str
    path: str


@dataclass(frozen=True, slots=True)
class Done:
    """The flow is over: nothing more to play or apply."""


VoicemailEffect = (
    OpenMailbox
    | StoreMessage
    | DiscardRecording
    | MarkSaved
    | DeleteMessage
    | SetGreeting
    | ClearGreeting
    | SetTemporaryActive
    | SetPin
    | SetName
)
#: Effects after which the controller sends MWI (``MwiService.notify_counts``) for the effect's mailbox.
COUNT_CHANGING: Final = (StoreMessage, MarkSaved, DeleteMessage)

# -- effect outcomes -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MailboxOpened:
    mailbox: Mailbox | None
    messages: tuple[MessageInfo, ...] = ()


@dataclass(frozen=True, slots=True)
class Applied:
    """An effect was applied. ``message`` is the stored message after ``StoreMessage`` (for e-mail)."""

    message: MessageInfo | None = None


FlowAction = MediaAction | VoicemailEffect | Done
FlowOutcome = MediaOutcome | MailboxOpened | Applied


class Speech(Protocol):
    """Numbers and dates as prompts, per language: ``engine.media.prompts`` (the module) is one."""

    def say_count(
        self, n: int, singular_key: str, plural_key: str, language: str, /
    ) -> tuple[PromptItem, ...]: ...

    def say_datetime(self, when: datetime, language: str, /) -> tuple[PromptItem, ...]: ...


class FlowState(enum.Enum):
    START = "start"
    OPENING = "opening"  # OpenMailbox sent
    ANSWERING = "answering"  # Answer sent
    ASK_PROMPT = "ask-prompt"  # a menu/question prompt is playing
    ASK_COLLECT = "ask-collect"  # its digits are being collected
    MESSAGE_PLAY = "message-play"  # a message is playing
    PLAYING = "playing"  # any other prompt; a continuation follows
    DRAINING = "draining"  # reading the digit that skipped the greeting
    RECORDING = "recording"
    APPLYING = "applying"  # an effect (not OpenMailbox) sent
    DONE = "done"


Then = Callable[[], FlowAction]


class _Flow:
    """The shared engine: the transition table, effects with continuations, prompts, hang-up handling."""

    TRANSITIONS: ClassVar[dict[tuple[FlowState, type], str]] = {}

    def __init__(self) -> None:
        self.state = FlowState.START
        self._then: Then = _done
        self._then_played: Callable[[bool], FlowAction] = lambda _interrupted: Done()
        self._pending_recording: str | None = None

    def resume(self, outcome: FlowOutcome) -> FlowAction:
        """The next action after ``outcome``.

        Raises:
            FlowError: the outcome does not fit the current state (a controller bug).
        """
        if self.state is FlowState.DONE:
            return Done()
        if self.state is FlowState.START:
            raise FlowError("resume() before start()")
        if isinstance(outcome, HungUp):
            return self._hung_up()
        name = self.TRANSITIONS.get((self.state, type(outcome)))
        if name is None:
            raise FlowError(f"{type(self).__name__}: {type(outcome).__name__} in state {self.state.value}")
        handler: Callable[[FlowOutcome], FlowAction] = getattr(self, name)
        return handler(outcome)

    # -- building blocks -------------------------------------------------------------------------------------
    def _apply(self, effect: VoicemailEffect, then: Then) -> FlowAction:
        self.state = FlowState.APPLYING
        self._then = then
        return effect

    def _on_applied(self, _outcome: FlowOutcome) -> FlowAction:
        return self._then()

    def _answer(self, then: Then) -> FlowAction:
        self.state = FlowState.ANSWERING
        self._then = then
        return Answer()

    def _on_answered(self, _outcome: FlowOutcome) -> FlowAction:
        return self._then()

    def _play(
        self, items: tuple[PromptItem, ...], then: Callable[[bool], FlowAction], *, barge_in: bool = True
    ) -> FlowAction:
        self.state = FlowState.PLAYING
        self._then_played = then
        return Play(items, barge_in=barge_in)

    def _on_played(self, outcome: FlowOutcome) -> FlowAction:
        return self._then_played(isinstance(outcome, Played) and outcome.interrupted)

    def _hangup(self, _interrupted: bool = False) -> FlowAction:
        self.state = FlowState.DONE
        return Hangup()

    def _discard_pending(self, then: Then) -> FlowAction:
        path, self._pending_recording = self._pending_recording, None
        if path is None:
            return then()
        return self._apply(DiscardRecording(path), then)

    def _hung_up(self) -> FlowAction:
        return self._discard_pending(self._finish)

    def _finish(self) -> FlowAction:
        self.state = FlowState.DONE
        return Done()


def _done() -> FlowAction:
    return Done()


# -- leaving a message ---------------------------------------------------------------------------------------


class DepositFlow(_Flow):
    """A caller leaving a message in ``mailbox``.

    Args:
        mailbox: the mailbox number.
        reason: why the call came here (busy only via a dial plan): picks the busy greeting.
        caller, caller_name: the caller ID to store ("" when unknown).
        record_path: where the recorder writes (a scratch path from ``VoicemailStore.scratch_path``).
        received_at: when the call reached voicemail (tz-aware), stored with the message.
    """

    TRANSITIONS: ClassVar[dict[tuple[FlowState, type], str]] = {
        (FlowState.OPENING, MailboxOpened): "_on_opened",
        (FlowState.ANSWERING, Answered): "_on_answered",
        (FlowState.PLAYING, Played): "_on_played",
        (FlowState.DRAINING, Collected): "_on_drained",
        (FlowState.RECORDING, Recorded): "_on_recorded",
        (FlowState.APPLYING, Applied): "_on_applied",
    }

    def __init__(
        self,
        mailbox: str,
        reason: DepositReason,
        caller: str,
        caller_name: str,
        record_path: str,
        received_at: datetime,
    ) -> None:
        super().__init__()
        self.mailbox_number = mailbox
        self.reason = reason
        self.caller = caller
        self.caller_name = caller_name
        self.record_path = record_path
        self.received_at = received_at
        self._box: Mailbox | None = None

    def start(self) -> FlowAction:
        """The first action: ``OpenMailbox``.

        Raises:
            FlowError: the flow was started before.
        """
        if self.state is not FlowState.START:
            raise FlowError("start() called twice")
        self.state = FlowState.OPENING
        return OpenMailbox(self.mailbox_number)

    def _on_opened(self, outcome: FlowOutcome) -> FlowAction:
        assert isinstance(outcome, MailboxOpened)
        box = outcome.mailbox
        if box is None:
            self.state = FlowState.DONE
            return Hangup(404, "Not Found")
        self._box = box
        if len(outcome.messages) >= box.max_messages:
            return self._answer(lambda: self._play((Sound("vm-mailbox-full"),), self._hangup, barge_in=False))
        greeting = choose_greeting(box, self.reason)
        return self._answer(lambda: self._play(greeting.items, self._after_greeting))

    def _after_greeting(self, interrupted: bool) -> FlowAction:
        if interrupted:
            # A key skipped the greeting (Asterisk: '#'); it is still buffered: read it so that it cannot
            # stop the recording at once.
            self.state = FlowState.DRAINING
            return Collect(max_digits=_DRAIN_DIGITS, first_timeout_s=0.0, inter_digit_timeout_s=0.0)
        return self._record()

    def _on_drained(self, _outcome: FlowOutcome) -> FlowAction:
        return self._record()

    def _record(self) -> FlowAction:
        assert self._box is not None
        self.state = FlowState.RECORDING
        self._pending_recording = self.record_path
        return Record(
            self.record_path,
            max_s=self._box.max_message_s,
            silence_s=RECORD_SILENCE_S,
            stop_keys="#",
            beep=True,
        )

    def _on_recorded(self, outcome: FlowOutcome) -> FlowAction:
        assert isinstance(outcome, Recorded)
        self._pending_recording = None
        hung_up = outcome.ended == "hangup"
        if outcome.path is None or outcome.duration_s < MIN_MESSAGE_S:

            def too_short() -> FlowAction:
                if hung_up:
                    return self._finish()
                return self._play(
                    (Sound("vm-message-too-short"), Sound("vm-goodbye")), self._hangup, barge_in=False
                )

            then: Then = too_short
            if outcome.path is None:
                return then()
            return self._apply(DiscardRecording(outcome.path), then)
        effect = StoreMessage(
            self.mailbox_number,
            outcome.path,
            self.caller,
            self.caller_name,
            self.received_at,
            outcome.duration_s,
        )
        if hung_up:
            return self._apply(effect, self._finish)
        return self._apply(effect, lambda: self._play((Sound("vm-goodbye"),), self._hangup, barge_in=False))

    def _hung_up(self) -> FlowAction:
        # The recorder reports a hang-up while recording as Recorded(ended="hangup"), so the recording path
        # is only pending here when the controller could not record at all: nothing was written to keep.
        self._pending_recording = None
        return self._finish()


# -- the *98 / *99 menu --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Ask:
    """A question: a prompt, then ``collect``; ``name`` picks the handler for the digits."""

    name: str
    items: tuple[PromptItem, ...]
    collect: Collect


_MENU_COLLECT: Final = Collect(max_digits=1, first_timeout_s=MENU_TIMEOUT_S)
_NUMBER_COLLECT: Final = Collect(
    max_digits=10, terminators="#", first_timeout_s=MENU_TIMEOUT_S, inter_digit_timeout_s=DIGIT_TIMEOUT_S
)
_PIN_COLLECT: Final = _NUMBER_COLLECT

#: Which keys each menu takes (the handlers are ``_key_<menu>_<key>``); every other key is invalid.
MENU_KEYS: Final[dict[str, str]] = {
    "main": "10#*",
    "message": "456789#*",
    "options": "12345*",
    "temp": "12*",
    "review": "123*",
}
_KEY_NAMES: Final = {"*": "star", "#": "pound"}

_RecordTarget = GreetingKind | None  # None: the recorded name


class MenuFlow(_Flow):
    """The phone menu of one mailbox (``*99``/``*98``).

    Args:
        mailbox: the mailbox to open (``*99``: the line's; ``*98201``: 201), or None to ask for it (bare
            ``*98``).
        lang: the call's language (``en``/``de``) for numbers and dates.
        tz: the time zone envelopes are told in.
        speech: says counts and dates (``engine.media.prompts``).
        scratch_dir: where recordings of greetings and names go before they are accepted (the store's
            ``scratch_dir``); ``token`` makes their names unique (e.g. the Call-ID's hash).
        new_salt: a fresh random salt for a changed PIN (``lambda: os.urandom(16)``).
    """

    TRANSITIONS: ClassVar[dict[tuple[FlowState, type], str]] = {
        (FlowState.ANSWERING, Answered): "_on_answered",
        (FlowState.OPENING, MailboxOpened): "_on_opened",
        (FlowState.ASK_PROMPT, Played): "_on_ask_played",
        (FlowState.ASK_COLLECT, Collected): "_on_collected",
        (FlowState.MESSAGE_PLAY, Played): "_on_message_played",
        (FlowState.PLAYING, Played): "_on_played",
        (FlowState.RECORDING, Recorded): "_on_recorded",
        (FlowState.APPLYING, Applied): "_on_applied",
    }

    def __init__(
        self,
        mailbox: str | None,
        *,
        lang: str,
        tz: tzinfo,
        speech: Speech,
        scratch_dir: str,
        token: str,
        new_salt: Callable[[], bytes],
    ) -> None:
        super().__init__()
        self.mailbox_number = mailbox
        self.lang = lang
        self.tz = tz
        self._speech = speech
        self._scratch_dir = scratch_dir
        self._token = token
        self._new_salt = new_salt
        self._ask_mailbox = mailbox is None
        self._box: Mailbox | None = None
        self._messages: list[MessageInfo] = []
        self._index = 0
        self._failures = 0
        self._repeats = 0
        self._asking: _Ask | None = None
        self._target: _RecordTarget = None
        self._return_menu = "options"
        self._recordings = 0
        self._new_pin = ""
        self._authenticated = False

    @property
    def authenticated(self) -> bool:
        """Whether the caller entered the right PIN (for the controller's logs and CDR)."""
        return self._authenticated

    @property
    def messages(self) -> tuple[MessageInfo, ...]:
        """The session's view of the messages (folders updated as the caller saves and deletes)."""
        return tuple(self._messages)

    def start(self) -> FlowAction:
        """The first action: ``Answer``.

        Raises:
            FlowError: the flow was started before.
        """
        if self.state is not FlowState.START:
            raise FlowError("start() called twice")
        return self._answer(self._login)

    # -- asking ----------------------------------------------------------------------------------------------
    def _ask(self, ask: _Ask, prefix: tuple[PromptItem, ...] = ()) -> FlowAction:
        self.state = FlowState.ASK_PROMPT
        self._asking = ask
        return Play((*prefix, *ask.items), barge_in=True)

    def _on_ask_played(self, _outcome: FlowOutcome) -> FlowAction:
        assert self._asking is not None
        self.state = FlowState.ASK_COLLECT
        return self._asking.collect

    def _on_collected(self, outcome: FlowOutcome) -> FlowAction:
        assert isinstance(outcome, Collected) and self._asking is not None
        handler: Callable[[Collected], FlowAction] = getattr(self, f"_got_{self._asking.name}")
        return handler(outcome)

    def _goodbye(self, prefix: tuple[PromptItem, ...] = ()) -> FlowAction:
        return self._discard_pending(
            lambda: self._play((*prefix, Sound("goodbye")), self._hangup, barge_in=False)
        )

    # -- login -----------------------------------------------------------------------------------------------
    def _login(self) -> FlowAction:
        if self._ask_mailbox:
            return self._ask(_Ask("mailbox", (Sound("vm-enter-mailbox"),), _NUMBER_COLLECT))
        assert self.mailbox_number is not None
        return self._open(self.mailbox_number)

    def _got_mailbox(self, got: Collected) -> FlowAction:
        if not got.digits:
            return self._timeout_repeat(got)
        self.mailbox_number = got.digits
        try:
            validate_mailbox_number(got.digits)
        except VoicemailError:
            self._box = None  # not a mailbox: the PIN is still asked, so nothing is revealed
            return self._ask_pin()
        return self._open(got.digits)

    def _open(self, number: str) -> FlowAction:
        self.state = FlowState.OPENING
        return OpenMailbox(number)

    def _on_opened(self, outcome: FlowOutcome) -> FlowAction:
        assert isinstance(outcome, MailboxOpened)
        self._box = outcome.mailbox
        new = sorted((m for m in outcome.messages if m.folder is Folder.NEW), key=lambda m: m.id)
        saved = sorted((m for m in outcome.messages if m.folder is Folder.SAVED), key=lambda m: m.id)
        self._messages = [*new, *saved]
        return self._ask_pin()

    def _ask_pin(self, prefix: tuple[PromptItem, ...] = ()) -> FlowAction:
        return self._ask(_Ask("pin", (Sound("vm-enter-pin"),), _PIN_COLLECT), prefix)

    def _got_pin(self, got: Collected) -> FlowAction:
        box = self._box
        if box is not None and verify_pin(got.digits, box.pin_hash):
            self._repeats = 0
            self._authenticated = True
            return self._menu("main", self._summary())
        self._failures += 1
        invalid = (Sound("vm-invalid-pin"),)
        if self._failures >= MAX_PIN_TRIES:
            self._box = None
            return self._goodbye(invalid)
        if self._ask_mailbox:
            self._box = None
            return self._ask(_Ask("mailbox", (Sound("vm-enter-mailbox"),), _NUMBER_COLLECT), invalid)
        return self._ask_pin(invalid)

    def _summary(self) -> tuple[PromptItem, ...]:
        new = sum(1 for m in self._messages if m.folder is Folder.NEW)
        saved = len(self._messages) - new
        if not new and not saved:
            return (Sound("vm-no-messages"),)  # "You have no messages."
        items: list[PromptItem] = [Sound("vm-you-have")]
        if new:
            items += self._speech.say_count(min(new, 999), "vm-new-message", "vm-new-messages", self.lang)
        if saved:
            items += self._speech.say_count(
                min(saved, 999), "vm-saved-message", "vm-saved-messages", self.lang
            )
        return tuple(items)

    # -- menus -----------------------------------------------------------------------------------------------
    def _menu(self, name: str, prefix: tuple[PromptItem, ...] = ()) -> FlowAction:
        return self._ask(_Ask(name, self._menu_prompt(name), _MENU_COLLECT), prefix)

    def _menu_prompt(self, name: str) -> tuple[PromptItem, ...]:
        if name == "temp":
            state = (
                "vm-temp-is-on" if self._box is not None and self._box.temporary_active else "vm-temp-is-off"
            )
            return (Sound(state), Sound("vm-temp-menu"))
        return (Sound(f"vm-{name}-menu"),)

    def _got_main(self, got: Collected) -> FlowAction:
        return self._menu_key(got)

    _got_message = _got_options = _got_temp = _got_review = _got_main

    def _menu_key(self, got: Collected) -> FlowAction:
        assert self._asking is not None
        name = self._asking.name
        key = got.digits[:1]
        if not key:
            return self._timeout_repeat(got)
        if key not in MENU_KEYS[name]:
            return self._menu(name, (Sound("invalid-option"),))
        self._repeats = 0
        handler: Then = getattr(self, f"_key_{name}_{_KEY_NAMES.get(key, key)}")
        return handler()

    def _timeout_repeat(self, _got: Collected) -> FlowAction:
        assert self._asking is not None
        self._repeats += 1
        if self._repeats > MAX_MENU_REPEATS:
            return self._goodbye()
        return self._ask(self._asking)

    # main menu
    def _key_main_1(self) -> FlowAction:
        if not self._messages:
            return self._menu("main", (Sound("vm-no-messages"),))
        self._index = 0
        return self._play_message((Sound("vm-first-message"),))

    def _key_main_0(self) -> FlowAction:
        return self._menu("options")

    def _key_main_pound(self) -> FlowAction:
        return self._goodbye()

    def _key_main_star(self) -> FlowAction:
        return self._menu("main")

    # -- messages --------------------------------------------------------------------------------------------
    def _play_message(self, intro: tuple[PromptItem, ...] = ()) -> FlowAction:
        message = self._messages[self._index]
        self.state = FlowState.MESSAGE_PLAY
        return Play((*intro, File(message.audio_path)), barge_in=True)

    def _on_message_played(self, outcome: FlowOutcome) -> FlowAction:
        assert isinstance(outcome, Played)
        message_menu = _Ask("message", self._menu_prompt("message"), _MENU_COLLECT)
        if outcome.interrupted:
            # A key stopped the message: it is in the buffer; read it as a message-menu key.
            self._asking = message_menu
            self.state = FlowState.ASK_COLLECT
            return message_menu.collect
        if self._messages[self._index].folder is Folder.NEW:
            return self._mark_saved(lambda: self._ask(message_menu))
        return self._ask(message_menu)

    def _mark_saved(self, then: Then) -> FlowAction:
        assert self._box is not None
        message = self._messages[self._index]
        self._messages[self._index] = replace(message, folder=Folder.SAVED)
        return self._apply(MarkSaved(self._box.number, message.id), then)

    def _next_or_main(self, prefix: tuple[PromptItem, ...]) -> FlowAction:
        """After delete/save: the next message plays; past the last one, the main menu."""
        if self._index < len(self._messages):
            return self._play_message((*prefix, Sound("vm-next-message")))
        self._index = max(0, len(self._messages) - 1)
        return self._menu("main", (*prefix, Sound("vm-no-more-messages")))

    def _key_message_4(self) -> FlowAction:
        if self._index == 0:
            return self._play_message((Sound("vm-first-message"),))
        self._index -= 1
        return self._play_message(() if self._index else (Sound("vm-first-message"),))

    def _key_message_5(self) -> FlowAction:
        return self._play_message()

    def _key_message_6(self) -> FlowAction:
        if self._index + 1 >= len(self._messages):
            return self._menu("message", (Sound("vm-no-more-messages"),))
        self._index += 1
        return self._play_message((Sound("vm-next-message"),))

    _key_message_pound = _key_message_6

    def _key_message_7(self) -> FlowAction:
        assert self._box is not None
        message = self._messages.pop(self._index)
        return self._apply(
            DeleteMessage(self._box.number, message.id),
            lambda: self._next_or_main((Sound("vm-message-deleted"),)),
        )

    def _key_message_9(self) -> FlowAction:
        def advance() -> FlowAction:
            self._index += 1
            return self._next_or_main((Sound("vm-message-saved"),))

        if self._messages[self._index].folder is Folder.NEW:
            return self._mark_saved(advance)
        return advance()

    def _key_message_8(self) -> FlowAction:
        message = self._messages[self._index]
        caller: tuple[PromptItem, ...] = digit_sounds(message.caller) or (Sound("vm-unknown-caller"),)
        envelope = (
            Sound("vm-received"),
            *self._speech.say_datetime(message.received_at.astimezone(self.tz), self.lang),
            Sound("vm-from"),
            *caller,
        )
        return self._menu("message", envelope)

    def _key_message_star(self) -> FlowAction:
        return self._menu("main")

    # -- mailbox options -------------------------------------------------------------------------------------
    def _key_options_1(self) -> FlowAction:
        return self._start_recording(GreetingKind.UNAVAILABLE, "options")

    def _key_options_2(self) -> FlowAction:
        return self._start_recording(GreetingKind.BUSY, "options")

    def _key_options_3(self) -> FlowAction:
        return self._start_recording(None, "options")

    def _key_options_4(self) -> FlowAction:
        return self._menu("temp")

    def _key_options_5(self) -> FlowAction:
        return self._ask(_Ask("new_pin", (Sound("vm-enter-new-pin"),), _PIN_COLLECT))

    def _key_options_star(self) -> FlowAction:
        return self._menu("main")

    def _key_temp_1(self) -> FlowAction:
        return self._start_recording(GreetingKind.TEMPORARY, "temp")

    def _key_temp_2(self) -> FlowAction:
        box = self._box
        assert box is not None
        if not box.temporary_active and not box.greetings.get(GreetingKind.TEMPORARY):
            return self._start_recording(GreetingKind.TEMPORARY, "temp")
        self._box = replace(box, temporary_active=not box.temporary_active)
        return self._apply(
            SetTemporaryActive(box.number, not box.temporary_active), lambda: self._menu("temp")
        )

    def _key_temp_star(self) -> FlowAction:
        return self._menu("options")

    # -- PIN change ------------------------------------------------------------------------------------------
    def _got_new_pin(self, got: Collected) -> FlowAction:
        if not got.digits:
            return self._menu("options")
        try:
            validate_pin(got.digits)
        except VoicemailError:
            return self._menu("options", (Sound("vm-invalid-pin"),))
        self._new_pin = got.digits
        return self._ask(_Ask("confirm_pin", (Sound("vm-reenter-pin"),), _PIN_COLLECT))

    def _got_confirm_pin(self, got: Collected) -> FlowAction:
        pin, self._new_pin = self._new_pin, ""
        if got.digits != pin:
            return self._menu("options", (Sound("vm-pin-mismatch"),))
        box = self._box
        assert box is not None
        pin_hash = hash_pin(pin, self._new_salt())
        self._box = replace(box, pin_hash=pin_hash)
        return self._apply(
            SetPin(box.number, pin_hash), lambda: self._menu("options", (Sound("vm-pin-changed"),))
        )

    # -- recording greetings and the name ----------------------------------------------------------------
    def _start_recording(self, target: _RecordTarget, return_menu: str) -> FlowAction:
        self._target = target
        self._return_menu = return_menu
        return self._play((Sound("vm-record-after-tone"),), self._record, barge_in=False)

    def _record(self, _interrupted: bool = False) -> FlowAction:
        self._recordings += 1
        path = str(PurePath(self._scratch_dir, f"{self._token}-{self._recordings}.wav"))
        self.state = FlowState.RECORDING
        self._pending_recording = path
        return Record(
            path, max_s=DEFAULT_MAX_GREETING_S, silence_s=RECORD_SILENCE_S, stop_keys="#", beep=True
        )

    def _on_recorded(self, outcome: FlowOutcome) -> FlowAction:
        assert isinstance(outcome, Recorded)
        self._pending_recording = outcome.path
        if outcome.ended == "hangup":
            return self._hung_up()  # an unconfirmed greeting is not kept
        if outcome.path is None or outcome.duration_s < MIN_MESSAGE_S:
            return self._discard_pending(
                lambda: self._menu(self._return_menu, (Sound("vm-message-too-short"),))
            )
        return self._menu("review")

    def _key_review_1(self) -> FlowAction:
        box, path, target = self._box, self._pending_recording, self._target
        assert box is not None and path is not None
        self._pending_recording = None
        saved = (Sound("vm-recording-saved"),)
        if target is None:
            self._box = replace(box, name_path=path)
            return self._apply(SetName(box.number, path), lambda: self._menu(self._return_menu, saved))
        greetings = {**box.greetings, target: path}
        if target is GreetingKind.TEMPORARY:
            self._box = replace(box, greetings=greetings, temporary_active=True)
            return self._apply(
                SetGreeting(box.number, target, path),
                lambda: self._apply(
                    SetTemporaryActive(box.number, True), lambda: self._menu(self._return_menu, saved)
                ),
            )
        self._box = replace(box, greetings=greetings)
        return self._apply(
            SetGreeting(box.number, target, path), lambda: self._menu(self._return_menu, saved)
        )

    def _key_review_2(self) -> FlowAction:
        assert self._pending_recording is not None
        return self._play((File(self._pending_recording),), lambda _i: self._menu("review"))

    def _key_review_3(self) -> FlowAction:
        return self._discard_pending(
            lambda: self._play((Sound("vm-record-after-tone"),), self._record, barge_in=False)
        )

    def _key_review_star(self) -> FlowAction:
        return self._discard_pending(lambda: self._menu(self._return_menu))
