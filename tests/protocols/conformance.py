"""The conformance harness: one aggregation driven step by step, and the checks every protocol must pass.

A :class:`Run` is the network of one aggregation: ``setup``, ``provide_input``,
then for each phase ``server.begin_phase``, every message delivered to its
recipient through ``decode_message(message.to_bytes())`` (replies delivered in
turn, first in first out, as ``simulation.run_protocol`` does) and
``server.end_phase``; then ``server.result()``. Every delivery is recorded
with the phase that was open, and an ``intercept`` sees each message just
before it is delivered, with its recipient ready for it, so a check can inject
a fault at any point of the run.

The checks are plain functions of a protocol object: each raises
``AssertionError`` naming the case that failed, and returns how many refusals
(or other assertions) it made. They hold for every protocol of the catalog;
``test_conformance.py`` also runs them on deliberately broken engines, which
must fail them.
"""

from __future__ import annotations

import dataclasses
import os
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pytest

from securefl import ring
from securefl.errors import (
    AlreadyFinalized,
    ConfigurationError,
    InvalidMessage,
    LocalProtocolError,
    ProtocolAbort,
    SecureFLError,
    UnexpectedMessage,
    UnexpectedSender,
)
from securefl.protocols.base import (
    ClientEngine,
    Engine,
    EngineState,
    Protocol,
    RespondingEngine,
    ServerEngine,
    Step,
)
from securefl.protocols.wire import SERVER, SESSION_BYTES, Message, client_id, decode_message
from securefl.simulation import run_protocol, secure_sum

__all__ = [
    "CLIENTS",
    "LENGTH",
    "ROUND",
    "DROP",
    "Run",
    "Delivery",
    "case",
    "assert_refused",
    "snapshot",
    "check_header_refusals",
    "check_replays",
    "check_transition_matrix",
    "check_server_driver_misuse",
    "check_truncated_and_extended_bytes",
    "check_bit_flips",
    "check_finalized_after_done",
    "check_server_finalized_after_abort",
    "check_client_finalized_after_abort",
    "check_helpers_finalized_after_abort",
    "check_malformed_bodies",
    "check_transcript_is_server_input",
    "check_single_use",
    "check_provide_input_once",
    "check_min_clients",
]

CLIENTS = 5
LENGTH = 8
"""Coordinates of each encoded input: 7 update values and the weight the encoding appends."""
ROUND = 7
WIRE_ROUND = 300
"""A round number above 255: its header field is a multi-byte msgpack integer (0xcd 0x01 0x2c)."""
NO_SUCH_PHASE = "no-such-phase"

HEADER_FIELDS = frozenset(field.name for field in dataclasses.fields(Message))


class _Drop:
    """Returned by an intercept: the message is lost (recorded as sent, not delivered)."""

    def __repr__(self) -> str:
        return "DROP"


DROP = _Drop()

Replies = list[Message]
Intercept = Callable[["Run", Message], "Replies | _Drop | None"]


@dataclass(frozen=True)
class Delivery:
    """One message handed to its recipient, and the server phase that was open."""

    phase: str
    message: Message


def describe(message: Message) -> str:
    return f"{type(message).__name__}[{message.phase}] {message.sender} -> {message.recipient}"


