"""The named states of the inspection cycle and the transitions allowed between them."""
from __future__ import annotations

import enum


class CycleState(str, enum.Enum):
    IDLE = "idle"  # not armed: no trigger is accepted
    ARMED = "armed"  # waiting for the next trigger
    CAPTURING = "capturing"
    CHECKING = "checking"  # capture-spec checks
    DETECTING = "detecting"
    RECORDING = "recording"  # the durable write
    SUSPENDED = "suspended"  # an interlock holds the cycle; resume continues
    FAULTED = "faulted"  # the cycle cannot continue without intervention (camera lost, disk full)


_S = CycleState
ALLOWED: dict[CycleState, frozenset[CycleState]] = {
    _S.IDLE: frozenset({_S.ARMED, _S.FAULTED}),
    _S.ARMED: frozenset({_S.CAPTURING, _S.IDLE, _S.SUSPENDED, _S.FAULTED}),
    # a capture fault or an abort goes straight to recording (the fault is recorded);
    # a finite source (replay folder) that has run out goes idle: there is no part to record;
    # a watched folder where nothing landed within the timeout goes back to armed (no part)
    _S.CAPTURING: frozenset({_S.CHECKING, _S.RECORDING, _S.IDLE, _S.ARMED, _S.FAULTED}),
    _S.CHECKING: frozenset({_S.DETECTING, _S.RECORDING, _S.FAULTED}),
    _S.DETECTING: frozenset({_S.RECORDING, _S.FAULTED}),
    _S.RECORDING: frozenset({_S.ARMED, _S.IDLE, _S.SUSPENDED, _S.FAULTED}),
    _S.SUSPENDED: frozenset({_S.ARMED, _S.IDLE, _S.FAULTED}),
    _S.FAULTED: frozenset({_S.ARMED, _S.IDLE}),
}


class InvalidTransition(RuntimeError):
    """A command was given in a state that does not allow it."""


def check_transition(old: CycleState, new: CycleState) -> None:
    if new not in ALLOWED[old]:
        raise InvalidTransition(f"cannot go from {old.value} to {new.value}")
