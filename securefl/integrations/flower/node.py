"""The node side: a ClientApp handler that plays one protocol party on a Flower SuperNode.

A SuperNode is a client unless its node config says otherwise
(``--node-config 'securefl-role="aggregator/0"'``, ``"decryptor"``, ...):
helper parties are SuperNodes of their own, so no helper secret ever sits in
the server's process. Each Flower message from the ServerApp names the party
the node plays in this aggregation, the phase and the protocol messages for
it; the node feeds them to its engine -- the very engine the in-process
simulator runs -- and answers with the engine's replies. A node builds only
its own party's engine (``Protocol.client_engine`` / ``helper_engine``),
never the federation's. Between messages the engine lives in
``context.state`` as plain data, since Flower starts a new ClientApp process
for each message: its ``state_dict()`` (ints, bytes, strings and lists of
them in a ``ConfigRecord``, vectors in an ``ArrayRecord``), rebuilt with
``Protocol.restore_engine`` at the next message, every field validated;
beside it the node's own keys, raw 32-byte strings. No pickle: nothing
stored can name code to run. The state holds the party's secrets (mask
keys, seeds, shares, a decryptor's Paillier key); the SuperNode keeps the
context in its own memory and hands it only to the ClientApp processes it
starts, never to the SuperLink or the ServerApp.

Threat model, node side: the node answers only as the party it plays (the
server checks it too), seals what it sends to a helper (see :mod:`.wire`),
refuses helpers whose published keys do not match the fingerprints its
operator pinned (node config ``securefl-pins = "decryptor=<hex> ..."``; a
helper keeps its keys, hence its fingerprint, from run to run when its node
config names a ``securefl-key-dir``), in SecAgg's malicious-server mode signs
with an Ed25519 key it made itself (its verification key published at
discovery, kept in ``securefl-key-dir`` too) and, when its operator pinned
other clients' fingerprints (``"client/<name>=<hex>"``), refuses a run whose
relayed verification keys are not all pinned ones, and
a refusal (``SecureFLError``) becomes a Flower error reply, after which the
server treats the node as dropped.

The node's policy is its own, never the server's: the protocol, its mode
(malicious-server by default, see
:func:`~securefl.integrations.flower.binding.against_malicious_server`), its
minimum cohort (``min_clients``: a cohort the server announces below it is
refused) and the pins come from this ClientApp's code or from the node
config (``securefl-protocol = "secagg"``, ``securefl-neighbors = 4``, ...,
read by :func:`~securefl.integrations.flower.binding.protocol_from_config`
with the ``securefl-`` prefix), never from the run config, which whoever
submits the run sets (``flwr run --run-config``). The ClientApp code itself
comes in the app bundle, so these checks bind a malicious server only when
SuperNodes run app code their operators trust (Flower's
``--trusted-entities``); the node config is the operator's own.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from logging import INFO
from pathlib import Path
from typing import TypeVar

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, ConfigRecordValues, Context, Error, Message, RecordDict
from flwr.clientapp import ClientApp

from securefl import validation
from securefl.crypto.keys import PRIVATE_KEY_BYTES, PUBLIC_KEY_BYTES, KeyPair, SigningKey
from securefl.errors import ConfigurationError, InvalidMessage, ProtocolViolation, SecureFLError
from securefl.integrations.flower import wire
from securefl.integrations.flower.binding import (
    against_malicious_server,
    bind,
    bind_peer,
    check_supported,
    protocol_from_config,
    publish,
    write_secret,
)
from securefl.integrations.flower.ledger import Ledger
from securefl.protocols.base import ClientEngine, Protocol, RespondingEngine, RunParameters
from securefl.protocols.lattice import BFV, LatticeKeyHolder
from securefl.protocols.paillier import KeyHolder, Paillier
from securefl.protocols.state import StateDict, StateReader, check_plain
from securefl.protocols.wire import SERVER, SESSION_BYTES, client_id, client_index, decode_message

__all__ = [
    "CLIENT",
    "ROLE_KEY",
    "PINS_KEY",
    "KEY_DIR_KEY",
    "PARTITION_KEY",
    "ERROR_CODE",
    "Job",
    "Contribution",
    "SecureFLNode",
    "make_client_app",
    "parse_pins",
    "opening_digest",
    "RoundDigest",
]

CLIENT = "client"
ROLE_KEY = "securefl-role"
PINS_KEY = "securefl-pins"
KEY_DIR_KEY = "securefl-key-dir"
PARTITION_KEY = "partition-id"
SEMI_HONEST_KEY = "securefl-semi-honest-server"  # node config: true trusts the server (Paillier needs it)
NODE_CONFIG_PREFIX = "securefl-"  # node-config keys of the node's own protocol: securefl-protocol, ...
STATE_KEY = "securefl.state"  # ConfigRecord: the node's own fields
ENGINE_KEY = "securefl.engine"  # ConfigRecord: the engine's scalars and lists
ENGINE_ARRAYS_KEY = "securefl.engine-arrays"  # ArrayRecord: the engine's vectors
KEY_HOLDER_KEY = "securefl.key-holder"  # ConfigRecord: a decryptor's Paillier/BFV key pair and its decryptions
NODE_STATE_FORMAT = "securefl/node-state/v2"
ERROR_CODE = 4701  # a Flower error code of our own: "securefl refused this message"


@dataclass(frozen=True)
class Job:
    """What a client's input function gets when its engine is made (once per aggregation).

    ``message`` is the Flower message that opened the aggregation (its
    content holds any records the server attached, e.g. the global model);
    ``protocol`` is the bound protocol, whose ``encoding`` turns floats into
    the ring vector of ``vector_length`` coordinates the engine expects;
    ``clients`` is the aggregation's cohort, as the server announced it.
    """

    message: Message
    context: Context
    protocol: Protocol
    party: str
    round: int
    vector_length: int
    clients: int

    @property
    def partition(self) -> int | None:
        """The node's ``partition-id`` from its node config, if it has one."""
        value = self.context.node_config.get(PARTITION_KEY)
        if value is None or not validation.is_integer(value):
            return None
        return int(value)