class Run:
    """One aggregation of ``protocol`` driven by hand: the test is the network.

    ``without_input`` lists client indices never given their input.
    ``sent`` holds every message sent so far, ``deliveries`` those delivered
    (not dropped by an intercept), in order, with the phase open at the time.
    """

    def __init__(self, protocol: Protocol, *, clients: int = CLIENTS, length: int = LENGTH, round: int = ROUND,
                 seed: int = 0, without_input: tuple[int, ...] = ()) -> None:
        self.protocol = protocol
        self.phases: tuple[str, ...] = tuple(protocol.phases)
        self.session = os.urandom(SESSION_BYTES)
        self.round = round
        rng = np.random.default_rng(seed)
        encoding = protocol.encoding
        self.inputs = [encoding.encode(rng.uniform(-1, 1, length - 1), weight=1, rng=rng) for _ in range(clients)]
        assert all(vector.size == length for vector in self.inputs)
        self.parties = protocol.setup(clients=clients, vector_length=length, session=self.session, round=round)
        self.server: ServerEngine = self.parties.server
        self.clients: list[ClientEngine] = list(self.parties.clients)
        self.helpers: list[RespondingEngine] = list(self.parties.helpers)
        self.engines: dict[str, Engine] = self.parties.by_id()
        self.client_count = clients
        for index, (engine, vector) in enumerate(zip(self.clients, self.inputs)):
            if index not in without_input:
                engine.provide_input(vector)
        self.sent: list[Delivery] = []
        self.deliveries: list[Delivery] = []
        self.ended = 0
        self.open: str | None = None

    # -- driving ---------------------------------------------------------------------------

    def deliver(self, message: Message, *, to: str | None = None) -> Replies:
        """Hand ``message`` to its recipient (or to ``to``) through its canonical bytes."""
        engine = self.engines[to or message.recipient]
        return engine.handle(decode_message(message.to_bytes()))

    def play_phase(self, intercept: Intercept | None = None) -> None:
        """Run the next phase: begin it, deliver every message and reply, end it."""
        phase = self.phases[self.ended]
        queue = deque(self.server.begin_phase(phase))
        self.open = phase
        while queue:
            message = queue.popleft()
            self.sent.append(Delivery(phase, message))
            replies = intercept(self, message) if intercept is not None else None
            if replies is DROP:
                continue
            if replies is None:
                replies = self.deliver(message)
            self.deliveries.append(Delivery(phase, message))
            queue.extend(replies)
        self.open = None
        self.server.end_phase(phase)
        self.ended += 1

    def play(self, phases: int | None = None, intercept: Intercept | None = None) -> None:
        """Run ``phases`` more phases (all that remain by default)."""
        count = len(self.phases) - self.ended if phases is None else phases
        for _ in range(count):
            self.play_phase(intercept)

    def finish(self, intercept: Intercept | None = None) -> None:
        """Run the remaining phases, then check the released aggregate against the inputs."""
        self.play(intercept=intercept)
        aggregate = self.server.result()
        included = [i for i in range(self.client_count)]
        assert tuple(aggregate.included) == tuple(included), f"included {aggregate.included}; expected {included}"
        expected = self.expected_sum(included)
        assert np.array_equal(aggregate.total, expected), "the released aggregate is not the ring sum of the inputs"

    def expected_sum(self, included) -> np.ndarray:
        bits = self.protocol.encoding.ring_bits
        total = np.zeros_like(self.inputs[0])
        for index in included:
            ring.add(total, self.inputs[index], bits)
        return total

    # -- what happened ---------------------------------------------------------------------

    def messages(self, *, phase: str | None = None, recipient: str | None = None,
                 lost_too: bool = False) -> list[Message]:
        """The messages delivered (``lost_too``: sent) so far, of one phase and to one recipient if given."""
        record = self.sent if lost_too else self.deliveries
        return [d.message for d in record
                if (phase is None or d.phase == phase) and (recipient is None or d.message.recipient == recipient)]

    def delivered_to(self, party: str) -> list[Message]:
        return self.messages(recipient=party)

    def rebind(self, message: Message, **fields) -> Message:
        """A captured message (of any run) with this run's session and the given fields replaced."""
        return dataclasses.replace(message, session=self.session, **fields)

    def finished(self, engine: Engine) -> bool:
        """Whether ``engine`` must be finished by now, from what it was given (not from its state)."""
        if isinstance(engine, ServerEngine):
            return self.ended == len(self.phases)
        last = steps_of(engine)[-1]
        return last.once and any(type(m) in last.accepts for m in self.delivered_to(engine.party))

    def acceptable(self, engine: Engine, message: Message) -> bool:
        """Whether the phase machine of ``engine`` must let ``message`` (header aside) through to a handler now.

        Server: a reply type of the open phase from a party asked and not yet
        answered. Responder: a type of its current step when that step takes
        one message per sender and this sender has not sent one; or a type of
        a later step with no required step in between.
        """
        steps = steps_of(engine)
        if isinstance(engine, ServerEngine):
            if self.open is None:
                return False
            step = steps[self.phases.index(self.open)]
            answered = {m.sender for m in self.messages(phase=self.open, recipient=engine.party)}
            return type(message) in step.accepts and message.sender not in answered
        delivered = self.delivered_to(engine.party)
        entered = [i for i, step in enumerate(steps) if any(type(m) in step.accepts for m in delivered)]
        position = max(entered, default=-1)
        if position >= 0 and not steps[position].once and type(message) in steps[position].accepts:
            answered = {m.sender for m in delivered if type(m) in steps[position].accepts}
            return message.sender not in answered
        for step in steps[position + 1 :]:
            if type(message) in step.accepts:
                return True
            if step.required:
                return False
        return False


def steps_of(engine: Engine) -> tuple[Step, ...]:
    """The steps the engine declared (what the phase machine enforces)."""
    return tuple(engine._machine_steps)


def reference(protocol: Protocol, **options) -> Run:
    """A complete honest run, for its captured messages."""
    run = Run(protocol, **options)
    run.finish()
    return run


# -- assertions ----------------------------------------------------------------------------------


class _ControlFlow(Exception):
    """Raised by a check to end a run early; passes through :func:`case` untouched."""


class _Stop(_ControlFlow):
    """Ends a run once a check has what it needs."""


class _Abandon(_ControlFlow):
    """Ends a run that can no longer complete honestly (a malformed message was accepted)."""


@contextmanager
def case(what: str) -> Iterator[None]:
    """Name the case in any failure inside (a wrong exception type is a failure too)."""
    try:
        yield
    except _ControlFlow:
        raise
    except AssertionError as failure:
        raise AssertionError(f"{what}: {failure}") from None
    except pytest.fail.Exception as failure:
        raise AssertionError(f"{what}: {failure}") from None
    except Exception as unexpected:
        raise AssertionError(f"{what}: raised {type(unexpected).__name__}: {unexpected}") from unexpected


