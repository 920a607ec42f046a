"""A node's durable record of what it contributed: one contribution per round, per session and per model.

A server that can ask twice learns by difference: two sums of one round
over cohorts {A, B, C} and {B, C} give A's update; a helper that answers a
replayed session twice gives the same; a node whose state a re-discovery
wiped can be made to play client/0 and client/1 of one sum. The ledger
closes these. It records

* ``rounds``   -- the (run id, round) pairs this node contributed to (a
  client: its input went into an engine; a helper: it started a session);
* ``sessions`` -- the session ids it took part in, with the one party it played;
* ``digests``  -- the digests of the models (:func:`.wire.content_digest`
  of the arrays it trained on) its inputs came from, recorded once the
  input has left the client's engine (``ClientEngine.input_released``): an
  aggregation that stopped before leaves the model free for the next round,

and :meth:`Ledger.admit` refuses, with ``ProtocolViolation``, a second
contribution to a recorded round, session or digest, whatever session id
the server names. A helper's digest is the server's, and an aggregation
that attaches no records has no model, so neither is recorded: a client
whose input does not change from round to round (no model) is protected
from differencing by the round rule only, and its input function should
draw fresh randomness.

Durability: the ledger lives in ``context.state`` under its own record,
which discovery never touches (the SuperNode keeps it across ClientApp
processes for the whole run), and, when the node config names a
``securefl-key-dir``, also in ``<key-dir>/ledger.msgpack`` (owner-only,
replaced atomically), so it survives new runs and restarts of the
SuperNode; every update is one locked load-change-save, so two runs of a
node sharing a key directory cannot both contribute from one model. Without
a key directory a new run starts a new ledger, which then protects nothing
across runs: give nodes a key directory.

What the model rule stops is an exact repeat. A server can send a model
that differs in its last bit, or carries a record the app ignores, and get
a nearly identical training; the mod digests only the arrays it trains on,
but no digest can tell "nearly the same". Against differencing of nearly
equal rounds use DP (``docs/privacy.md``).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import msgpack
from flwr.app import ConfigRecord, Context

from securefl.errors import InvalidMessage, ProtocolViolation
from securefl.integrations.flower.wire import DIGEST_BYTES
from securefl.protocols.state import StateReader
from securefl.protocols.wire import SESSION_BYTES

__all__ = ["Ledger", "LEDGER_KEY", "LEDGER_FILE"]

LEDGER_KEY = "securefl.ledger"  # ConfigRecord in context.state
LEDGER_FILE = "ledger.msgpack"
_FORMAT = "securefl/ledger/v1"
_ROUND_BYTES = 16  # a (run, round) pair: Flower's run id (uint64) and the round (int64), big-endian


@dataclass
class Ledger:
    """What this node contributed (see the module docstring); ``key_dir`` keeps a copy on disk."""

    rounds: set[tuple[int, int]] = field(default_factory=set)
    sessions: dict[bytes, str] = field(default_factory=dict)
    digests: set[bytes] = field(default_factory=set)
    key_dir: Path | None = None

    # -- the rule -------------------------------------------------------------------------------

    def check(self, *, run: int, round: int, session: bytes, party: str, digest: bytes | None) -> None:
        """``ProtocolViolation`` unless this node may start contributing as ``party`` to this aggregation."""
        if not 0 <= run < 2**64 or not -(2**63) <= round < 2**63:
            raise InvalidMessage(f"run {run} / round {round} is outside what a ledger records (uint64 / int64)")
        played = self.sessions.get(session)
        if played is not None:
            detail = "" if played == party else f" as {played!r}; it plays one party per session"
            raise ProtocolViolation(f"this node already took part in this session{detail}; a session is never "
                                    "started twice")
        if (run, round) in self.rounds:
            raise ProtocolViolation(f"this node already contributed to round {round} of run {run}; a round gets "
                                    "one contribution per node")
        if digest is not None:
            self._check_model(digest)

    def _check_model(self, digest: bytes) -> None:
        if digest in self.digests:
            raise ProtocolViolation("this node already contributed an update of this very model and config; a "
                                    "model gets one contribution per node")

    def claim_model(self, digest: bytes) -> None:
        """Record a contribution from the model ``digest``: ``ProtocolViolation`` if one is on record."""
        self._check_model(digest)
        self.digests.add(digest)

    def admit(self, *, run: int, round: int, session: bytes, party: str, digest: bytes | None) -> None:
        """:meth:`check`, then record the contribution."""
        self.check(run=run, round=round, session=session, party=party, digest=digest)
        self.rounds.add((run, round))
        self.sessions[session] = party
        if digest is not None:
            self.digests.add(digest)

    # -- storage --------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, object]:
        sessions = sorted(self.sessions)
        return {
            "format": _FORMAT,
            "rounds": [run.to_bytes(8, "big") + number.to_bytes(8, "big", signed=True)
                       for run, number in sorted(self.rounds)],
            "sessions": sessions,
            "parties": [self.sessions[session] for session in sessions],
            "digests": sorted(self.digests),
        }

    def merge(self, state: dict[str, object], *, what: str) -> None:
        """Add a stored ledger's records (``InvalidMessage`` for a malformed one)."""
        reader = StateReader(state, what=what)
        reader.text("format", choices=(_FORMAT,))
        rounds = reader.blobs("rounds", size=_ROUND_BYTES)
        sessions = reader.blobs("sessions", size=SESSION_BYTES)
        parties = reader.texts("parties")
        digests = reader.blobs("digests", size=DIGEST_BYTES)
        reader.finish()
        reader.require(len(sessions) == len(parties), "has lists of unequal length")
        for session, party in zip(sessions, parties):
            reader.require(self.sessions.get(session, party) == party, "names two parties for one session")
        self.rounds.update((int.from_bytes(pair[:8], "big"), int.from_bytes(pair[8:], "big", signed=True))
                           for pair in rounds)
        self.sessions.update(zip(sessions, parties))
        self.digests.update(digests)

    @classmethod
    def load(cls, context: Context, key_dir: Path | None) -> Ledger:
        """The node's ledger: ``context.state``'s record, joined with the key directory's file if any."""
        ledger = cls(key_dir=key_dir)
        record = context.state.config_records.get(LEDGER_KEY)
        if record is not None:
            ledger.merge(dict(record), what="node ledger")
        if key_dir is not None and (key_dir / LEDGER_FILE).exists():
            try:
                stored = msgpack.unpackb((key_dir / LEDGER_FILE).read_bytes(), raw=False)
            except Exception:  # msgpack raises several unrelated types on garbage
                raise InvalidMessage(f"{key_dir / LEDGER_FILE} is not a securefl ledger") from None
            if not isinstance(stored, dict):
                raise InvalidMessage(f"{key_dir / LEDGER_FILE} is not a securefl ledger")
            ledger.merge(stored, what=str(key_dir / LEDGER_FILE))
        return ledger

    @classmethod
    def update(cls, context: Context, key_dir: Path | None, change: Callable[[Ledger], None]) -> None:
        """Load, ``change`` and save the ledger as one step: under a lock on the key directory's file.

        Two runs of one node (two contexts, one key directory) then never
        both pass a check that either one's record would fail, and neither
        overwrites the other's records.
        """
        with _locked(key_dir):
            ledger = cls.load(context, key_dir)
            change(ledger)
            ledger.save(context)

    def save(self, context: Context) -> None:
        state = self.state_dict()
        context.state[LEDGER_KEY] = ConfigRecord(state)  # type: ignore[arg-type]  # plain lists and strings
        if self.key_dir is not None:
            self.key_dir.mkdir(parents=True, exist_ok=True)
            path = self.key_dir / LEDGER_FILE
            partial = path.with_name(f".{LEDGER_FILE}.{os.getpid()}")
            descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(msgpack.packb(state, use_bin_type=True))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(partial, path)


@contextmanager
def _locked(key_dir: Path | None) -> Iterator[None]:
    """An exclusive lock on ``key_dir/ledger.lock`` (nothing to lock without a key directory)."""
    if key_dir is None:
        yield
        return
    key_dir.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(key_dir / "ledger.lock", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)
