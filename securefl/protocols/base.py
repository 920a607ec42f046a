"""Sans-I/O protocol engines on one phase machine: typed messages in, typed messages out.

A protocol object is a configuration. ``Protocol.setup`` makes one client
engine per client, one server engine and any helper parties the protocol
needs (extra aggregators, a decryptor). Engines consume and produce
:class:`~securefl.protocols.wire.Message` objects; they never open sockets,
sleep, spawn processes or read clocks, so the same code runs in a unit test,
the in-process simulator and a networked driver.

Every engine runs on the phase machine below; a protocol only declares its
:class:`Step` s (phase, accepted message types, handler) and writes the
handlers. The machine, not the handlers, enforces:

- phases in the order the protocol declares (``RunParameters.phases``): the
  server opens them with ``begin_phase`` / closes them with ``end_phase``;
  a responder (client, helper) enters a phase when that phase's message
  arrives and never goes back;
- a message for a phase that is not open (out of order, replayed, a second
  request) is refused with ``UnexpectedMessage``; a message from a party that
  may not send it with ``UnexpectedSender``; a wrong session, round or
  recipient with ``InvalidMessage``; none of these changes the engine's state;
- a phase begun twice or out of order, or a result asked too early, is the
  local driver's fault: ``LocalProtocolError``;
- terminal states: ``DONE`` after the last phase, ``ABORTED`` after a
  refusal of a request (or a ``ProtocolAbort``); in either, every call raises
  ``AlreadyFinalized`` and the engine's secrets are wiped. Engines are single
  use: one aggregation each.

The engine's ``state`` and ``phase`` are public and read-only (as h11's
``our_state``).

State as plain data: ``engine.state_dict()`` is a flat mapping of ints,
bools, strings, bytes, lists of one of those and 1-D arrays
(:mod:`securefl.protocols.state`) holding the machine's position, the
senders answered, the terminal state and the engine's own fields (X25519 /
Ed25519 private keys as their raw 32 bytes, Shamir shares as bytes, vectors
as arrays); ``type(engine).from_state_dict(run, state)`` (or
``protocol.restore_engine(run, state)``) rebuilds the same engine under the
same ``RunParameters``, validating every field: a tampered, truncated or
foreign state raises ``InvalidMessage`` and builds nothing. Nothing on the
message path calls them; a networked party that lives in fresh processes
(a Flower SuperNode) stores its engine this way between messages, no pickle.
``Protocol.client_engine`` / ``helper_engine`` build one party's engine
alone, so such a party never makes the others'.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, TypeVar

import numpy as np

from securefl import ring, validation
from securefl.crypto.keys import context
from securefl.encoding import Encoding
from securefl.errors import (
    AlreadyFinalized,
    ConfigurationError,
    InvalidMessage,
    LocalProtocolError,
    UnexpectedMessage,
    UnexpectedSender,
)
from securefl.protocols.state import StateDict, StateReader, StateValue
from securefl.protocols.wire import SERVER, SESSION_BYTES, Message, client_index

if TYPE_CHECKING:
    from securefl.crypto.keys import SigningKey

__all__ = [
    "EngineState",
    "Step",
    "Header",
    "Engine",
    "RespondingEngine",
    "ClientEngine",
    "ServerEngine",
    "Parties",
    "RunParameters",
    "RingAggregate",
    "Protocol",
    "check_vector",
    "in_ring",
    "DEFAULT_MIN_CLIENTS",
    "SERVER_ONLY",
    "check_min_clients",
    "received",
    "StateDict",
    "StateValue",
    "STATE_FORMAT",
]

DEFAULT_MIN_CLIENTS = 2
"""No protocol releases a sum of fewer inputs unless configured to (a sum of one is that input)."""

Handler = Callable[[Message], list[Message]]
Header = tuple[bytes, int, str, str, str]
"""The positional header fields of a message: session, round, phase, sender, recipient."""


MessageT = TypeVar("MessageT", bound=Message)
_ProtocolT = TypeVar("_ProtocolT", bound="Protocol")
_EngineT = TypeVar("_EngineT", bound="Engine")
_RunT = TypeVar("_RunT", bound="RunParameters")

STATE_FORMAT = "securefl/engine-state/v1"
"""The ``format`` field of every stored engine state."""
_RUN_LABEL = "securefl/run-parameters/v1"
RUN_FINGERPRINT_BYTES = 32


def received(message: Message, kind: type[MessageT]) -> MessageT:
    """``message`` as the type its step accepts (``UnexpectedMessage`` for any other)."""
    if not isinstance(message, kind):
        raise UnexpectedMessage(f"expected {kind.__name__}; found {type(message).__name__}")
    return message


class EngineState(enum.Enum):
    """Where an engine is: running phases, finished, or stopped by a refusal or an abort."""

    ACTIVE = "active"
    DONE = "done"
    ABORTED = "aborted"


@dataclass(frozen=True)
class Step:
    """One phase of one engine: the message types it accepts there, who may send them, the handler.

    ``senders``: the parties that may send them; for the server ``None``
    means "the parties asked when the phase began". ``once``: a responder
    takes exactly one message in this step (a request); else one per sender.
    ``required``: a responder must pass through this step before a later one.
    ``begin`` / ``end``: the server's hooks that make the phase's requests
    and close it.
    """

    phase: str
    accepts: tuple[type[Message], ...] = ()
    receive: Handler | None = None
    senders: frozenset[str] | None = None
    once: bool = True
    required: bool = True
    begin: Callable[[], list[Message]] | None = None
    end: Callable[[], None] | None = None


@dataclass(frozen=True)
class RunParameters:
    """The public parameters every engine of one aggregation shares: plain data, never a secret."""

    phases: tuple[str, ...]
    clients: int
    length: int
    session: bytes
    round: int
    ring_bits: int
    min_clients: int

    def header(self, phase: str, sender: str, recipient: str) -> Header:
        """The positional header fields of a message of this run."""
        return (self.session, self.round, phase, sender, recipient)

    def fingerprint(self) -> bytes:
        """SHA-256 of every public parameter (``context`` encoding): a stored state names the run it belongs to.

        Local tuning knobs (thread counts) are left out; protocols add their
        own parameters in ``_identity``.
        """
        return hashlib.sha256(context(_RUN_LABEL, type(self).__name__, *self._identity())).digest()

    def _identity(self) -> tuple[bytes | str | int, ...]:
        return (len(self.phases), *self.phases, self.clients, self.length, self.session, self.round,
                self.ring_bits, self.min_clients)


class Engine(ABC):
    """One party's protocol state machine (see the module docstring for the rules it keeps)."""

    party: str

    def __init__(self, party: str, run: RunParameters) -> None:
        self.party = party
        self._run = run
        steps = tuple(self._steps())
        phases = [step.phase for step in steps]
        if any(phase not in run.phases for phase in phases) or phases != sorted(phases, key=run.phases.index) \
                or len(set(phases)) != len(phases):
            raise ConfigurationError(f"{party}'s steps {phases} are not distinct phases of {run.phases} in order")
        self._machine_steps = steps
        self._position = -1
        self._state = EngineState.ACTIVE
        self._stop_reason: str | None = None

    @abstractmethod
    def _steps(self) -> Sequence[Step]:
        """The steps of this engine, in phase order."""

    # -- public, read-only state --------------------------------------------------------

    @property
    def state(self) -> EngineState:
        return self._state

    @property
    def phase(self) -> str | None:
        """The phase this engine is in (None before the first and after a terminal state)."""
        if self._state is not EngineState.ACTIVE or self._position < 0:
            return None
        return self._machine_steps[self._position].phase

    @property
    def run(self) -> RunParameters:
        """The public parameters of the aggregation this engine takes part in."""
        return self._run

    @property
    def stop_reason(self) -> str | None:
        """Why the engine stopped (ABORTED), or None."""
        return self._stop_reason

    # -- the machine ----------------------------------------------------------------------

    @abstractmethod
    def handle(self, message: Message) -> list[Message]:
        """Consume one inbound message; return the messages to send in reply."""

    def _require_active(self) -> None:
        if self._state is EngineState.DONE:
            raise AlreadyFinalized(f"{self.party} has finished this aggregation; it answers nothing more")
        if self._state is EngineState.ABORTED:
            raise AlreadyFinalized(f"{self.party} has stopped ({self._stop_reason}); it answers nothing more")

    def _check_header(self, message: Message) -> None:
        run = self._run
        if not isinstance(message, Message):
            raise InvalidMessage(f"expected a message; found {type(message).__name__}")
        if message.session != run.session:
            raise InvalidMessage("message belongs to another session")
        if message.round != run.round:
            raise InvalidMessage(f"message is for round {message.round}; this is round {run.round}")
        if message.recipient != self.party:
            raise InvalidMessage(f"message is addressed to {message.recipient!r}, not {self.party!r}")

    def _abort(self, reason: str) -> None:
        self._state = EngineState.ABORTED
        self._stop_reason = reason
        self._wipe()

    def _finish(self) -> None:
        self._state = EngineState.DONE
        self._wipe()

    def _wipe(self) -> None:  # noqa: B027 - a hook: engines without secrets keep the empty default
        """Forget every secret (called on DONE and ABORTED); engines holding secrets extend it."""

    def _run_handler(self, step: Step, message: Message, *, abort_on_invalid: bool) -> list[Message]:
        receive = step.receive
        if receive is None:
            raise UnexpectedMessage(f"phase {step.phase!r} of {self.party} takes no message")
        try:
            return receive(message)
        except InvalidMessage as error:
            if abort_on_invalid:
                self._abort(f"refused {type(message).__name__} in phase {step.phase!r}: {error}")
            raise
        except Exception as error:  # a refusal, or anything unexpected: either way this engine is done
            self._abort(f"refused {type(message).__name__} in phase {step.phase!r}: {error}")
            raise

    # -- plain-data state (never called on the message path) ---------------------------------

    STATE_KIND: ClassVar[str] = ""
    """The ``engine`` field of this engine's stored state ("" for an engine without one)."""

    def state_dict(self) -> StateDict:
        """This engine as plain data: machine position, answered senders, terminal state, own fields.

        The inverse is :meth:`from_state_dict`. The state holds the engine's
        secrets: keep it where only this party reads it.
        """
        if not self.STATE_KIND:
            raise ConfigurationError(f"{type(self).__name__} has no plain-data state")
        state: StateDict = {
            "format": STATE_FORMAT,
            "engine": self.STATE_KIND,
            "party": self.party,
            "run": self._run.fingerprint(),
            "status": self._state.value,
            "position": self._position,
            "stop-reason": self._stop_reason or "",
        }
        for part in (self._machine_state(), self._state_fields()):
            overlap = state.keys() & part.keys()
            if overlap:
                raise LocalProtocolError(f"{type(self).__name__} stores the field(s) {sorted(overlap)} twice")
            state.update(part)
        return state

    @classmethod
    def from_state_dict(cls: type[_EngineT], run: RunParameters, state: Mapping[str, object]) -> _EngineT:
        """The engine that ``state`` (from :meth:`state_dict`) describes, under the same ``run``.

        Every field is checked: its type, length and range, and its
        consistency with the phase the engine is in. A state that is
        truncated, has a field too many, comes from another kind of engine
        or another aggregation (``run.fingerprint()`` differs) raises
        ``InvalidMessage``, and no engine is built.
        """
        if not cls.STATE_KIND:
            raise ConfigurationError(f"{cls.__name__} has no plain-data state")
        if not isinstance(run, RunParameters):
            raise ConfigurationError(f"run must be RunParameters; found {type(run).__name__}")
        reader = StateReader(state, what=f"{cls.STATE_KIND} state")
        reader.text("format", choices=(STATE_FORMAT,))
        reader.text("engine", choices=(cls.STATE_KIND,))
        party = reader.text("party")
        if reader.blob("run", sizes=(RUN_FINGERPRINT_BYTES,)) != run.fingerprint():
            reader.fail("belongs to another aggregation: its run parameters differ from these")
        engine = cls._restored(party, run, reader)
        reader.finish()
        return engine

    @classmethod
    def _restored(cls: type[_EngineT], party: str, run: RunParameters, reader: StateReader) -> _EngineT:
        try:
            engine = cls._restore_engine(party, run, reader)
            if not isinstance(engine, cls) or engine.party != party:
                reader.fail(f"names party {party!r}, which {cls.__name__} does not play")
            engine._restore_machine(reader)
            engine._restore_fields(reader)
        except ConfigurationError as error:  # a constructor's refusal of a stored value
            reader.fail(f"is inconsistent: {error}")
        return engine

    @classmethod
    def _restore_engine(cls, party: str, run: RunParameters, reader: StateReader) -> Engine:
        """A fresh engine playing ``party`` under ``run``; its stored machine and fields are read next.

        Engines whose constructor takes a stored value (SecAgg's signing key) read it here.
        """
        raise ConfigurationError(f"{cls.__name__} cannot be restored from plain data")

    def _machine_state(self) -> StateDict:
        """The machine's own fields beyond position and status (answered senders ...)."""
        return {}

    def _state_fields(self) -> StateDict:
        """The engine's own fields, as plain data (engines extend it)."""
        return {}

    def _restore_machine(self, reader: StateReader) -> None:
        status = EngineState(reader.text("status", choices=tuple(item.value for item in EngineState)))
        position = reader.integer("position", minimum=-1, maximum=len(self._machine_steps) - 1)
        reason = reader.text("stop-reason")
        reader.require(bool(reason) == (status is EngineState.ABORTED),
                       "must give a stop reason exactly when the engine is aborted")
        self._state, self._position, self._stop_reason = status, position, reason or None

    def _restore_fields(self, reader: StateReader) -> None:  # noqa: B027 - engines with fields extend it
        """Read the engine's own fields (the machine is restored first), each checked."""

    @property
    def _active(self) -> bool:
        return self._state is EngineState.ACTIVE