def snapshot(engine: Engine) -> tuple:
    """What a refusal must leave as it was: state, phase, stop reason (and the server's asked/answered)."""
    view: tuple = (engine.state, engine.phase, engine.stop_reason)
    if isinstance(engine, ServerEngine):
        view += (engine.asked, engine.answered)
    return view


def assert_raises_exactly(error: type[BaseException], what: str, call: Callable[..., object], *args: object,
                          unchanged: Engine | None = None, **options: object) -> None:
    """``call(*args, **options)`` raises exactly ``error`` (not a subclass) and leaves ``unchanged`` as it was."""
    before = snapshot(unchanged) if unchanged is not None else None
    with case(what):
        with pytest.raises(error) as caught:
            call(*args, **options)
        assert caught.type is error, f"raised {caught.type.__name__} ({caught.value}); expected {error.__name__}"
        if unchanged is not None:
            after = snapshot(unchanged)
            assert after == before, f"the refusal changed {unchanged.party}: {before} -> {after}"


def assert_refused(engine: Engine, message: Message, error: type[BaseException], what: str = "") -> None:
    """``engine.handle`` of ``message`` (through its bytes) raises exactly ``error``; the engine is unchanged."""
    inbound = decode_message(message.to_bytes())
    label = f"{what}{': ' if what else ''}{describe(message)} to {engine.party} ({engine.state.value})"
    assert_raises_exactly(error, label, engine.handle, inbound, unchanged=engine)


def _flipped(data: bytes) -> bytes:
    return bytes([data[0] ^ 0x01]) + data[1:]


def _impostors(message: Message, legitimate: set[str], parties: list[str], clients: int) -> list[str]:
    candidates = [message.recipient, client_id(clients), SERVER, *parties]
    chosen: list[str] = []
    for party in candidates:
        if party != message.sender and party not in legitimate and party not in chosen:
            chosen.append(party)
    return chosen[:3]


# -- 1. header: session, round, recipient, sender, phase label ---------------------------------------


def check_header_refusals(protocol: Protocol) -> int:
    """Every message each party receives, tampered in one header field, is refused at that point.

    Wrong session, round or recipient (and the genuine message handed to an
    engine it is not addressed to): exactly ``InvalidMessage``. A sender
    that may not send it there: ``UnexpectedSender``. Another phase label:
    ``UnexpectedMessage``. The run then completes with the exact sum. In a
    second run the last client never answers: each reply to the server in
    a phase where it was not asked, sent in its name, is ``UnexpectedSender``.
    """
    honest = reference(protocol)
    legitimate: dict[tuple[str, str], set[str]] = {}
    for message in honest.messages():
        legitimate.setdefault((message.recipient, message.KIND), set()).add(message.sender)
    count = 0

    def tamper(run: Run, message: Message) -> None:
        nonlocal count
        engine = run.engines[message.recipient]
        parties = list(run.engines)
        others = [p for p in parties if p != message.recipient]
        replace = dataclasses.replace
        tampered: list[tuple[str, Message, type[BaseException], Engine]] = [
            ("wrong session", replace(message, session=_flipped(message.session)), InvalidMessage, engine),
            ("round + 1", replace(message, round=message.round + 1), InvalidMessage, engine),
            ("round - 1", replace(message, round=message.round - 1), InvalidMessage, engine),
            ("addressed to a stranger", replace(message, recipient=client_id(run.client_count)), InvalidMessage,
             engine),
            (f"addressed to {others[0]}", replace(message, recipient=others[0]), InvalidMessage, engine),
        ]
        bystanders = [run.engines[p] for p in others if run.engines[p].state is EngineState.ACTIVE][:2]
        tampered += [("delivered to a party it is not addressed to", message, InvalidMessage, bystander)
                     for bystander in bystanders]
        allowed = legitimate[(message.recipient, message.KIND)]
        tampered += [(f"sent by {impostor}", replace(message, sender=impostor), UnexpectedSender, engine)
                     for impostor in _impostors(message, allowed, parties, run.client_count)]
        tampered += [(f"labelled phase {phase!r}", replace(message, phase=phase), UnexpectedMessage, engine)
                     for phase in (*run.phases, NO_SUCH_PHASE) if phase != message.phase]
        for what, forged, error, target in tampered:
            assert_refused(target, forged, error, what)
            count += 1
        return None

    Run(protocol).finish(intercept=tamper)

    # A client that never answers is not asked again: a reply in its name is refused where it was not asked.
    silent = client_id(CLIENTS - 1)

    def impersonate(run: Run, message: Message) -> Replies | _Drop | None:
        nonlocal count
        if message.recipient == silent:
            return DROP
        if message.recipient == SERVER and silent not in run.server.asked:
            assert_refused(run.server, dataclasses.replace(message, sender=silent), UnexpectedSender,
                           f"in the name of {silent}, which was not asked")
            count += 1
        return None

    try:
        Run(protocol).play(intercept=impersonate)
    except ProtocolAbort:  # the protocol cannot go on without it: the phases before were checked
        pass
    return count