@dataclass(frozen=True)
class Contribution:
    """An input function's answer: the encoded ring vector and metrics to report (floats)."""

    vector: np.ndarray
    metrics: Mapping[str, float] = field(default_factory=dict)


InputFn = Callable[[Job], np.ndarray | Contribution]
ProtocolSource = Protocol | Callable[[Context], Protocol] | None


@dataclass
class _NodeState:
    """Everything the node keeps between messages, stored as plain data (see :meth:`SecureFLNode._save`)."""

    role: str
    transport: KeyPair | None = None  # a helper's X25519 transport key
    signing: SigningKey | None = None  # a client's own Ed25519 key (its envelopes; SecAgg's malicious-server mode)
    key_holder: KeyHolder | LatticeKeyHolder | None = None  # a decryptor's key pair, whose public key it published
    parameters: bytes = b""
    session: bytes | None = None
    party: str | None = None
    engine: StateDict | None = None  # the engine of ``session``, as its state_dict()
    helper_keys: dict[str, bytes] = field(default_factory=dict)
    digest: bytes = b""  # the round digest ``session`` is bound to (see wire.bound_session)
    model: bytes = b""  # the model digest the ledger records once the client's input has left its engine


@dataclass(frozen=True)
class RoundDigest:
    """What a client's aggregation is bound to (:func:`.wire.content_digest` digests).

    ``session``: of everything it trained on (model and config), which its
    session is bound to; ``model``: of the model alone (None: it got none),
    which its ledger records, so that no model gets two of its contributions.
    """

    session: bytes
    model: bytes | None


def opening_digest(message: Message, context: Context) -> RoundDigest:
    """The digests of an opening driver message: of the records the server attached (securefl's own aside)."""
    ours = (wire.CONTROL, wire.MESSAGES)
    model = wire.content_digest(message.content, skip=ours, arrays_only=True)
    return RoundDigest(session=wire.content_digest(message.content, skip=ours),
                       model=None if model == wire.empty_digest() else model)


_KeyT = TypeVar("_KeyT", KeyPair, SigningKey)


def _node_key(key_class: type[_KeyT], key_dir: Path | None, filename: str) -> _KeyT:
    """A node's own key: fresh per run, or kept in ``key_dir/filename`` (0600, made on first use).

    Helpers keep their X25519 transport key in ``transport.key``; clients in
    malicious-server mode their Ed25519 signing key in ``signing.key``.
    """
    if key_dir is None:
        return key_class.generate()
    path = key_dir / filename
    if path.exists():
        return key_class.from_private_bytes(path.read_bytes())
    key = key_class.generate()
    write_secret(path, key.private_bytes)
    return key


def _key_dir(context: Context) -> Path | None:
    key_dir = context.node_config.get(KEY_DIR_KEY, "")
    return Path(key_dir) if isinstance(key_dir, str) and key_dir else None


CLIENT_PIN_PREFIX = "client/"


