"""The fork table (engine.call.fork): every (state, input) pair, and the rules of §16.7."""

from __future__ import annotations

import itertools

import pytest

from engine.call.fork import LEG_TABLE, UNFINISHED, LegAction, LegInput, LegState, best_status, leg_step

#: What a branch's peer can send (the manager maps a 2xx to ANSWER or LATE, a timeout to FINAL).
REMOTE = (LegInput.TRYING, LegInput.PROGRESS, LegInput.LATE, LegInput.FINAL)


@pytest.mark.parametrize(("state", "inp"), list(itertools.product(LegState, LegInput)))
def test_every_pair_moves_by_the_table_or_is_one_the_manager_never_gives(
        state: LegState, inp: LegInput) -> None:
    if (state, inp) in LEG_TABLE:
        assert leg_step(state, inp) == LEG_TABLE[(state, inp)]
        return
    with pytest.raises(KeyError):
        leg_step(state, inp)
    # What is missing: a 2xx the call still wants on a branch it gave up or that is over, a response to an
    # INVITE transaction that no longer exists (the manager only feeds branches it still tracks).
    assert state in (LegState.ANSWERED, LegState.ENDED) or inp is LegInput.ANSWER


@pytest.mark.parametrize("state", sorted(UNFINISHED, key=lambda s: s.value))
def test_every_unfinished_branch_takes_any_response_its_peer_sends(state: LegState) -> None:
    for inp in REMOTE:
        assert (state, inp) in LEG_TABLE


def test_no_cancel_before_a_provisional_then_at_the_first_one() -> None:
    state, action = leg_step(LegState.CALLING, LegInput.CANCEL)
    assert (state, action) == (LegState.CANCEL_WAIT, LegAction.GUARD)
    assert leg_step(state, LegInput.CANCEL) == (LegState.CANCEL_WAIT, LegAction.NONE)
    assert leg_step(state, LegInput.TRYING) == (LegState.CANCELLING, LegAction.CANCEL)
    assert leg_step(LegState.CANCELLING, LegInput.PROGRESS) == (LegState.CANCELLING, LegAction.NONE)


def test_ringing_is_relayed_until_the_branch_is_given_up() -> None:
    assert leg_step(LegState.TRYING, LegInput.PROGRESS) == (LegState.EARLY, LegAction.RELAY)
    assert leg_step(LegState.EARLY, LegInput.PROGRESS) == (LegState.EARLY, LegAction.RELAY)
    assert leg_step(LegState.EARLY, LegInput.CANCEL) == (LegState.CANCELLING, LegAction.CANCEL)


def test_a_2xx_after_the_cancel_is_late_and_ends_the_branch() -> None:
    assert leg_step(LegState.CANCELLING, LegInput.LATE) == (LegState.ENDED, LegAction.LATE)
    assert leg_step(LegState.EARLY, LegInput.ANSWER) == (LegState.ANSWERED, LegAction.ANSWER)
    assert leg_step(LegState.ANSWERED, LegInput.CANCEL) == (LegState.ANSWERED, LegAction.NONE)


@pytest.mark.parametrize(("statuses", "best"), [
    ([404, 486], 486), ([600], 486), ([404, 503], 404), ([503, 408], 503), ([408], 480), ([302], 480),
    ([401], 403), ([], 480), ([603, 404], 603),
])
def test_best_status(statuses: list[int], best: int) -> None:
    assert best_status(statuses) == best