# -- 2. replays ---------------------------------------------------------------------------------------


def check_replays(protocol: Protocol) -> int:
    """Before every delivery, every message delivered earlier is re-delivered to its recipient and refused.

    ``UnexpectedMessage`` (a request of an earlier phase, a reply the server
    already has, a duplicate) while the recipient is running;
    ``AlreadyFinalized`` once it must have finished; after the result,
    ``AlreadyFinalized`` for every message of the run.
    """
    count = 0

    def replay(run: Run, message: Message) -> None:
        nonlocal count
        for earlier in run.deliveries:
            engine = run.engines[earlier.message.recipient]
            error = AlreadyFinalized if run.finished(engine) else UnexpectedMessage
            assert_refused(engine, earlier.message, error, f"replay (before {describe(message)})")
            count += 1
        return None

    run = Run(protocol)
    run.finish(intercept=replay)
    for delivery in run.deliveries:
        engine = run.engines[delivery.message.recipient]
        assert_refused(engine, delivery.message, AlreadyFinalized, "replay after the end")
        count += 1
    return count


# -- 3. the stage-transition matrix ----------------------------------------------------------------------


def _matrix_messages(honest: Run, party: str) -> list[Message]:
    """Every message ``party`` received in the honest run, and one message of every other kind, readdressed."""
    own = honest.delivered_to(party)
    kinds = {type(m) for m in own}
    others: list[Message] = []
    for message in honest.messages():
        if type(message) not in kinds:
            kinds.add(type(message))
            others.append(dataclasses.replace(message, recipient=party))
    return [*own, *others]


def check_transition_matrix(protocol: Protocol) -> int:
    """For every engine, in the state after each phase (and before the first), every message of another
    phase than its next one is refused: ``UnexpectedMessage`` (``AlreadyFinalized`` once finished), unchanged.

    The server is also checked with the next phase open: replies of every
    other phase are refused.
    """
    honest = reference(protocol)
    count = 0
    for ended in range(len(honest.phases) + 1):
        run = Run(protocol)
        run.play(ended)
        where = f"after {ended} phase(s) of {run.phases}"
        if ended == 0:
            for engine in run.engines.values():
                with case(f"{engine.party} {where}"):
                    assert snapshot(engine)[:3] == (EngineState.ACTIVE, None, None)
        for party, engine in run.engines.items():
            for message in _matrix_messages(honest, party):
                message = run.rebind(message)
                if run.acceptable(engine, message):
                    continue
                error = AlreadyFinalized if run.finished(engine) else UnexpectedMessage
                assert_refused(engine, message, error, where)
                count += 1
        if ended < len(run.phases):
            phase = run.phases[ended]
            run.server.begin_phase(phase)
            run.open = phase
            for message in _matrix_messages(honest, SERVER):
                message = run.rebind(message)
                if not run.acceptable(run.server, message):
                    assert_refused(run.server, message, UnexpectedMessage, f"{where}, phase {phase!r} open")
                    count += 1
    return count


def check_server_driver_misuse(protocol: Protocol) -> int:
    """The server's driver errors: ``LocalProtocolError``, and the server unchanged.

    With no phase open: begin_phase of any phase but the next, end_phase of
    any phase, result(). With a phase open: begin_phase of any phase (that
    one again included), end_phase of another, result().
    """
    phases = tuple(protocol.phases)
    names = (*phases, NO_SUCH_PHASE)
    count = 0
    for ended in range(len(phases)):
        run = Run(protocol)
        run.play(ended)
        server = run.server
        following = phases[ended]
        where = f"after {ended} phase(s) of {phases}"
        for phase in names:
            if phase != following:
                assert_raises_exactly(LocalProtocolError, f"{where}: begin_phase({phase!r})",
                                      server.begin_phase, phase, unchanged=server)
                count += 1
            assert_raises_exactly(LocalProtocolError, f"{where}: end_phase({phase!r}) with no phase open",
                                  server.end_phase, phase, unchanged=server)
            count += 1
        assert_raises_exactly(LocalProtocolError, f"{where}: result()", server.result, unchanged=server)
        count += 1
        server.begin_phase(following)
        where = f"{where}, phase {following!r} open"
        for phase in names:
            assert_raises_exactly(LocalProtocolError, f"{where}: begin_phase({phase!r})",
                                  server.begin_phase, phase, unchanged=server)
            count += 1
            if phase != following:
                assert_raises_exactly(LocalProtocolError, f"{where}: end_phase({phase!r})",
                                      server.end_phase, phase, unchanged=server)
                count += 1
        assert_raises_exactly(LocalProtocolError, f"{where}: result()", server.result, unchanged=server)
        count += 1
    return count


# -- 4. bytes on the wire -------------------------------------------------------------------------------