def parse_pins(text: str) -> dict[str, str]:
    """``"decryptor=ab12... aggregator/0=cd34..."`` (spaces, commas or semicolons) -> {party: fingerprint}.

    A name ``client/<label>`` pins another client's verification key (SecAgg,
    malicious-server mode); the label is the operator's own name for that
    client, not its index in a round.
    """
    pins: dict[str, str] = {}
    for item in text.replace(",", " ").replace(";", " ").split():
        party, separator, fingerprint = item.partition("=")
        if not separator or not party or len(fingerprint) != 32:
            raise ConfigurationError(f"a pin must read party=<32 hex digits>; found {item!r}")
        pins[party] = fingerprint.lower()
    return pins


def _log(text: str, *args: object) -> None:
    try:
        from flwr.common.logger import log
    except ImportError:  # pragma: no cover
        return
    log(INFO, text, *args)


class SecureFLNode:
    """A ClientApp message handler that plays one protocol party (see the module docstring).

    ``protocol`` is a ``Protocol``, a function of the node's ``Context``, or
    None (built from the node config's ``securefl-*`` keys with
    :func:`~securefl.integrations.flower.binding.protocol_from_config`); it
    runs in its malicious-server mode unless ``semi_honest_server``.
    ``digest_fn(message, context)`` gives a client the :class:`RoundDigest`
    of the message that opens its aggregation (default
    :func:`opening_digest`: of the records the server attached to it, e.g.
    the global model its input function trains).
    ``input_fn`` gives a client its encoded input when its engine is made;
    ``role`` overrides the node config's ``securefl-role``; ``pins`` overrides
    its ``securefl-pins``.
    """

    def __init__(
        self,
        protocol: ProtocolSource = None,
        *,
        input_fn: InputFn | None = None,
        role: str | None = None,
        pins: Mapping[str, str] | None = None,
        semi_honest_server: bool = False,
        digest_fn: Callable[[Message, Context], RoundDigest] | None = None,
    ) -> None:
        if protocol is not None and not isinstance(protocol, Protocol) and not callable(protocol):
            raise ConfigurationError(
                f"protocol must be a Protocol, a function of the Context, or None; found {protocol!r}"
            )
        self._protocol = protocol
        self._input_fn = input_fn
        self._role = role
        self._pins = dict(pins) if pins is not None else None
        self.semi_honest_server = validation.boolean(semi_honest_server, "semi_honest_server")
        self._digest_fn = digest_fn or opening_digest

    # -- configuration ------------------------------------------------------

    def protocol_for(self, context: Context) -> Protocol:
        if isinstance(self._protocol, Protocol):
            protocol = self._protocol
        elif self._protocol is not None:
            protocol = self._protocol(context)
        else:
            protocol = protocol_from_config(context.node_config, prefix=NODE_CONFIG_PREFIX)
        protocol = against_malicious_server(protocol, semi_honest_server=self.semi_honest_for(context))
        check_supported(protocol)
        return protocol

    def semi_honest_for(self, context: Context) -> bool:
        """Whether this node trusts the server to follow the protocol: its code's choice or its node config's
        (``securefl-semi-honest-server = true``)."""
        return self.semi_honest_server or context.node_config.get(SEMI_HONEST_KEY) is True

    def role_for(self, context: Context) -> str:
        role = self._role if self._role is not None else context.node_config.get(ROLE_KEY, CLIENT)
        if not isinstance(role, str) or not role or role == SERVER:
            raise ConfigurationError(f"{ROLE_KEY} must name a client or a helper party; found {role!r}")
        return role

    def client_pins_for(self, context: Context) -> set[str]:
        """The fingerprints of other clients' keys this node's operator pinned (``client/<name>=<hex>``)."""
        return {value for name, value in self.pins_for(context).items() if name.startswith(CLIENT_PIN_PREFIX)}

    def pins_for(self, context: Context) -> dict[str, str]:
        if self._pins is not None:
            return self._pins
        text = context.node_config.get(PINS_KEY, "")
        return parse_pins(text) if isinstance(text, str) else {}

    # -- state ----------------------------------------------------------------

    @staticmethod
    def _load(context: Context) -> _NodeState | None:
        """The node's stored state, every field checked (``InvalidMessage`` for a malformed one)."""
        records = context.state.config_records
        record = records.get(STATE_KEY)
        if record is None:
            return None
        reader = StateReader(dict(record), what="node state")
        reader.text("format", choices=(NODE_STATE_FORMAT,))
        state = _NodeState(role=reader.text("role"))
        transport = reader.optional_blob("transport-key", size=PRIVATE_KEY_BYTES)
        signing = reader.optional_blob("signing-key", size=PRIVATE_KEY_BYTES)
        state.transport = KeyPair.from_private_bytes(transport) if transport is not None else None
        state.signing = SigningKey.from_private_bytes(signing) if signing is not None else None
        state.parameters = reader.blob("parameters")
        state.session = reader.optional_blob("session", size=SESSION_BYTES)
        state.party = reader.text("party") or None
        helpers, keys = reader.texts("helper-parties"), reader.blobs("helper-keys")
        state.digest = reader.blob("digest", sizes=(0, wire.DIGEST_BYTES))
        state.model = reader.blob("model-digest", sizes=(0, wire.DIGEST_BYTES))
        has_engine = reader.boolean("engine")
        reader.finish()
        reader.require(len(helpers) == len(keys), "has lists of unequal length")
        state.helper_keys = dict(zip(helpers, keys))
        if KEY_HOLDER_KEY in records:
            stored = dict(records[KEY_HOLDER_KEY])
            holder_class = LatticeKeyHolder if stored.get("scheme") == "bfv" else KeyHolder
            state.key_holder = holder_class.from_state_dict(stored)
        if has_engine:
            engine: dict[str, object] = dict(records.get(ENGINE_KEY, {}))
            arrays = context.state.array_records.get(ENGINE_ARRAYS_KEY, ArrayRecord())
            for name, array in arrays.items():
                reader.require(name not in engine, f"stores the engine field {name!r} twice")
                try:
                    engine[name] = array.numpy()
                except (TypeError, ValueError) as error:
                    reader.fail(f"has an unreadable engine array {name!r}: {error}")
            check_plain(engine, what="stored engine state")
            state.engine = engine  # type: ignore[assignment]  # checked by check_plain
        reader.require((state.engine is None) == (state.session is None), "must hold an engine exactly for a session")
        return state

    @staticmethod
    def _save(context: Context, state: _NodeState) -> None:
        """Write ``state`` into ``context.state``: plain records only (no pickle)."""
        context.state[STATE_KEY] = ConfigRecord({
            "format": NODE_STATE_FORMAT,
            "role": state.role,
            "transport-key": state.transport.private_bytes if state.transport is not None else b"",
            "signing-key": state.signing.private_bytes if state.signing is not None else b"",
            "parameters": state.parameters,
            "session": state.session or b"",
            "party": state.party or "",
            "helper-parties": list(state.helper_keys),
            "helper-keys": list(state.helper_keys.values()),
            "digest": state.digest,
            "model-digest": state.model,
            "engine": state.engine is not None,
        })
        if state.key_holder is not None:
            context.state[KEY_HOLDER_KEY] = ConfigRecord(state.key_holder.state_dict())  # type: ignore[arg-type]
        fields: dict[str, ConfigRecordValues] = {}
        arrays: dict[str, Array] = {}
        for name, value in (state.engine or {}).items():
            if isinstance(value, np.ndarray):
                arrays[name] = Array(value)
            else:
                fields[name] = value
        context.state[ENGINE_KEY] = ConfigRecord(fields)
        context.state[ENGINE_ARRAYS_KEY] = ArrayRecord(arrays)

    # -- the handler ------------------------------------------------------------

    def __call__(self, message: Message, context: Context) -> Message:
        try:
            control, entries = wire.unpack(message.content)
            operation = control.get("op")
            if operation == "discover":
                content = self._discover(context)
            elif operation == "phase":
                content = self._phase(message, context, control, entries)
            else:
                raise InvalidMessage(f"unknown driver operation {operation!r}")
        except SecureFLError as error:
            reason = f"{type(error).__name__}: {error}"
            _log("securefl: refused a %s message: %s", message.metadata.message_type, reason)
            return Message(Error(code=ERROR_CODE, reason=reason), reply_to=message)
        return Message(content, reply_to=message)

    def _discover(self, context: Context) -> RecordDict:
        role = self.role_for(context)
        protocol = self.protocol_for(context)
        state = _NodeState(role=role)
        if role == CLIENT:  # it signs what it sends helpers, and in SecAgg's malicious-server mode its keys
            state.signing = _node_key(SigningKey, _key_dir(context), "signing.key")
            fingerprint = wire.client_fingerprint(state.signing.public_bytes)
            _log("securefl: this SuperNode is a client; fingerprint %s (other clients pin it)", fingerprint)
        if role != CLIENT:
            key_dir = _key_dir(context)
            state.transport = _node_key(KeyPair, key_dir, "transport.key")
            if protocol.helpers_message_each_other:  # it signs what it sends its peers; they pin its parameters
                state.signing = _node_key(SigningKey, key_dir, "signing.key")
            published, state.parameters = publish(protocol, role, key_dir=key_dir, signing_key=state.signing)
            state.key_holder = published.key_holder if isinstance(published, (Paillier, BFV)) else None
            fingerprint = wire.helper_fingerprint(role, state.transport.public_bytes, state.parameters)
            _log("securefl: this SuperNode is %s; fingerprint %s (clients pin it)", role, fingerprint)
        self._save(context, state)
        partition = context.node_config.get(PARTITION_KEY, -1)
        control: dict[str, ConfigRecordValues] = {
            "op": "discover",
            "role": role,
            "protocol": protocol.name,
            "partition": int(partition) if validation.is_integer(partition) else -1,
            "transport-key": state.transport.public_bytes if state.transport else b"",
            "parameters": state.parameters,
            "verification-key": state.signing.public_bytes if state.signing else b"",
            "registers-client-keys": protocol.registers_client_keys,
        }
        return wire.pack(control, [])

    def _phase(self, message: Message, context: Context, control: dict, entries: list[wire.Entry]) -> RecordDict:
        role = self.role_for(context)
        state = self._load(context) or _NodeState(role=role)
        if state.role != role:
            raise InvalidMessage(f"this node was discovered as {state.role!r}, not {role!r}")
        _check_control(control)
        session, round, phase, party = control["session"], control["round"], control["phase"], control["party"]
        if role == CLIENT:
            client_index(party)  # InvalidMessage unless "client/<i>"
        elif party != role:
            raise InvalidMessage(f"this node is {role!r}; it does not play {party!r}")

        metrics: dict[str, float] = {}
        protocol = self._bound_protocol(context, control, state)
        peers = self._peer_helpers(context, control, state, protocol)  # before any engine: its own keys checked
        if peers:
            state.helper_keys = {peer: transport for peer, (transport, _) in peers.items()}
        digest, model = self._round_digest(message, context, control, state)
        session = wire.bound_session(session, digest)
        run = self._run_parameters(protocol, control, session)
        if run.clients < protocol.min_clients:
            raise ProtocolViolation(
                f"the server announced a cohort of {run.clients} client(s); this node's {protocol.name} sums no "
                f"fewer than min_clients={protocol.min_clients}"
            )
        if state.engine is None or state.session != session:
            # A contribution: once per round, per session and (a client) per model, whatever the server asks.
            # The model is recorded once the input has left the engine: an aggregation that stopped
            # before then leaves the model free for the next round (FedAvg keeps it after an abort).
            key_dir = _key_dir(context)
            Ledger.load(context, key_dir).check(run=int(context.run_id), round=round, session=session, party=party,
                                                digest=model)
            engine = self._new_engine(message, context, control, state, protocol, run, metrics)
            Ledger.update(context, key_dir, lambda ledger: ledger.admit(
                run=int(context.run_id), round=round, session=session, party=party, digest=None))
            state.model = model or b""
        else:
            if state.party != party:
                raise InvalidMessage(f"this node plays {state.party!r} in this session, not {party!r}")
            restored = protocol.restore_engine(run, state.engine)
            if not isinstance(restored, RespondingEngine) or restored.party != party:
                raise InvalidMessage(f"the stored engine does not play {party!r}")
            engine = restored
        state.digest = digest
        state.session, state.party = session, party
        outgoing: list[wire.Entry] = []
        started = time.perf_counter()
        senders: Callable[[str], bytes] | None = None
        try:
            for entry in entries:
                if entry.sealed:
                    if state.transport is None:
                        raise InvalidMessage(f"{party} holds no transport key; it cannot open a sealed message")
                    senders = senders or self._sender_keys(context, control, run.clients, peers)
                    sender, payload = wire.open_envelope(entry.data, state.transport, session=session, round=round,
                                                         recipient=party, sender_keys=senders)
                else:
                    sender, payload = None, entry.data
                inbound = decode_message(payload)
                if inbound.recipient != party or (sender is not None and inbound.sender != sender):
                    raise InvalidMessage(
                        f"a message for {inbound.recipient!r} from {inbound.sender!r} reached {party}"
                    )
                if role != CLIENT and sender is None and inbound.sender != SERVER:
                    # What a client sends a helper arrives sealed and signed, or it is the server's forgery.
                    raise InvalidMessage(f"an unsealed message in the name of {inbound.sender!r} reached {party}")
                if state.model and isinstance(engine, ClientEngine) and inbound.phase == engine.INPUT_PHASE:
                    self._record_model(context, state.model)  # before the input leaves, atomically
                    state.model = b""
                for reply in engine.handle(inbound):
                    data = reply.to_bytes()
                    helper_key = state.helper_keys.get(reply.recipient)
                    if (not self.semi_honest_for(context) and not helper_key
                            and reply.recipient != SERVER and not reply.recipient.startswith("client/")):
                        # Never in the clear to a helper: the server would read it (hosted helpers: tests only).
                        raise InvalidMessage(f"{reply.recipient!r} published no transport key; this node "
                                             "sends a helper nothing unsealed")
                    if helper_key:
                        if state.signing is None:
                            raise InvalidMessage("this node made no client key at discovery; it cannot sign")
                        data = wire.seal_to(helper_key, data, session=session, round=round, sender=party,
                                            recipient=reply.recipient, signer=state.signing)
                    outgoing.append(wire.Entry(data=data, sealed=bool(helper_key)))
        finally:
            # Kept also after a refusal: an engine that stopped stays stopped (single use).
            state.engine = engine.state_dict()  # a decryptor's claim is in state.key_holder, the one it used
            self._save(context, state)
        metrics["engine-seconds"] = time.perf_counter() - started
        return wire.pack({"op": "phase", "party": party, "phase": phase, **metrics}, outgoing)

    @staticmethod
    def _record_model(context: Context, model: bytes) -> None:
        """Record ``model`` as contributed, refusing if another run of this node already did (one lock)."""
        Ledger.update(context, _key_dir(context), lambda ledger: ledger.claim_model(model))

    def _sender_keys(self, context: Context, control: dict, clients: int,
                     peers: Mapping[str, tuple[bytes, bytes]]) -> Callable[[str], bytes]:
        """A helper's lookup of the key that signs an envelope: a client's from the list the server relays,
        a peer helper's from its published parameters (``peers``, checked against this node's pins)."""
        keys = checked_client_keys(control.get("client-keys"), clients=clients,
                                   client_pins=self.client_pins_for(context))

        def key_of(sender: str) -> bytes:
            if sender in peers:
                return peers[sender][1]
            index = client_index(sender)  # InvalidMessage unless "client/<i>": only clients and peers seal
            if not 0 <= index < len(keys) or client_id(index) != sender:
                raise InvalidMessage(f"an envelope names the sender {sender!r}, which this aggregation does not list")
            return keys[index]

        return key_of

    def _check_helper_pins(self, context: Context, keys: Mapping[str, bytes], parameters: Mapping[str, bytes],
                           *, skip: str = "") -> None:
        """``InvalidMessage`` unless every helper this node pinned (but ``skip``, itself) has the relayed key and
        parameters of its fingerprint."""
        for pinned, fingerprint in self.pins_for(context).items():
            if pinned.startswith(CLIENT_PIN_PREFIX) or pinned == skip:
                continue
            if pinned not in keys or (
                wire.helper_fingerprint(pinned, keys[pinned], parameters[pinned]) != fingerprint
            ):
                raise InvalidMessage(f"helper {pinned!r} does not match the fingerprint this node pinned")

    def _peer_helpers(self, context: Context, control: dict, state: _NodeState,
                      protocol: Protocol) -> dict[str, tuple[bytes, bytes]]:
        """A helper's peers (the other helpers of the aggregation) as {party: (transport key, verification key)}.

        Only for a protocol whose helpers message each other: each published
        its Ed25519 verification key as its parameters, and what the server
        relays must match this node's pins. Empty on a client.
        """
        if state.role == CLIENT or not protocol.helpers_message_each_other:
            return {}
        helpers, keys, parameters = _relayed_helpers(control)
        if sorted(helpers) != sorted(protocol.helper_parties()):
            # A "helper" named like a client would let the server sign envelopes in that client's name.
            raise InvalidMessage(f"the server lists the helpers {helpers}; {protocol.name} has exactly "
                                 f"{list(protocol.helper_parties())}")
        # Its own parameters were checked by bind_peer; its transport key is checked here.
        if state.transport is None or keys.get(state.role) != state.transport.public_bytes:
            raise InvalidMessage(f"the server relays another key or parameters for {state.role!r}, this node")
        self._check_helper_pins(context, keys, parameters, skip=state.role)
        peers: dict[str, tuple[bytes, bytes]] = {}
        for peer in helpers:
            if peer == state.role:
                continue
            if len(keys[peer]) != PUBLIC_KEY_BYTES or len(parameters[peer]) != PUBLIC_KEY_BYTES:
                raise InvalidMessage(f"the server relays no transport key or verification key for {peer!r}")
            peers[peer] = (keys[peer], parameters[peer])
        return peers

    def _bound_protocol(self, context: Context, control: dict, state: _NodeState) -> Protocol:
        """The protocol this node runs in this aggregation: its own configuration, around the helpers'
        published parameters (a client) or its own published secret (a helper)."""
        if state.role == CLIENT:
            protocol = bind(self.protocol_for(context), _relayed_helpers(control)[2])
        else:
            if state.transport is None:
                raise InvalidMessage(f"helper {state.role!r} was asked to run before the server discovered it")
            protocol = self.protocol_for(context)
            if state.key_holder is not None:
                scheme = Paillier if isinstance(state.key_holder, KeyHolder) else BFV
                if not isinstance(protocol, scheme):
                    raise InvalidMessage(f"this node published a {scheme.__name__} key; it is configured for "
                                         f"{protocol.name}")
                protocol = dataclasses.replace(protocol, key_holder=state.key_holder)  # type: ignore[arg-type]
            if protocol.helpers_message_each_other:
                protocol = bind_peer(protocol, state.role, _relayed_helpers(control)[2], state.signing)
        if control.get("protocol") != protocol.name:
            raise ConfigurationError(
                f"the server runs {control.get('protocol')!r}; this node is configured for {protocol.name!r}"
            )
        if not protocol.registers_client_keys and control.get("verification-keys"):
            raise ConfigurationError(
                f"the server runs {protocol.name} with malicious_server=True; this node is configured without it"
            )
        return protocol

    def _round_digest(self, message: Message, context: Context, control: dict,
                      state: _NodeState) -> tuple[bytes, bytes | None]:
        """(the digest this aggregation's session is bound to, the model digest a new contribution records).

        A client's is of what it trained on: the stored one while its engine
        runs, else ``digest_fn``'s; a helper's is the one the server names
        (and it records no model: it has none of its own).
        """
        if state.role != CLIENT:
            digest = control.get("round-digest")
            if not isinstance(digest, bytes) or len(digest) != wire.DIGEST_BYTES:
                raise InvalidMessage("the server named no round digest for this aggregation")
            return digest, None
        if state.engine is not None and state.digest and state.session == wire.bound_session(
                control["session"], state.digest):
            return state.digest, None
        opened = self._digest_fn(message, context)
        return opened.session, opened.model

    @staticmethod
    def _run_parameters(protocol: Protocol, control: dict, session: bytes) -> RunParameters:
        """The aggregation's public parameters from the control fields (every message carries them).

        A stored engine names the parameters it was made under, so a server
        that changes them within a session is refused when the engine is rebuilt.
        """
        clients, length = control["clients"], control["vector-length"]  # ints: _check_control
        keys = list(control.get("verification-keys", [])) if protocol.registers_client_keys else []
        return protocol.run_parameters(clients=clients, vector_length=length, session=session,
                                       round=control["round"], verification_keys=keys)

    def _new_engine(self, message: Message, context: Context, control: dict, state: _NodeState, protocol: Protocol,
                    run: RunParameters, metrics: dict[str, float]) -> RespondingEngine:
        """This node's own party's engine (never the others'), a client's given its input."""
        party = control["party"]
        if state.role != CLIENT:
            return protocol.helper_engine(party, run)
        _, keys, parameters = _relayed_helpers(control)
        self._check_helper_pins(context, keys, parameters)
        client_pins = self.client_pins_for(context)
        state.helper_keys = {party_id: key for party_id, key in keys.items() if key}
        index = client_index(party)
        if not 0 <= index < run.clients or client_id(index) != party:
            raise InvalidMessage(f"{protocol.name} with {run.clients} clients has no party {party!r}")
        if state.helper_keys:  # the list the helpers check this node's envelopes against
            if state.signing is None:
                raise InvalidMessage("this node made no client key at discovery; the server must discover it first")
            checked_client_keys(control.get("client-keys"), clients=run.clients, client_pins=client_pins,
                                own=(index, state.signing.public_bytes))
        signing_key = None
        if protocol.registers_client_keys:
            signing_key = self._registered_signer(control, state, client_pins)[index]
        engine = protocol.client_engine(index, run, signing_key=signing_key)
        if self._input_fn is None:
            raise ConfigurationError("this ClientApp has no input function; pass input_fn to make_client_app")
        started = time.perf_counter()
        job = Job(message=message, context=context, protocol=protocol, party=party, round=control["round"],
                  vector_length=run.length, clients=run.clients)
        contribution = self._input_fn(job)
        if not isinstance(contribution, Contribution):
            contribution = Contribution(vector=contribution)
        engine.provide_input(contribution.vector)
        metrics["input-seconds"] = time.perf_counter() - started
        metrics.update({f"metric.{k}": float(v) for k, v in contribution.metrics.items()})
        return engine

    @staticmethod
    def _registered_signer(control: dict, state: _NodeState, client_pins: set[str]) -> dict[int, SigningKey]:
        """{own index: own signing key}, once the relayed verification keys pass this node's checks."""
        if state.signing is None:
            raise InvalidMessage("this node made no signing key at discovery; the server must discover it first")
        index = client_index(control["party"])
        checked_client_keys(control.get("verification-keys"), clients=control["clients"], client_pins=client_pins,
                            own=(index, state.signing.public_bytes), what="verification key")
        return {index: state.signing}