class RespondingEngine(Engine):
    """A party that answers what arrives (a client or a helper): it enters a phase when its message does."""

    def __init__(self, party: str, run: RunParameters) -> None:
        super().__init__(party, run)
        self._step_of: dict[type[Message], int] = {}
        for index, step in enumerate(self._machine_steps):
            if step.receive is None or not step.accepts or step.senders is None:
                raise ConfigurationError(f"{party}'s step {step.phase!r} needs accepted types, senders and a handler")
            for kind in step.accepts:
                if kind in self._step_of:
                    raise ConfigurationError(f"{party} accepts {kind.__name__} in two phases")
                self._step_of[kind] = index
        self._answered: set[str] = set()

    def handle(self, message: Message) -> list[Message]:
        if self._state is not EngineState.ACTIVE:
            self._require_active()
        self._check_header(message)
        index = self._step_of.get(type(message))
        if index is None:
            raise UnexpectedMessage(f"{self.party} accepts no {type(message).__name__}")
        step = self._machine_steps[index]
        position = self._position
        if index < position or (index == position and step.once):
            raise UnexpectedMessage(f"{type(message).__name__} belongs to phase {step.phase!r}, which {self.party} "
                                    f"has already answered (replay or repeat)")
        if index > position + 1:
            skipped = [s.phase for s in self._machine_steps[position + 1 : index] if s.required]
            if skipped:
                raise UnexpectedMessage(f"{type(message).__name__} is out of order: {self.party} expects phase "
                                        f"{skipped[0]!r} first")
        sender = message.sender
        if message.phase != step.phase:
            raise UnexpectedMessage(f"{type(message).__name__} is labelled phase {message.phase!r}; "
                                    f"it belongs to {step.phase!r}")
        if step.senders is None or sender not in step.senders:
            raise UnexpectedSender(f"{type(message).__name__} from {sender!r}: it may not send it to {self.party}")
        if index == position and sender in self._answered:
            raise UnexpectedMessage(f"duplicate {type(message).__name__} from {sender} in phase {step.phase!r}")
        before = position, self._answered
        if index != position:
            self._position, self._answered = index, set()
        try:
            replies = self._run_handler(step, message, abort_on_invalid=step.once)
        except InvalidMessage:
            if self._state is EngineState.ACTIVE:  # a dropped reply of a collection leaves no trace
                self._position, self._answered = before
            raise
        self._answered.add(message.sender)
        if step.once and index == len(self._machine_steps) - 1:
            self._finish()
        return replies

    def _machine_state(self) -> StateDict:
        return {"answered": sorted(self._answered)}

    def _restore_machine(self, reader: StateReader) -> None:
        super()._restore_machine(reader)
        answered = reader.texts("answered")
        reader.require(answered == sorted(set(answered)), "must list the senders answered once each, in order")
        last = len(self._machine_steps) - 1
        reader.require(self._state is not EngineState.DONE or self._position == last,
                       "is done before its last phase")
        if self._position < 0:
            reader.require(not answered, "lists senders answered before any phase")
        else:
            step = self._machine_steps[self._position]
            senders = step.senders or frozenset()
            reader.require(set(answered) <= senders, f"lists senders that may not send in phase {step.phase!r}")
            reader.require(not step.once or len(answered) <= 1, f"answered phase {step.phase!r} more than once")
        self._answered = set(answered)


