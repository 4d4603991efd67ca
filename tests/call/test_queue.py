"""Queue agents' state machine, a table: every (state, event) pair moves as the table says, or is refused."""

from __future__ import annotations

import itertools

import pytest

from engine.call.queue import TRANSITIONS, AgentEvent, AgentState, QueueError, agent_step

EXPECTED = {
    (AgentState.AVAILABLE, AgentEvent.OFFER): AgentState.RINGING,
    (AgentState.RINGING, AgentEvent.NO_ANSWER): AgentState.AVAILABLE,
    (AgentState.RINGING, AgentEvent.ANSWER): AgentState.ON_CALL,
    (AgentState.ON_CALL, AgentEvent.HANG_UP): AgentState.WRAP_UP,
    (AgentState.WRAP_UP, AgentEvent.WRAP_DONE): AgentState.AVAILABLE,
}


@pytest.mark.parametrize(("state", "event"), list(itertools.product(AgentState, AgentEvent)))
def test_every_pair_moves_as_the_table_says_or_is_refused(state: AgentState, event: AgentEvent) -> None:
    if (state, event) in EXPECTED:
        assert agent_step(state, event) is EXPECTED[(state, event)]
    else:
        with pytest.raises(QueueError, match=f"{event.value} in state {state.value}"):
            agent_step(state, event)


def test_the_table_is_the_one_tested() -> None:
    assert TRANSITIONS == EXPECTED