def _undecodable(data: bytes, what: str) -> None:
    assert_raises_exactly(InvalidMessage, what, decode_message, data)


def check_truncated_and_extended_bytes(protocol: Protocol) -> int:
    """Every strict prefix of every message's bytes, and the bytes with anything appended: ``InvalidMessage``."""
    count = 0
    for message in reference(protocol, round=WIRE_ROUND).messages():
        data = message.to_bytes()
        for cut in range(len(data)):
            _undecodable(data[:cut], f"{describe(message)} cut to {cut} of {len(data)} bytes")
            count += 1
        for tail in (b"\x00", b"\xff", b"\xc0", data[:1], data):
            _undecodable(data + tail, f"{describe(message)} with {len(tail)} byte(s) appended")
            count += 1
    return count


def _role(party: str) -> str:
    return "server" if party == SERVER else "client" if party.startswith("client/") else party


def _flips(data: bytes, *, every_bit: bool, shift: int = 0) -> Iterator[tuple[int, int, bytes]]:
    """Single-bit flips of ``data``: every bit of every byte, or one bit of every byte (bit (offset + shift) % 8)."""
    buffer = bytearray(data)
    for offset in range(len(data)):
        for bit in range(8) if every_bit else ((offset + shift) % 8,):
            buffer[offset] ^= 1 << bit
            yield offset, bit, bytes(buffer)
            buffer[offset] ^= 1 << bit


def _decode_flipped(message: Message, offset: int, bit: int, flipped: bytes) -> Message | None:
    """The decoded message, or None when the codec refused it (exactly ``InvalidMessage``); canonical if decoded."""
    what = f"{describe(message)} with bit {bit} of byte {offset} flipped"
    decoded: Message | None = None
    with case(what):
        try:
            decoded = decode_message(flipped)
        except InvalidMessage as refusal:
            assert type(refusal) is InvalidMessage, f"the codec raised {type(refusal).__name__}"
            return None
        again = decoded.to_bytes()
        assert again == flipped, (
            f"decoded as {decoded!r:.300}, which re-encodes to {len(again)} other bytes (first difference at "
            f"byte {_first_difference(again, flipped)}): the codec accepts a non-canonical encoding"
        )
    return decoded


def _first_difference(a: bytes, b: bytes) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def check_bit_flips(protocol: Protocol) -> int:
    """Single-bit flips of every message, at the point the genuine message arrives (round 300, so the round
    is a multi-byte integer on the wire).

    Which flips: every bit of every byte of the first message of each kind
    between each pair of roles (server, client, each helper), and one bit of
    every byte (rotating over the bit positions) of every other message.

    What is asserted of each flipped string:

    - the codec refuses it with exactly ``InvalidMessage``, or it decodes to
      a message whose ``to_bytes()`` is the flipped string itself (one
      message, one encoding);
    - if it decodes to another kind or phase label, the recipient refuses it
      with ``UnexpectedMessage``; to another session, round or recipient,
      with exactly ``InvalidMessage``; to a sender that may not send it
      there, with ``UnexpectedSender``; the recipient is left unchanged.

    Flips that change only the body (opaque ciphertexts, vectors, keys) or
    turn the sender into another party allowed to send that message are not
    delivered: no phase machine can tell them from a genuine message. The
    run then completes with the exact sum.
    """
    honest = reference(protocol, round=WIRE_ROUND)
    legitimate: dict[tuple[str, str], set[str]] = {}
    for message in honest.messages():
        legitimate.setdefault((message.recipient, message.KIND), set()).add(message.sender)
    seen: set[tuple[str, str, str]] = set()
    count = 0

    def flip(run: Run, message: Message) -> None:
        nonlocal count
        engine = run.engines[message.recipient]
        shape = (message.KIND, _role(message.sender), _role(message.recipient))
        every_bit = shape not in seen
        seen.add(shape)
        for offset, bit, flipped in _flips(message.to_bytes(), every_bit=every_bit, shift=len(run.deliveries)):
            count += 1
            decoded = _decode_flipped(message, offset, bit, flipped)
            if decoded is None:
                continue
            if type(decoded) is not type(message) or decoded.phase != message.phase:
                error: type[BaseException] | None = UnexpectedMessage
            elif (decoded.session, decoded.round, decoded.recipient) != (message.session, message.round,
                                                                        message.recipient):
                error = InvalidMessage
            elif decoded.sender != message.sender:
                allowed = legitimate[(message.recipient, message.KIND)]
                error = None if decoded.sender in allowed else UnexpectedSender
            else:
                error = None
            if error is not None:
                assert_refused(engine, decoded, error, f"bit {bit} of byte {offset} flipped")
        return None

    Run(protocol, round=WIRE_ROUND).finish(intercept=flip)
    return count


# -- 5. terminal states ------------------------------------------------------------------------------