class ClientEngine(RespondingEngine):
    """A client: holds one encoded input vector and answers the server.

    ``INPUT_PHASE`` names the phase whose handler consumes the input; the
    driver hands the input over (``provide_input``) before that phase.
    """

    INPUT_PHASE: ClassVar[str]

    def __init__(self, party: str, run: RunParameters) -> None:
        super().__init__(party, run)
        self._input: np.ndarray | None = None

    def provide_input(self, vector: np.ndarray) -> None:
        """Hand the client its encoded ring vector (once, before the phase that uses it)."""
        self._require_active()
        phases = [step.phase for step in self._machine_steps]
        if self._input is not None or self._position >= phases.index(self.INPUT_PHASE):
            raise LocalProtocolError(f"{self.party} already has its input for this aggregation")
        run = self._run
        vector = check_vector(vector, length=run.length, ring_bits=run.ring_bits)
        self._accept_input(vector)
        self._input = vector

    @property
    def input_released(self) -> bool:
        """Whether ``INPUT_PHASE``'s handler ran with the input: what it sent may carry the input, masked or not.

        A client that must contribute an input once (a node's ledger) counts
        the contribution from here on; before it, nothing derived from the
        input has left the engine.
        """
        phases = [step.phase for step in self._machine_steps]
        return self._input is None and self._position >= phases.index(self.INPUT_PHASE)

    def _accept_input(self, vector: np.ndarray) -> None:
        """Hook for engines that prepare the input when it arrives."""

    @staticmethod
    def _index_of(party: str, run: RunParameters) -> int:
        """i of a stored party id "client/i" of this run (``InvalidMessage`` for anything else)."""
        index = client_index(party) if party.isascii() else -1
        if not 0 <= index < run.clients:
            raise InvalidMessage(f"stored state names {party!r}, not a client of this {run.clients}-client run")
        return index

    def _take_input(self) -> np.ndarray:
        """The input, for the handler of ``INPUT_PHASE`` (which then forgets it)."""
        if self._input is None:
            raise LocalProtocolError(f"{self.party} was given no input before phase {self.INPUT_PHASE!r}")
        vector, self._input = self._input, None
        return vector

    def _wipe(self) -> None:
        self._input = None

    def _state_fields(self) -> StateDict:
        fields = super()._state_fields()
        run = self._run
        fields["input"] = self._input if self._input is not None else np.zeros(0, ring.ring_dtype(run.ring_bits))
        return fields

    def _restore_fields(self, reader: StateReader) -> None:
        super()._restore_fields(reader)
        run = self._run
        vector = reader.optional_vector("input", dtype=ring.ring_dtype(run.ring_bits), length=run.length)
        if vector is None:
            return
        input_position = [step.phase for step in self._machine_steps].index(self.INPUT_PHASE)
        reader.require(self._active and self._position < input_position,
                       f"holds an input after phase {self.INPUT_PHASE!r}, which consumes it")
        reader.require(in_ring(vector, run.ring_bits), f"input has coordinates outside Z_2^{run.ring_bits}")
        self._accept_input(vector)
        self._input = vector


