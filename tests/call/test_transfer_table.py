"""The blind transfer table (engine.call.transfer): every (state, input) pair, and the paths through it."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.call.transfer import (
    TRANSFER_TABLE,
    TransferAction,
    TransferInput,
    TransferState,
    transfer_step,
)

S, In, A = TransferState, TransferInput, TransferAction
LIVE = (S.RINGING, S.RINGING_ALONE, S.CALLING_BACK)


@pytest.mark.parametrize(("state", "inp"), list(itertools.product(TransferState, TransferInput)))
def test_every_pair_moves_by_the_table_or_is_one_the_service_never_gives(
        state: TransferState, inp: TransferInput) -> None:
    if (state, inp) in TRANSFER_TABLE:
        assert transfer_step(state, inp) == TRANSFER_TABLE[(state, inp)]
        return
    with pytest.raises(KeyError):
        transfer_step(state, inp)
    # Missing: anything once the transfer is over (its legs' hooks are cleared then), and the transferrer
    # leaving when it is gone already (it is rung back only after it left).
    assert state in (S.DONE, S.FAILED) or (inp is In.TRANSFERRER_GONE and state is not S.RINGING)


@pytest.mark.parametrize("state", LIVE)
def test_a_live_transfer_ends_on_the_target_answering_or_the_transferee_leaving(state: TransferState) -> None:
    assert transfer_step(state, In.ANSWERED) == (A.COMPLETE, S.DONE)
    assert transfer_step(state, In.TRANSFEREE_GONE) == (A.ABANDON, S.FAILED)


def test_a_failure_reconnects_the_transferrer_still_there_else_rings_it_back_once() -> None:
    assert transfer_step(S.RINGING, In.FAILED) == (A.RECONNECT, S.FAILED)
    assert transfer_step(S.RINGING, In.TRANSFERRER_GONE) == (A.NONE, S.RINGING_ALONE)
    assert transfer_step(S.RINGING_ALONE, In.FAILED) == (A.CALL_BACK, S.CALLING_BACK)
    assert transfer_step(S.CALLING_BACK, In.FAILED) == (A.HANG_UP, S.FAILED)


@given(st.lists(st.sampled_from(list(TransferInput)), max_size=8))
def test_any_sequence_the_service_can_give_ends_done_or_failed_within_three_moves(
        inputs: list[TransferInput]) -> None:
    state = S.RINGING
    moves = 0
    for inp in inputs:
        if (state, inp) not in TRANSFER_TABLE:
            continue  # not given in that state (see the first test)
        _, state = transfer_step(state, inp)
        moves += 1
        if state in (S.DONE, S.FAILED):
            break
    assert moves <= 3
    assert state in (S.DONE, S.FAILED) or state in LIVE