def _finalized_everywhere(run: Run, honest: Run, engine: Engine, where: str) -> int:
    """Every call on a finished engine raises ``AlreadyFinalized`` and leaves it as it is."""
    count = 0
    for message in _matrix_messages(honest, engine.party):
        assert_refused(engine, run.rebind(message), AlreadyFinalized, where)
        count += 1
    if isinstance(engine, ServerEngine):
        for phase in (*run.phases, NO_SUCH_PHASE):
            assert_raises_exactly(AlreadyFinalized, f"{where}: begin_phase({phase!r})",
                                  engine.begin_phase, phase, unchanged=engine)
            assert_raises_exactly(AlreadyFinalized, f"{where}: end_phase({phase!r})",
                                  engine.end_phase, phase, unchanged=engine)
            count += 2
    if isinstance(engine, ClientEngine):
        vector = run.inputs[0]
        assert_raises_exactly(AlreadyFinalized, f"{where}: provide_input", engine.provide_input, vector,
                              unchanged=engine)
        count += 1
    return count


def check_finalized_after_done(protocol: Protocol) -> int:
    """After a complete run every engine is DONE: every call raises ``AlreadyFinalized``; the server
    releases its result once (the exact sum), and ``AlreadyFinalized`` the second time."""
    honest = reference(protocol)
    run = Run(protocol)
    run.play()
    count = 0
    for engine in run.engines.values():
        with case(f"{engine.party} after the last phase"):
            assert (engine.state, engine.phase) == (EngineState.DONE, None)
        count += _finalized_everywhere(run, honest, engine, f"{engine.party} DONE")
    with case("result() after the last phase"):
        aggregate = run.server.result()
        assert np.array_equal(aggregate.total, run.expected_sum(range(run.client_count)))
    for attempt in ("second", "third"):
        assert_raises_exactly(AlreadyFinalized, f"{attempt} result()", run.server.result, unchanged=run.server)
        count += 1
    count += _finalized_everywhere(run, honest, run.server, "server after its result")
    return count


def check_server_finalized_after_abort(protocol: Protocol) -> int:
    """A server whose requests all go unanswered aborts (``ProtocolAbort`` from an end_phase, ABORTED);
    then every call, result() included, raises ``AlreadyFinalized``."""
    honest = reference(protocol)
    run = Run(protocol)
    with case("every request lost"), pytest.raises(ProtocolAbort):
        run.play(intercept=lambda run, message: DROP)
    server = run.server
    with case("the server after ProtocolAbort"):
        assert (server.state, server.phase) == (EngineState.ABORTED, None) and server.stop_reason
    count = _finalized_everywhere(run, honest, server, "server ABORTED")
    for attempt in ("first", "second"):
        assert_raises_exactly(AlreadyFinalized, f"{attempt} result() after the abort", server.result,
                              unchanged=server)
        count += 1
    return count


def check_client_finalized_after_abort(protocol: Protocol) -> int:
    """A client given no input refuses its input phase's request (``LocalProtocolError``) and is ABORTED;
    then every message and provide_input raise ``AlreadyFinalized``."""
    honest = reference(protocol)
    run = Run(protocol, without_input=(0,))
    target = run.clients[0]
    counted = 0

    def abort(run: Run, message: Message) -> Replies | None:
        nonlocal counted
        if message.recipient != target.party or message.phase != type(target).INPUT_PHASE:
            return None
        with case(f"{target.party} given no input, at {describe(message)}"):
            with pytest.raises(LocalProtocolError):
                run.deliver(message)
            assert (target.state, target.phase) == (EngineState.ABORTED, None) and target.stop_reason
        counted = _finalized_everywhere(run, honest, target, f"{target.party} ABORTED")
        raise _Stop

    with case(f"{target.party} given no input"), pytest.raises(_Stop):
        run.play(intercept=abort)
    return counted


def _corrupted(value: bytes) -> bytes:
    return value[:-1] + bytes([value[-1] ^ 0x01])


def _replacements(value: object) -> list[tuple[str, object]]:
    """Wrong values of the type of ``value``: emptied, shortened by one item, or its last byte flipped."""
    if isinstance(value, bool):
        return [("negated", not value)]
    if isinstance(value, int):
        return [("plus one", value + 1)]
    if isinstance(value, bytes):
        return [("emptied", b""), ("last byte flipped", _corrupted(value))] if value else [("one byte", b"\x00")]
    if isinstance(value, str):
        return [("emptied", "")] if value else [("one character", "x")]
    if isinstance(value, tuple):
        return [("emptied", ()), *([("first item dropped", value[1:])] if len(value) > 1 else [])] if value else []
    if isinstance(value, dict):
        if not value:
            return []
        first = min(value)
        changes: list[tuple[str, object]] = [("emptied", {})]
        if len(value) > 1:
            changes.append((f"entry {first!r} dropped", {k: v for k, v in value.items() if k != first}))
        if isinstance(value[first], bytes) and value[first]:
            changes.append((f"entry {first!r} corrupted", {**value, first: _corrupted(value[first])}))
        return changes
    if isinstance(value, np.ndarray):
        return [("emptied", value[:0].copy())] if value.size else []
    return []