@dataclass(frozen=True)
class RingAggregate:
    """The exact ring sum of the included clients' vectors."""

    total: np.ndarray
    included: tuple[int, ...]


class ServerEngine(Engine):
    """The server drives the phases and produces the aggregate.

    For each phase the driver calls ``begin_phase`` (the requests to send),
    delivers the replies to ``handle`` and calls ``end_phase``; after the
    last phase, ``result`` once. Replies are accepted only from the parties
    asked when the phase began, one each; an ``InvalidMessage`` from a
    handler drops that reply and leaves the server as it was.
    """

    def __init__(self, party: str, run: RunParameters) -> None:
        super().__init__(party, run)
        for step in self._machine_steps:
            if step.begin is None or (step.accepts and step.receive is None):
                raise ConfigurationError(f"the server's step {step.phase!r} needs a begin hook and a handler")
        if [step.phase for step in self._machine_steps] != list(run.phases):
            raise ConfigurationError("the server takes part in every phase")
        self._open = False
        self._asked: frozenset[str] = frozenset()
        self._answered: set[str] = set()
        self._released = False

    @property
    def asked(self) -> frozenset[str]:
        """The parties asked in the open (or last) phase."""
        return self._asked

    @property
    def answered(self) -> frozenset[str]:
        """The parties whose reply in the open (or last) phase was accepted."""
        return frozenset(self._answered)

    def begin_phase(self, phase: str) -> list[Message]:
        """The requests that open ``phase``; ``LocalProtocolError`` unless it is the next phase."""
        self._require_active()
        if self._open:
            current = self._machine_steps[self._position].phase
            raise LocalProtocolError(f"phase {current!r} is still open; end it before beginning {phase!r}")
        upcoming = self._position + 1
        if upcoming >= len(self._machine_steps) or self._machine_steps[upcoming].phase != phase:
            expected = self._machine_steps[upcoming].phase if upcoming < len(self._machine_steps) else None
            raise LocalProtocolError(f"phase {phase!r} cannot begin now; the next phase is {expected!r}")
        step = self._machine_steps[upcoming]
        begin = step.begin
        if begin is None:  # refused when the engine was made; kept for the type checker
            raise LocalProtocolError(f"phase {phase!r} has no way to begin")
        self._position, self._open = upcoming, True
        self._answered = set()
        try:
            requests = begin()
        except Exception as error:
            self._abort(f"phase {phase!r} could not begin: {error}")
            raise
        self._asked = frozenset(request.recipient for request in requests)
        return requests

    def handle(self, message: Message) -> list[Message]:
        if self._state is not EngineState.ACTIVE:
            self._require_active()
        self._check_header(message)
        sender = message.sender
        if not self._open:
            raise UnexpectedMessage(f"{type(message).__name__} from {sender!r} arrived while no phase is open")
        step = self._machine_steps[self._position]
        if type(message) not in step.accepts:
            raise UnexpectedMessage(f"{type(message).__name__} is not a reply of phase {step.phase!r}")
        if message.phase != step.phase:
            raise UnexpectedMessage(f"{type(message).__name__} is labelled phase {message.phase!r}; "
                                    f"the open phase is {step.phase!r}")
        if sender not in self._asked:
            raise UnexpectedSender(f"{type(message).__name__} from {sender!r}, which was not asked in phase "
                                   f"{step.phase!r}")
        if sender in self._answered:
            raise UnexpectedMessage(f"duplicate {type(message).__name__} from {sender} in phase {step.phase!r}")
        replies = self._run_handler(step, message, abort_on_invalid=False)
        self._answered.add(sender)
        return replies

    def end_phase(self, phase: str) -> None:
        """Close ``phase`` with whatever arrived; ``ProtocolAbort`` (and ABORTED) if it cannot go on."""
        self._require_active()
        current = self._machine_steps[self._position].phase if self._position >= 0 else None
        if not self._open or current != phase:
            open_phase = current if self._open else None
            raise LocalProtocolError(f"phase {phase!r} is not open (the open phase is {open_phase!r})")
        self._open = False
        step = self._machine_steps[self._position]
        if step.end is not None:
            try:
                step.end()
            except Exception as error:
                self._abort(f"phase {phase!r}: {error}")
                raise
        if self._position == len(self._machine_steps) - 1:
            self._state = EngineState.DONE

    def result(self) -> RingAggregate:
        """The aggregate, once, after the last phase has ended."""
        if self._state is EngineState.ABORTED:
            raise AlreadyFinalized(f"the aggregation was aborted ({self._stop_reason})")
        if self._state is not EngineState.DONE:
            raise LocalProtocolError("the aggregation has not completed: end the last phase first")
        if self._released:
            raise AlreadyFinalized("the aggregate of this aggregation was already released")
        self._released = True
        aggregate = self._aggregate()
        self._wipe()
        return aggregate

    def _machine_state(self) -> StateDict:
        return {"open": self._open, "asked": sorted(self._asked), "answered": sorted(self._answered),
                "released": self._released}

    def _restore_machine(self, reader: StateReader) -> None:
        super()._restore_machine(reader)
        is_open = reader.boolean("open")
        asked, answered = reader.texts("asked"), reader.texts("answered")
        released = reader.boolean("released")
        reader.require(asked == sorted(set(asked)) and answered == sorted(set(answered)),
                       "must list parties once each, in order")
        reader.require(set(answered) <= set(asked), "lists replies from parties that were not asked")
        reader.require(not is_open or (self._active and self._position >= 0), "has a phase open while it cannot")
        reader.require(self._position >= 0 or not asked, "asked parties before any phase")
        last = len(self._machine_steps) - 1
        reader.require(self._state is not EngineState.DONE or (self._position == last and not is_open),
                       "is done before its last phase ended")
        reader.require(not released or self._state is EngineState.DONE, "released an aggregate it never had")
        self._open, self._asked, self._answered, self._released = is_open, frozenset(asked), set(answered), released

    @abstractmethod
    def _aggregate(self) -> RingAggregate:
        """The aggregate, computed from what the phases collected."""