_CONTROL_TYPES: dict[str, type | tuple[type, ...]] = {
    "session": bytes, "round": int, "phase": str, "party": str, "clients": int, "vector-length": int,
}
_CONTROL_LISTS: dict[str, type] = {
    "helpers": str, "helper-keys": bytes, "helper-parameters": bytes, "client-keys": bytes, "verification-keys": bytes,
}


def _relayed_helpers(control: dict) -> tuple[list[str], dict[str, bytes], dict[str, bytes]]:
    """(helper parties, {party: transport key}, {party: parameters}) as the server relays them
    (``InvalidMessage`` unless one of each per helper; the types were checked by :func:`_check_control`)."""
    helpers = list(control.get("helpers", []))
    keys = dict(zip(helpers, control.get("helper-keys", [])))
    parameters = dict(zip(helpers, control.get("helper-parameters", [])))
    if not len(keys) == len(parameters) == len(helpers):
        raise InvalidMessage("helper keys and parameters do not match the helper list")
    return helpers, keys, parameters


def _check_control(control: Mapping[str, object]) -> None:
    """``InvalidMessage`` unless a phase message's control fields have their types (values are checked where used)."""
    for name, kind in _CONTROL_TYPES.items():
        value = control.get(name)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise InvalidMessage(f"malformed driver control record: {name!r} is {type(value).__name__}")
    for name, item in _CONTROL_LISTS.items():
        value = control.get(name, [])
        if not isinstance(value, list) or not all(isinstance(element, item) for element in value):
            raise InvalidMessage(f"malformed driver control record: {name!r} must be a list of {item.__name__}")
    helper_keys: list[bytes] = control.get("helper-keys", [])  # type: ignore[assignment]  # checked above
    for key in helper_keys:
        if len(key) not in (0, PUBLIC_KEY_BYTES):
            raise InvalidMessage(f"malformed driver control record: a helper key of {len(key)} bytes")