def _malformed(message: Message) -> list[tuple[str, Message]]:
    """Copies of ``message`` with one body field wrong, as far as the message can be built at all."""
    variants = []
    for field in dataclasses.fields(message):
        if field.name in HEADER_FIELDS:
            continue
        for how, replacement in _replacements(getattr(message, field.name)):
            try:
                variant = dataclasses.replace(message, **{field.name: replacement})
            except InvalidMessage:  # a message of that shape cannot even be built
                continue
            variants.append((f"{field.name} {how}", variant))
    return variants


def _step_for(engine: Engine, message: Message) -> Step | None:
    return next((step for step in steps_of(engine) if type(message) in step.accepts), None)


def check_helpers_finalized_after_abort(protocol: Protocol) -> int:
    """Each helper refuses a request with a wrong body field and is ABORTED; then every message raises
    ``AlreadyFinalized``. (Protocols without helpers pass trivially.)"""
    honest = reference(protocol)
    count = 0
    for position in range(len(honest.helpers)):
        run = Run(protocol)
        target = run.helpers[position]
        requests = {kind for step in steps_of(target) if step.once for kind in step.accepts}

        def abort(run: Run, message: Message, target=target, requests=requests) -> Replies | None:
            nonlocal count
            if message.recipient != target.party or type(message) not in requests:
                return None
            for _, forged in _malformed(message):
                try:
                    replies = run.deliver(forged)
                except Exception:
                    if target.state is EngineState.ABORTED:
                        count += _finalized_everywhere(run, honest, target, f"{target.party} ABORTED")
                        raise _Stop from None
                else:
                    return replies
            return None

        with case(f"{target.party} sent requests with a wrong field"), pytest.raises(_Stop):
            run.play(intercept=abort)
    return count


def check_malformed_bodies(protocol: Protocol) -> int:
    """A message with one wrong body field (emptied, shortened, a byte flipped, an integer moved), delivered
    where the genuine one would be, at the first message of each kind to each role:

    - the codec refuses it (exactly ``InvalidMessage``, when encoding or decoding), or
    - the recipient accepts it (opaque payloads: the run is then abandoned), or
    - the recipient refuses it with an error of ``securefl.errors`` (never another exception), and then:
      a server (or a responder's step that takes one message per sender) is left unchanged, the refusal is
      an ``InvalidMessage``, the genuine message is accepted after it and the run completes with the exact
      sum; a responder refusing a request is ABORTED (``AlreadyFinalized`` for the genuine request).
    """
    honest = reference(protocol)
    points: dict[tuple[str, str], int] = {}
    for index, delivery in enumerate(honest.deliveries):
        points.setdefault((delivery.message.KIND, _role(delivery.message.recipient)), index)
    count = 0
    for shape, index in points.items():
        variant_count = len(_malformed(honest.deliveries[index].message))
        for position in range(variant_count):
            run = Run(protocol)

            def inject(run: Run, message: Message, index=index, position=position, shape=shape) -> None:
                nonlocal count
                if len(run.deliveries) != index:
                    return None
                assert (message.KIND, _role(message.recipient)) == shape
                how, variant = _malformed(message)[position]
                what = f"{describe(message)} with {how}"
                count += 1
                with case(what):
                    try:
                        inbound = decode_message(variant.to_bytes())
                    except InvalidMessage as refusal:
                        assert type(refusal) is InvalidMessage, f"the codec raised {type(refusal).__name__}"
                        return None
                engine = run.engines[message.recipient]
                step = _step_for(engine, message)
                before = snapshot(engine)
                with case(what):
                    try:
                        engine.handle(inbound)
                    except SecureFLError as refusal:
                        if isinstance(engine, ServerEngine) or (step is not None and not step.once):
                            assert isinstance(refusal, InvalidMessage), (
                                f"a malformed message from {message.sender} made {engine.party} raise "
                                f"{type(refusal).__name__} ({refusal}); it drops it with InvalidMessage"
                            )
                            assert snapshot(engine) == before, (
                                f"{engine.party} dropped it ({type(refusal).__name__}: {refusal}) but changed: "
                                f"(state, phase, stop_reason) {before[:3]} -> {snapshot(engine)[:3]}"
                            )
                            return None
                        assert engine.state is EngineState.ABORTED and engine.stop_reason, (
                            f"{engine.party} refused a request ({type(refusal).__name__}: {refusal}) "
                            f"but is {engine.state.value}"
                        )
                    except Exception as crash:
                        raise AssertionError(f"{engine.party} crashed: {type(crash).__name__}: {crash}") from crash
                    else:
                        raise _Abandon
                assert_refused(engine, message, AlreadyFinalized, f"the genuine message after a refusal ({how})")
                raise _Abandon

            try:
                run.finish(intercept=inject)
            except _Abandon:
                pass
    return count


# -- 6. the transcript ---------------------------------------------------------------------------------