@dataclass
class Parties:
    """Every engine of one protocol run, by party id."""

    server: ServerEngine
    clients: list[ClientEngine]
    helpers: list[RespondingEngine] = dataclasses.field(default_factory=list)

    def by_id(self) -> dict[str, Engine]:
        engines: dict[str, Engine] = {self.server.party: self.server}
        for engine in [*self.clients, *self.helpers]:
            engines[engine.party] = engine
        return engines


class Protocol(ABC):
    """A protocol configuration: makes the engines of one aggregation.

    ``phases`` are the phases in order (the names the simulator's ``dropouts``
    refer to); ``secure`` is False only for the insecure plaintext baseline;
    ``min_clients`` is the smallest sum any party of the protocol releases;
    ``modular_sum`` is True when the aggregate is the sum of the ring vectors
    modulo 2^k (so inputs may be any ring elements, e.g. distributed-DP noise
    shares), False when inputs must stay within the encoding's bounds
    (Paillier's packed slots); ``helpers_message_each_other`` is True when
    helper parties send each other messages (validated sharing's verifier
    shares): over Flower each such helper then signs what it sends its peers.
    """

    name: ClassVar[str]
    secure: ClassVar[bool] = True
    modular_sum: ClassVar[bool] = True
    helpers_message_each_other: ClassVar[bool] = False
    phases: tuple[str, ...]
    encoding: Encoding
    min_clients: int

    @abstractmethod
    def setup(self, *, clients: int, vector_length: int, session: bytes, round: int) -> Parties:
        """Create the engines for ``clients`` clients and ring vectors of ``vector_length``."""

    def describe(self) -> str:
        """One line naming the protocol and its parameters."""
        return self.name

    def check_clients(self, clients: int) -> None:
        """``ConfigurationError`` unless ``clients`` inputs can make one aggregation of this protocol."""
        count = validation.positive_int(clients, "clients")
        self.encoding.check_clients(count)
        if count < self.min_clients:
            raise ConfigurationError(
                f"{count} client(s) can never reach min_clients={self.min_clients}, the smallest sum "
                f"{self.name} releases; a sum of one client is that client's update"
            )

    @property
    def registers_client_keys(self) -> bool:
        """Whether each client signs with a key of its own that every party must know before setup.

        Its ``run_parameters`` then take ``verification_keys=`` (one per client) and its
        ``client_engine`` the client's ``signing_key=`` (SecAgg in malicious-server mode); False here.
        """
        return False

    def minimum_inputs(self, clients: int) -> int:
        """The fewest client inputs a completed aggregation of ``clients`` clients sums.

        ``min(clients, min_clients)`` here; protocols with a reconstruction
        threshold (SecAgg) raise it to that threshold.
        """
        return min(validation.positive_int(clients, "clients"), self.min_clients)

    def _client_run(self, index: int, run: RunParameters, signing_key: SigningKey | None,
                    kind: type[_RunT]) -> tuple[int, _RunT]:
        """(index, run) checked for :meth:`client_engine`: a client of ``run``, a run of ``kind``, and a
        signing key only for a protocol that registers client keys."""
        if not isinstance(run, kind):
            raise ConfigurationError(f"{self.name} engines need the {kind.__name__} of its run_parameters; "
                                     f"found {type(run).__name__}")
        if not validation.is_integer(index) or not 0 <= index < run.clients:
            raise ConfigurationError(f"client index must be in [0, {run.clients}); found {index!r}")
        if signing_key is not None and not self.registers_client_keys:
            raise ConfigurationError(f"{self.name} registers no client keys; it takes no signing_key")
        return int(index), run

    def client_engine(self, index: int, run: RunParameters, *, signing_key: SigningKey | None = None) -> ClientEngine:
        """Client ``index``'s engine alone, under ``run`` (from :meth:`run_parameters`).

        A party on a machine of its own builds only its own engine this way,
        never the whole federation's. ``signing_key`` is the client's own
        registered key, for a protocol that ``registers_client_keys``.
        """
        raise ConfigurationError(f"{self.name} makes its engines with setup only")

    def helper_parties(self) -> tuple[str, ...]:
        """The helper parties (aggregators, a decryptor) every run of this protocol needs; none here."""
        return ()

    def helper_engine(self, party: str, run: RunParameters) -> RespondingEngine:
        """The engine of helper ``party`` (an aggregator, a decryptor) alone, under ``run``."""
        raise ConfigurationError(f"{self.name} has no helper party {party!r}")

    def server_engine(self, run: RunParameters) -> ServerEngine:
        """The server's engine alone, under ``run`` (no client or helper engine is made)."""
        raise ConfigurationError(f"{self.name} makes its engines with setup only")

    def restore_engine(self, run: RunParameters, state: Mapping[str, object]) -> Engine:
        """The engine that a stored ``state`` describes: ``from_state_dict`` of the class of the party it names.

        ``InvalidMessage`` for a state naming no party of this protocol, or
        any state ``from_state_dict`` refuses.
        """
        party = state.get("party") if isinstance(state, Mapping) else None
        if not isinstance(party, str):
            raise InvalidMessage("stored engine state names no party")
        return self._engine_class(party).from_state_dict(run, state)

    def _engine_class(self, party: str) -> type[Engine]:
        """The engine class of ``party`` (``InvalidMessage`` for a party this protocol does not have)."""
        raise InvalidMessage(f"{self.name} restores no engine of {party!r}")

    def with_encoding(self: _ProtocolT, encoding: Encoding) -> _ProtocolT:
        """This protocol over ``encoding`` (every other parameter kept).

        Protocols are frozen dataclasses with an ``encoding`` field; encoding
        shortcut fields (``ring_bits``, ``value_bits`` ...) are reset so that
        they are read back from the new encoding.
        """
        if not isinstance(encoding, Encoding):
            raise ConfigurationError(f"encoding must be an Encoding; found {type(encoding).__name__}")
        if not dataclasses.is_dataclass(self):
            raise ConfigurationError(f"cannot change the encoding of {type(self).__name__}")
        fields = {item.name for item in dataclasses.fields(self)}
        if "encoding" not in fields:
            raise ConfigurationError(f"{type(self).__name__} has no encoding field")
        changes: dict[str, object] = {"encoding": encoding}
        for shortcut in ("ring_bits", "value_bits", "max_clients", "max_weight"):
            if shortcut in fields:
                changes[shortcut] = None
        return dataclasses.replace(self, **changes)

    def run_parameters(
        self,
        *,
        clients: int,
        vector_length: int,
        session: bytes,
        round: int,
        verification_keys: Sequence[bytes] = (),
    ) -> RunParameters:
        """The checked public parameters of one aggregation, as every party builds them (protocols extend them).

        ``verification_keys`` are the clients' registered signature keys, for
        a protocol that ``registers_client_keys`` (none here).
        """
        if len(verification_keys):
            raise ConfigurationError(f"{self.name} registers no client keys; it takes no verification_keys")
        return self._base_run_parameters(clients=clients, vector_length=vector_length, session=session, round=round)

    def _base_run_parameters(self, *, clients: int, vector_length: int, session: bytes, round: int) -> RunParameters:
        self.check_clients(clients)
        return RunParameters(
            phases=tuple(self.phases),
            clients=int(clients),
            length=validation.positive_int(vector_length, "vector_length"),
            session=validation.byte_string(session, "session", size=SESSION_BYTES),
            round=validation.integer(round, "round", minimum=0, maximum=2**64 - 1),
            ring_bits=self.encoding.ring_bits,
            min_clients=self.min_clients,
        )


