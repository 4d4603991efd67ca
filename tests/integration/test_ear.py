"""The prompt detector of the voicemail integration tests (``find_prompt`` and its helpers), on recordings
made here: prompts through G.711, cut and slipped the way a loaded machine cuts and slips what pjsua2 records.

Measured in the recordings of loaded runs: pjsua2's jitter buffer, run empty by late packets, makes up
frames ("plc invoked" in its log) or loses one, which shifts the rest of a prompt by a multiple of 10 ms
(one or two frames mostly, 120 ms once, several times a call); and the recorder, attached once the call is
up, may miss the first ms of the first prompt. The detector
missed a prompt that began a little before the point it searched from, so the test did not press its keys,
the engine's timeout counted as a wrong PIN and the call ended a try early (CI:
``test_three_wrong_pins_end_the_call_two_do_not``, 17.6 s recorded).
"""

from __future__ import annotations

from typing import Final

import numpy as np

from engine.media.g711 import PT_PCMU, G711Codec

from .audio import RATE_HZ
from .test_voicemail import HEARD, SLIPS, Samples, find_prompt, find_sequence, prompt

SLIP_SAMPLES: Final = 80  # 10 ms, what pjsua2 inserted or dropped in the failed runs
CODEC: Final = G711Codec(PT_PCMU)


def through_g711(*parts: Samples) -> Samples:
    """``parts`` one after another, as a phone records them: encoded and decoded with µ-law."""
    pcm = np.round(np.concatenate(parts) * 32767).astype(np.int16)
    return CODEC.decode(CODEC.encode(pcm)).astype(np.float64) / 32768.0


def silence(seconds: float) -> Samples:
    return np.zeros(int(seconds * RATE_HZ))


def slipped(samples: Samples, at_s: float, shift: int = SLIP_SAMPLES) -> Samples:
    """``samples`` with a slip at ``at_s``: ``shift`` samples made up there the way packet loss concealment
    does (the last 10 ms again and again, fading), or lost when negative."""
    at = int(at_s * RATE_HZ)
    if shift < 0:
        return np.concatenate((samples[:at], samples[at - shift :]))
    repeats = -(-shift // SLIP_SAMPLES)
    fading = np.repeat(0.7 ** np.arange(1, repeats + 1), SLIP_SAMPLES)
    made_up = np.tile(samples[at - SLIP_SAMPLES : at], repeats) * fading
    return np.concatenate((samples[:at], made_up[:shift], samples[at:]))


def begins(heard: Samples, key: str, start: int = 0) -> tuple[float, int]:
    """What ``Ear.begins`` checks: the score of the first 0.7 s of ``key`` after ``start``, and its start."""
    score, begin, end = find_prompt(heard, prompt(key)[: int(0.7 * RATE_HZ)], start)
    assert end > 0 or score < HEARD
    return score, begin


def test_a_prompt_whose_first_ms_the_recorder_missed_is_found_at_once() -> None:
    for lost in (1, 400, 1200):  # 0.1 ms, 50 ms, 150 ms
        heard = through_g711(prompt("vm-enter-pin")[lost:], silence(1.0))
        score, begin = begins(heard, "vm-enter-pin")
        assert score >= HEARD and begin == 0, (lost, score, begin)


def test_the_next_prompt_is_found_when_the_end_of_the_previous_one_is_estimated_too_late() -> None:
    """ "Invalid PIN" and "enter your PIN" are played as one: a frame dropped in the first one's closing
    pause makes its end (from the prompt's length) fall after the start of the second one."""
    invalid = slipped(prompt("vm-invalid-pin"), 1.93, -SLIP_SAMPLES)
    heard = through_g711(silence(0.5), invalid, prompt("vm-enter-pin"))
    ((_, score, _, end),) = find_sequence(heard, ["vm-invalid-pin"])
    truth = int(0.5 * RATE_HZ) + len(invalid)
    assert score >= HEARD and end == truth + SLIP_SAMPLES  # too late by the dropped frame
    score, begin = begins(heard, "vm-enter-pin", end)
    assert score >= HEARD and abs(begin - truth) <= 8, (score, begin, truth)


def test_a_slip_inside_a_prompt_is_heard_through() -> None:
    """One slip anywhere (in the head too, which is all that ``Ear.begins`` compares): one or two frames
    concealed or lost, or a longer gap concealed."""
    for key in ("goodbye", "vm-invalid-pin", "vm-enter-pin"):
        length_s = len(prompt(key)) / RATE_HZ
        for at_s in (0.2631, 0.4517, 0.6093, 0.8237, 1.1071, 1.5353, length_s - 0.1):
            if at_s >= length_s:
                continue
            for shift in (*SLIPS[:4], 800, SLIPS[-1]):
                heard = through_g711(silence(0.3), slipped(prompt(key), at_s, shift), silence(0.5))
                score, begin, end = find_prompt(heard, prompt(key))
                case = (key, at_s, shift, score, begin, end)
                # where it began: exact but for a slip near the start, then off by at most that slip; where
                # it ended: within a frame (what PLC makes up may look like the sound before it), but for a
                # slip in the closing pause (the end is then from the prompt's length)
                assert score >= HEARD and abs(begin - int(0.3 * RATE_HZ)) <= max(8, abs(shift)), case
                if at_s < length_s - 0.15:
                    assert abs(end - (int(0.3 * RATE_HZ) + len(prompt(key)) + shift)) <= 80, case
                assert begins(heard, key)[0] >= HEARD, case


def test_two_slips_close_together_in_the_head_are_heard_through() -> None:
    """Seen in a loaded run: 20 ms made up 0.34 s into "vm-enter-pin", 100 ms more 80 ms later."""
    heard = through_g711(silence(0.3), slipped(slipped(prompt("vm-enter-pin"), 0.42, 800), 0.34, 160))
    assert begins(heard, "vm-enter-pin")[0] >= HEARD
    score, begin, end = find_prompt(heard, prompt("vm-enter-pin"))
    assert score >= HEARD and begin == int(0.3 * RATE_HZ), (score, begin)
    assert abs(end - (begin + len(prompt("vm-enter-pin")) + 960)) <= 80, (begin, end)


def test_prompts_that_differ_in_their_last_word_are_still_told_apart() -> None:
    for said, other in (("vm-temp-is-on", "vm-temp-is-off"), ("vm-temp-is-off", "vm-temp-is-on")):
        for shift in (0, SLIP_SAMPLES):
            heard = through_g711(silence(0.3), slipped(prompt(said), 0.9, shift), silence(0.5))
            assert find_prompt(heard, prompt(said))[0] >= HEARD, (said, shift)
            assert find_prompt(heard, prompt(other))[0] < HEARD, (said, other, shift)


def test_a_prompt_that_was_not_played_is_not_heard() -> None:
    heard = through_g711(
        silence(0.3),
        slipped(prompt("vm-enter-pin"), 1.5),
        slipped(prompt("vm-invalid-pin"), 0.8),
        prompt("goodbye"),
        silence(0.5),
    )
    for key in ("vm-main-menu", "vm-person-at-extension", "vm-enter-mailbox", "vm-you-have"):
        assert find_prompt(heard, prompt(key))[0] < 0.5, key
    assert begins(heard, "vm-enter-pin", int(2.0 * RATE_HZ))[0] < HEARD, "after its start: not again"