def checked_client_keys(
    keys: object, *, clients: int, client_pins: set[str], own: tuple[int, bytes] | None = None,
    what: str = "client key",
) -> list[bytes]:
    """The server's list of the clients' Ed25519 keys, once it passes this node's checks.

    One distinct 32-byte key per client; this node's own key at its own
    index (``own``, a client); when the operator pinned client fingerprints,
    only pinned keys: a server that substitutes a key (to sign as that
    client) or invents clients of its own (Sybils) is refused.
    """
    if (not isinstance(keys, list) or len(keys) != clients
            or not all(isinstance(key, bytes) and len(key) == PUBLIC_KEY_BYTES for key in keys)):
        raise InvalidMessage(f"the server sent no {what} list of one 32-byte key per client")
    if len(set(keys)) != len(keys):
        raise InvalidMessage(f"the server's {what} list names one key for two clients")
    if own is not None and keys[own[0]] != own[1]:
        raise InvalidMessage(f"the {what} relayed for client/{own[0]} is not this node's own")
    if client_pins:
        for position, key in enumerate(keys):
            if (own is None or position != own[0]) and wire.client_fingerprint(key) not in client_pins:
                raise InvalidMessage(
                    f"the {what} relayed for client/{position} does not match any fingerprint this node pinned"
                )
    return list(keys)


def make_client_app(
    protocol: ProtocolSource = None,
    *,
    input_fn: InputFn | None = None,
    role: str | None = None,
    pins: Mapping[str, str] | None = None,
    semi_honest_server: bool = False,
) -> ClientApp:
    """A Flower ``ClientApp`` whose ``query.securefl`` messages a :class:`SecureFLNode` answers.

    Register the same handler on an app of your own with
    ``app.query("securefl")(SecureFLNode(...))``.
    """
    app = ClientApp()
    app.query("securefl")(SecureFLNode(protocol, input_fn=input_fn, role=role, pins=pins,
                                       semi_honest_server=semi_honest_server))
    return app