def check_min_clients(min_clients: object, encoding: Encoding) -> int:
    """``min_clients`` of a protocol: an integer >= 1 and at most the encoding's ``max_clients``."""
    count = validation.positive_int(min_clients, "min_clients")
    if count > encoding.max_clients:
        raise ConfigurationError(f"min_clients={count} exceeds max_clients={encoding.max_clients} of the encoding")
    return count


def in_ring(vector: np.ndarray, ring_bits: int) -> bool:
    """Whether every coordinate of a ring-dtype vector lies in [0, 2^ring_bits) (a stored vector's check)."""
    return vector.size == 0 or int(vector.max()) <= ring.ring_mask(ring_bits)


def check_vector(vector: np.ndarray, *, length: int, ring_bits: int, what: str = "input") -> np.ndarray:
    """Validate an encoded ring vector handed to an engine."""
    if not isinstance(vector, np.ndarray) or vector.ndim != 1:
        raise ConfigurationError(f"{what} must be a 1-D numpy array")
    if vector.dtype != ring.ring_dtype(ring_bits):
        raise ConfigurationError(f"{what} has dtype {vector.dtype}; expected {ring.ring_dtype(ring_bits)}")
    if vector.size != length:
        raise ConfigurationError(f"{what} has {vector.size} coordinates; expected {length}")
    return vector


SERVER_ONLY = frozenset({SERVER})
"""The senders of a request: the server."""