class _Tapped:
    """``protocol`` with every server engine it sets up recording the bytes of each message it handles."""

    def __init__(self, protocol: Protocol) -> None:
        self._protocol = protocol
        self.handled: list[tuple[str, str, bytes]] = []

    def __getattr__(self, name: str):
        return getattr(self._protocol, name)

    def setup(self, **options):
        parties = self._protocol.setup(**options)
        server = parties.server
        handle = server.handle

        def recording(message: Message) -> Replies:
            self.handled.append((message.sender, message.phase, message.to_bytes()))
            return handle(message)

        server.handle = recording  # type: ignore[method-assign]
        return parties


def check_transcript_is_server_input(protocol: Protocol) -> int:
    """``run_protocol``'s transcript is exactly the messages the server engine handled: same bytes,
    senders and phases, in the same order (and the aggregate is the exact sum)."""
    tapped = _Tapped(protocol)
    inputs = Run(protocol).inputs
    aggregate, transcript, _ = run_protocol(tapped, inputs, round=ROUND)  # type: ignore[arg-type]
    with case("run_protocol's transcript"):
        entries = [(entry.sender, entry.phase, entry.payload) for entry in transcript]
        assert tapped.handled, "the server handled nothing"
        assert entries == tapped.handled, (
            f"{len(entries)} transcript entries vs {len(tapped.handled)} messages handled by the server"
        )
        assert all(decode_message(payload).recipient == SERVER for _, _, payload in entries)
        bits = protocol.encoding.ring_bits
        total = np.zeros_like(inputs[0])
        for vector in inputs:
            ring.add(total, vector, bits)
        assert np.array_equal(aggregate.total, total)
    return len(entries)


# -- 7. single use -------------------------------------------------------------------------------------


def check_single_use(protocol: Protocol) -> int:
    """A responder that answered its last request is DONE at once and refuses a second copy of it
    (``AlreadyFinalized``); the run completes with the exact sum."""
    count = 0

    def twice(run: Run, message: Message) -> Replies | None:
        nonlocal count
        engine = run.engines[message.recipient]
        last = steps_of(engine)[-1]
        if isinstance(engine, ServerEngine) or not last.once or type(message) not in last.accepts:
            return None
        replies = run.deliver(message)
        with case(f"{engine.party} after answering {describe(message)}"):
            assert (engine.state, engine.phase) == (EngineState.DONE, None)
        assert_refused(engine, message, AlreadyFinalized, "a second copy of the last request")
        count += 1
        return replies

    run = Run(protocol)
    run.finish(intercept=twice)
    with case("every responder answered its last request"):
        responders = [*run.clients, *run.helpers]
        assert count == len(responders), f"{count} of {len(responders)} responders were checked"
    return count


def check_provide_input_once(protocol: Protocol) -> int:
    """provide_input a second time, or after the input phase's request: ``LocalProtocolError`` (or
    ``AlreadyFinalized`` once the client is DONE), the client unchanged; the sum is of the first inputs."""
    run = Run(protocol)
    count = 0
    for index, engine in enumerate(run.clients):
        other = run.inputs[(index + 1) % len(run.inputs)]
        assert_raises_exactly(LocalProtocolError, f"{engine.party}: provide_input twice", engine.provide_input,
                              other, unchanged=engine)
        count += 1

    def after(run: Run, message: Message) -> Replies | None:
        nonlocal count
        engine = run.engines[message.recipient]
        if not isinstance(engine, ClientEngine) or message.phase != type(engine).INPUT_PHASE:
            return None
        replies = run.deliver(message)
        error = AlreadyFinalized if run.finished(engine) or _last_is(engine, message) else LocalProtocolError
        assert_raises_exactly(error, f"{engine.party}: provide_input after {describe(message)}",
                              engine.provide_input, run.inputs[0], unchanged=engine)
        count += 1
        return replies

    run.finish(intercept=after)
    return count


def _last_is(engine: Engine, message: Message) -> bool:
    last = steps_of(engine)[-1]
    return last.once and type(message) in last.accepts


# -- 8. minimum cohort --------------------------------------------------------------------------------


def check_min_clients(protocol: Protocol) -> int:
    """Fewer than ``min_clients`` inputs (one, at least) are refused with ``ConfigurationError`` by
    ``check_clients``, ``setup`` and ``secure_sum``."""
    count = 0
    for clients in sorted({1, max(protocol.min_clients - 1, 1)}):
        assert_raises_exactly(ConfigurationError, f"check_clients({clients})", protocol.check_clients, clients)
        assert_raises_exactly(ConfigurationError, f"setup(clients={clients})", protocol.setup, clients=clients,
                              vector_length=LENGTH, session=os.urandom(SESSION_BYTES), round=0)
        updates = [np.full(LENGTH - 1, 0.25)] * clients
        assert_raises_exactly(ConfigurationError, f"secure_sum of {clients} update(s)", secure_sum, protocol, updates)
        count += 3
    with case(f"check_clients({CLIENTS})"):
        protocol.check_clients(CLIENTS)
    return count
