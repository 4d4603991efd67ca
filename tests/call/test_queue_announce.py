"""A queue's announcements (issue 12 part 2): what a waiting caller hears of its place in line and the
estimated wait, when (at joining, then on the queue's beat with its periodic clip), and the estimate the
queue keeps (a running average of answered callers' waits). In-process, on the queue flow tests' rig; the
prompts themselves are heard by a real phone in tests/integration/test_queue_calls.py."""

from __future__ import annotations

from typing import Any

import pytest

from engine.call.flows import MediaRequest
from engine.call.queue import WAIT_WEIGHT
from engine.call.queuewait import announcement
from engine.dialplan.compiler import compile_config
from engine.dialplan.plan import CompiledConfig, Queue
from engine.dialplan.schema import ConfigInputs
from engine.model.entities import Company, Line, PhoneNumber, User
from engine.script import File, Play, Sound
from tests.call.test_queue_flow import QueueRig, _config

CLIP = "/nonexistent/hi.wav"


def _sounds(items: tuple[Any, ...]) -> list[str]:
    return [i.key if isinstance(i, Sound) else f"file:{i.path}" for i in items]


def _timed(rig: QueueRig) -> list[tuple[float, list[str]]]:
    """Every Play the rig's callers got, with its time (the rig's media port is shared by its callers)."""
    plays: list[tuple[float, list[str]]] = []
    media = rig.media
    run = media.run

    def logged(action: MediaRequest, done: Any) -> None:
        if isinstance(action, Play):
            plays.append((rig.net.now, _sounds(action.items)))
        run(action, done)

    media.run = logged  # type: ignore[method-assign]
    return plays


def test_each_caller_hears_its_place_on_joining_and_again_on_the_beat_with_the_clip() -> None:
    rig = QueueRig(_config(announce_position=True, announce_every_seconds=10, announce_clip="hi"),
                   modes=("ring", "ring"))
    plays = _timed(rig)
    rig.call_at(0.0, 0)
    rig.call_at(0.5, 1)
    rig.hang_up_at(14.0, rig.callers[0])  # the second caller moves up
    rig.hang_up_at(24.0, rig.callers[1])
    rig.net.run(until=60.0)
    said = [(round(when), heard) for when, heard in plays]
    # at joining: the place only (no clip); German, the company's language
    assert said[0][1] == ["queue-position-first", "queue-thanks"] and said[0][0] <= 1
    assert said[1][1] == ["queue-position", "num-2", "queue-thanks"] and said[1][0] <= 1
    beat = [(when, heard) for when, heard in said[2:]]
    # on the beat (10 s after joining): the clip, then the place; after 14 s the second caller is first
    assert (10, [f"file:{CLIP}", "queue-position-first", "queue-thanks"]) in beat
    assert (11, [f"file:{CLIP}", "queue-position", "num-2", "queue-thanks"]) in beat
    assert (21, [f"file:{CLIP}", "queue-position-first", "queue-thanks"]) in beat
    assert len(beat) == 3  # nothing in between: one announcement per caller per beat
    assert rig.queues.stats["q"].abandoned == 2
    rig.assert_clean()


def test_a_queue_without_announcements_plays_nothing_over_its_hold_music() -> None:
    rig = QueueRig(_config(), modes=("ring", "ring"))
    plays = _timed(rig)
    rig.call_at(0.0, 0)
    rig.hang_up_at(130.0, rig.callers[0])
    rig.net.run(until=200.0)
    assert plays == []
    rig.assert_clean()


def test_the_estimated_wait_follows_the_answered_callers_waits() -> None:
    """One agent: the first caller is answered at once, the second waits 300 s for it (hearing "less than a
    minute" from the first caller's wait), the third hears "about two minutes" (0 + 300 / 4 = 75 s)."""
    rig = QueueRig(_config(agents=[{"line": "202"}], announce_wait=True, announce_every_seconds=3600))
    plays = _timed(rig)
    rig.call_at(0.0, 0)
    rig.call_at(5.0, 1)
    rig.hang_up_at(305.0, rig.callers[0])  # 202 takes the second caller then
    rig.call_at(310.0, 2)
    rig.hang_up_at(320.0, rig.callers[1])
    rig.hang_up_at(330.0, rig.callers[2])
    rig.net.run(until=400.0)
    assert [(round(when), heard) for when, heard in plays] == [
        (5, ["queue-wait-short", "queue-thanks"]),  # the first caller (answered at once) heard nothing
        (310, ["queue-wait", "num-2", "queue-minutes", "queue-thanks"]),
    ]
    assert rig.queues.stats["q"].answered == 3
    rig.assert_clean()


def test_the_running_average_weights_the_latest_wait_by_a_quarter() -> None:
    rig = QueueRig(_config(agents=[{"line": "202"}]))
    waits: list[float] = []
    ended = rig.queues.offer_ended

    def offer_ended(ticket: Any, answered_by: str | None) -> None:
        if answered_by is not None:
            waits.append(rig.net.now - ticket.joined_at)
        ended(ticket, answered_by)

    rig.queues.offer_ended = offer_ended  # type: ignore[method-assign]
    rig.call_at(0.0, 0)
    rig.call_at(1.0, 1)
    rig.hang_up_at(41.0, rig.callers[0])
    rig.hang_up_at(50.0, rig.callers[1])
    rig.net.run(until=100.0)
    assert len(waits) == 2 and waits[0] < 5.0 < 35.0 < waits[1]  # answered at once, then after the first
    assert rig.queues._avg_wait["q"] == pytest.approx(waits[0] + WAIT_WEIGHT * (waits[1] - waits[0]))


def _queue(**fields: Any) -> Queue:
    return Queue("q", ("202",), **fields)


@pytest.mark.parametrize(("place", "wait", "language", "expected"), [
    (1, None, "en", ["queue-position-first", "queue-thanks"]),
    (3, None, "en", ["queue-position", "num-3", "queue-thanks"]),
    (21, None, "de", ["queue-position", "num-1-prefix", "num-and", "num-20", "queue-thanks"]),
    (2, 30.0, "en", ["queue-position", "num-2", "queue-wait-short", "queue-thanks"]),
    (2, 60.0, "en", ["queue-position", "num-2", "queue-wait", "count-one", "queue-minute", "queue-thanks"]),
    (2, 61.0, "de", ["queue-position", "num-2", "queue-wait", "num-2", "queue-minutes", "queue-thanks"]),
    (1000, 0.0, "en", ["queue-wait-short", "queue-thanks"]),  # beyond what is said: the wait only
])
def test_what_is_said_for_a_place_and_a_wait(place: int, wait: float | None, language: str,
                                            expected: list[str]) -> None:
    queue = _queue(announce_position=True, announce_wait=True)
    assert _sounds(announcement(queue, place, wait, language, periodic=False)) == expected


def test_the_clip_only_on_the_beat_and_nothing_when_nothing_is_announced() -> None:
    queue = _queue(announce_clip=CLIP)
    assert announcement(queue, 2, 10.0, "en", periodic=False) == ()
    assert announcement(queue, 2, 10.0, "en", periodic=True) == (File(CLIP),)
    assert announcement(_queue(announce_wait=True), 2, None, "en", periodic=True) == ()
    assert not _queue().announces and queue.announces


def _compile(**queue: Any) -> tuple[CompiledConfig | None, list[str]]:
    users = [User(1, "U1", "L1")]
    lines = [Line(1, 1, "201", "U1", None, "", "")]
    objects = {"queues": [{"name": "q", "agents": [{"line": "201"}], **queue}]}
    result = compile_config(ConfigInputs(Company("Test GmbH"), users, lines, [PhoneNumber("+4930111", "queue",
                                                                                         "q")], [], objects))
    return result.config, [f"{e.path}: {e.message}" for e in result.errors]


def test_the_compiler_checks_the_announcement_fields_naming_each() -> None:
    config, errors = _compile(announce_position="yes", announce_wait=1, announce_every_seconds=5,
                              announce_clip="nope", service_level_seconds=0)
    assert config is None
    for name in ("announce_position", "announce_wait", "announce_every_seconds", "announce_clip",
                 "service_level_seconds"):
        assert any(f"queues[0].{name}" in e or f".{name}" in e for e in errors), (name, errors)
    config, errors = _compile(announce_position=True, announce_every_seconds=45, service_level_seconds=30)
    assert config is not None, errors
    queue = config.queues["q"]
    assert (queue.announce_position, queue.announce_wait, queue.announce_every_s, queue.service_level_s) == (
        True, False, 45.0, 30.0)

