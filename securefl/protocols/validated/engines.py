"""The engines of validated sharing: client (prover), aggregators (verifiers), server (driver).

Phases: upload (witness shares) -> challenge (aggregators' joint seeds) ->
prove (proof shares) -> query (aggregators' query seeds) -> verify (each
aggregator sends its verifier shares to its peers, labelled "exchange"; the
last share to arrive makes it decide and report to the server, within the
server's verify phase) -> exchange (a phase of the aggregators alone: the
server asks nothing) -> aggregate (sums of accepted clients only). Aggregator 0 holds explicit shares; aggregator j >= 1
holds only 32-byte seeds, expanded by AES-CTR.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from dataclasses import field as dataclass_field

import numpy as np

from securefl import ring
from securefl.crypto import prg
from securefl.crypto.keys import PRIVATE_KEY_BYTES, PUBLIC_KEY_BYTES, SIGNATURE_BYTES, SigningKey, verify_signature
from securefl.errors import ConfigurationError, InvalidMessage, ProtocolAbort, ProtocolViolation
from securefl.protocols.base import (
    SERVER_ONLY,
    ClientEngine,
    RespondingEngine,
    RingAggregate,
    RunParameters,
    ServerEngine,
    Step,
    received,
)
from securefl.protocols.state import StateDict, StateReader, keyed
from securefl.protocols.validated import field
from securefl.protocols.validated.messages import (
    WORD_BITS,
    AggregateRequest,
    AggregateShare,
    ChallengeRequest,
    ChallengeSeed,
    ProofSeed,
    ProofShare,
    ProveRequest,
    QueryRequest,
    QuerySeed,
    UploadRequest,
    VerifierShare,
    VerifyReport,
    VerifyRequest,
    WitnessSeed,
    WitnessShare,
    from_wire,
    to_wire,
)
from securefl.protocols.validated.randomness import (
    challenge_for,
    joint_seed_statement,
    query_for,
    randomness_digest,
    round_query,
    share_label,
)
from securefl.protocols.validated.statement import Rejection, Statement
from securefl.protocols.wire import SERVER, Message, client_id, client_index

__all__ = ["UPLOAD", "CHALLENGE", "PROVE", "QUERY", "VERIFY", "EXCHANGE", "AGGREGATE", "PHASES", "ValidatedRun",
           "ValidatedAggregate", "aggregator_id", "valid_aggregator_keys", "Client", "Aggregator", "Server"]

UPLOAD, CHALLENGE, PROVE, QUERY = "upload", "challenge", "prove", "query"
VERIFY, EXCHANGE, AGGREGATE = "verify", "exchange", "aggregate"
PHASES = (UPLOAD, CHALLENGE, PROVE, QUERY, VERIFY, EXCHANGE, AGGREGATE)
_EMPTY = np.zeros(0, dtype=field.DTYPE)
_REASONS = tuple(reason.value for reason in Rejection)


def aggregator_id(index: int) -> str:
    return f"aggregator/{int(index)}"


def valid_aggregator_keys(keys: tuple[bytes, ...], aggregators: int) -> bool:
    """Whether ``keys`` are ``aggregators`` distinct 32-byte Ed25519 verification keys."""
    return len(keys) == aggregators and len(set(keys)) == len(keys) \
        and all(isinstance(key, bytes) and len(key) == PUBLIC_KEY_BYTES for key in keys)


@dataclass(frozen=True)
class ValidatedRun(RunParameters):
    """The public parameters of one validated-sharing aggregation (the statement's are among them)."""

    aggregators: int
    digit_bits: int
    norm_squared: int
    max_weight: int
    aggregator_keys: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if not valid_aggregator_keys(self.aggregator_keys, self.aggregators):
            raise ConfigurationError(f"validated sharing needs one distinct 32-byte Ed25519 verification key per "
                                     f"aggregator ({self.aggregators}); found {len(self.aggregator_keys)}")

    def _identity(self) -> tuple[bytes | str | int, ...]:
        return (*super()._identity(), self.aggregators, self.digit_bits, self.norm_squared, self.max_weight,
                *self.aggregator_keys)

    @property
    def statement(self) -> Statement:
        """The statement over the update coordinates (every coordinate but the weight)."""
        return _statement(self.length - 1, self.digit_bits, self.norm_squared, self.max_weight)


_STATEMENTS: dict[tuple[int, int, int, int], Statement] = {}


def _statement(length: int, digit_bits: int, norm_squared: int, max_weight: int) -> Statement:
    key = (length, digit_bits, norm_squared, max_weight)
    cached = _STATEMENTS.get(key)
    if cached is None:
        cached = _STATEMENTS[key] = Statement(length, digit_bits, norm_squared, max_weight)
    return cached


@dataclass(frozen=True)
class ValidatedAggregate(RingAggregate):
    """The exact ring sum of the accepted clients; ``rejected`` maps each excluded client to its reason."""

    rejected: dict[int, Rejection] = dataclass_field(default_factory=dict)


def checked_run(run: RunParameters) -> ValidatedRun:
    if not isinstance(run, ValidatedRun):
        raise ConfigurationError(f"validated-sharing engines need its run_parameters; found {type(run).__name__}")
    return run


FIELD_WORD_BITS = WORD_BITS


def _field_vector(message: Message, words: np.ndarray, length: int, what: str) -> np.ndarray:
    """The F_p vector a message carries as 32-bit words (``InvalidMessage`` unless exactly ``length`` elements)."""
    if getattr(message, "ring_bits", None) != WORD_BITS or words.dtype != np.uint32 or words.size != 2 * length:
        raise InvalidMessage(f"{what} from {message.sender} must be {length} elements of F_p as 32-bit word pairs")
    vector = from_wire(words)
    if not field.is_canonical(vector):
        raise InvalidMessage(f"{what} from {message.sender} holds an element >= p")
    return vector


def aggregator_index(party: str, run: ValidatedRun) -> int:
    digits = party.removeprefix("aggregator/")
    if digits == party or not (digits.isascii() and digits.isdigit()) or aggregator_id(int(digits)) != party \
            or not int(digits) < run.aggregators:
        raise InvalidMessage(f"stored state names {party!r}, not an aggregator of this run")
    return int(digits)


# -- the client -------------------------------------------------------------------------------------


class Client(ClientEngine):
    """Shares its witness, then (given the joint seeds) the proof; refuses an update outside the statement.

    ``cheating_prover=True`` (attack simulation only) skips that refusal: the
    engine proves whatever it is given, as a malicious client running its own
    code would, and the aggregators' verification rejects a false statement.
    """

    INPUT_PHASE = UPLOAD
    STATE_KIND = "validated-sharing/client"
    _run: ValidatedRun

    def __init__(self, index: int, run: ValidatedRun, *, cheating_prover: bool = False) -> None:
        self._index = index
        self._witness: np.ndarray | None = None
        self._cheating_prover = bool(cheating_prover)
        super().__init__(client_id(index), run)

    @classmethod
    def _restore_engine(cls, party: str, run: RunParameters, reader: StateReader) -> Client:
        run = checked_run(run)
        return cls(cls._index_of(party, run), run)

    def _steps(self) -> list[Step]:
        return [Step(UPLOAD, (UploadRequest,), self._upload, senders=SERVER_ONLY),
                Step(PROVE, (ProveRequest,), self._prove, senders=SERVER_ONLY)]

    def _accept_input(self, vector: np.ndarray) -> None:
        if self._cheating_prover:
            return
        run = self._run
        signed = ring.to_signed(vector, run.ring_bits)
        run.statement.check_update(signed[:-1], int(signed[-1]))

    def _wipe(self) -> None:
        super()._wipe()
        self._witness = None

    def _shares(self, vector: np.ndarray, what: str, phase: str) -> list[Message]:
        run = self._run
        leader = vector
        outbound: list[Message] = []
        for aggregator in range(1, run.aggregators):
            seed = os.urandom(prg.SEED_BYTES)
            label = share_label(what, run.session, run.round, self._index, aggregator)
            leader = field.sub(leader, field.expand(seed, label, vector.size))
            kind = WitnessSeed if what == "witness" else ProofSeed
            outbound.append(kind(*run.header(phase, self.party, aggregator_id(aggregator)), seed=seed))
        kind_share = WitnessShare if what == "witness" else ProofShare
        outbound.insert(0, kind_share(*run.header(phase, self.party, aggregator_id(0)),
                                      ring_bits=FIELD_WORD_BITS,
                                      vector=to_wire(leader)))
        return outbound

    def _upload(self, message: Message) -> list[Message]:
        run = self._run
        signed = ring.to_signed(self._take_input(), run.ring_bits)
        self._witness = run.statement.witness(signed[:-1], int(signed[-1]))
        return self._shares(self._witness, "witness", UPLOAD)

    def _prove(self, message: Message) -> list[Message]:
        message = received(message, ProveRequest)
        run = self._run
        if len(message.joint_seeds) != run.aggregators or len(message.signatures) != run.aggregators:
            raise ProtocolViolation(f"prove request carries {len(message.joint_seeds)} seeds and "
                                    f"{len(message.signatures)} signatures; {run.aggregators} aggregators drew one "
                                    "each")
        for index, (seed, signature) in enumerate(zip(message.joint_seeds, message.signatures)):
            try:
                verify_signature(run.aggregator_keys[index], signature,
                                 joint_seed_statement(run.session, run.round, index, seed))
            except InvalidMessage:
                raise ProtocolViolation(f"the joint seed relayed for {aggregator_id(index)} is not one it signed: "
                                        "this client proves nothing under randomness its aggregators did not "
                                        "draw") from None
        if self._witness is None:
            raise ProtocolViolation("prove request before this client shared a witness")
        statement = run.statement
        challenge = challenge_for(run.session, run.round, message.joint_seeds)
        blinds = field.expand(os.urandom(prg.SEED_BYTES), b"blinds", statement.blind_length)
        proof = statement.prove(self._witness, challenge, blinds)
        self._witness = None
        return self._shares(proof, "proof", PROVE)

    def _state_fields(self) -> StateDict:
        fields = super()._state_fields()
        fields["witness"] = self._witness if self._witness is not None else _EMPTY
        return fields

    def _restore_fields(self, reader: StateReader) -> None:
        super()._restore_fields(reader)
        witness = reader.optional_vector("witness", dtype=field.DTYPE, length=self._run.statement.witness_length)
        if witness is not None:
            reader.require(self._active and self._position == 0, "holds a witness outside phase 'upload'")
            reader.require(field.is_canonical(witness), "witness has elements outside F_p")
        self._witness = witness


# -- the aggregators ----------------------------------------------------------------------------------


class Aggregator(RespondingEngine):
    """Holds shares (explicit for aggregator 0, seeds for the others), verifies with its peers, sums the accepted."""

    STATE_KIND = "validated-sharing/aggregator"
    _run: ValidatedRun

    def __init__(self, index: int, run: ValidatedRun, signing_key: SigningKey) -> None:
        if not isinstance(signing_key, SigningKey) or signing_key.public_bytes != run.aggregator_keys[index]:
            raise ConfigurationError(f"{aggregator_id(index)}'s signing key is not the one whose verification key "
                                     "the run lists for it")
        self._index = index
        self._signing_key = signing_key
        self._witnesses: dict[int, np.ndarray] = {}
        self._witness_seeds: dict[int, bytes] = {}
        self._proofs: dict[int, np.ndarray] = {}
        self._proof_seeds: dict[int, bytes] = {}
        self._joint_seed = b""
        self._joint_seeds: tuple[bytes, ...] = ()
        self._query_seed = b""
        self._query_seeds: tuple[bytes, ...] = ()
        self._included: tuple[int, ...] | None = None
        self._own: np.ndarray | None = None
        self._peer_shares: dict[int, np.ndarray] = {}
        self._accepted: tuple[int, ...] | None = None
        self._rejected: dict[int, Rejection] = {}
        super().__init__(aggregator_id(index), run)

    @classmethod
    def _restore_engine(cls, party: str, run: RunParameters, reader: StateReader) -> Aggregator:
        run = checked_run(run)
        signing_key = SigningKey.from_private_bytes(reader.blob("signing-key", sizes=(PRIVATE_KEY_BYTES,)))
        index = aggregator_index(party, run)
        reader.require(signing_key.public_bytes == run.aggregator_keys[index],
                       "holds a signing key the run does not list for it")
        return cls(index, run, signing_key)

    @property
    def leader(self) -> bool:
        return self._index == 0

    @property
    def rejected(self) -> dict[int, Rejection]:
        """The clients this aggregator excluded after verification, with the reason."""
        return dict(self._rejected)

    def _peers(self) -> list[int]:
        return [j for j in range(self._run.aggregators) if j != self._index]

    def _steps(self) -> list[Step]:
        clients = frozenset(client_id(i) for i in range(self._run.clients))
        witness, proof = (WitnessShare, ProofShare) if self.leader else (WitnessSeed, ProofSeed)
        peers = frozenset(aggregator_id(j) for j in self._peers())
        return [
            Step(UPLOAD, (witness,), self._receive_witness, senders=clients, once=False, required=False),
            Step(CHALLENGE, (ChallengeRequest,), self._challenge, senders=SERVER_ONLY),
            Step(PROVE, (proof,), self._receive_proof, senders=clients, once=False, required=False),
            Step(QUERY, (QueryRequest,), self._query, senders=SERVER_ONLY),
            Step(VERIFY, (VerifyRequest,), self._verify, senders=SERVER_ONLY),
            Step(EXCHANGE, (VerifierShare,), self._exchange, senders=peers, once=False),
            Step(AGGREGATE, (AggregateRequest,), self._aggregate, senders=SERVER_ONLY),
        ]

    def _wipe(self) -> None:
        for holder in (self._witnesses, self._witness_seeds, self._proofs, self._proof_seeds, self._peer_shares):
            holder.clear()
        self._own = None

    def _witness_holders(self) -> set[int]:
        return set(self._witnesses) | set(self._witness_seeds)

    def _proof_holders(self) -> set[int]:
        return set(self._proofs) | set(self._proof_seeds)

    # -- shares --------------------------------------------------------------------------------------

    def _receive_witness(self, message: Message) -> list[Message]:
        sender = client_index(message.sender)
        if isinstance(message, WitnessShare):
            length = self._run.statement.witness_length
            self._witnesses[sender] = _field_vector(message, message.vector, length, "witness share")
        else:
            self._witness_seeds[sender] = received(message, WitnessSeed).seed
        return []

    def _receive_proof(self, message: Message) -> list[Message]:
        sender = client_index(message.sender)
        if sender not in self._witness_holders():
            raise InvalidMessage(f"proof from {message.sender}, whose witness never arrived")
        if isinstance(message, ProofShare):
            length = self._run.statement.proof_length
            self._proofs[sender] = _field_vector(message, message.vector, length, "proof share")
        else:
            self._proof_seeds[sender] = received(message, ProofSeed).seed
        return []

    def _shares_of(self, client: int) -> tuple[np.ndarray, np.ndarray]:
        """(witness share, proof share) of one client, expanded from seeds on aggregators j >= 1."""
        if self.leader:
            return self._witnesses[client], self._proofs[client]
        run, statement = self._run, self._run.statement
        witness = field.expand(self._witness_seeds[client],
                               share_label("witness", run.session, run.round, client, self._index),
                               statement.witness_length)
        proof = field.expand(self._proof_seeds[client],
                             share_label("proof", run.session, run.round, client, self._index),
                             statement.proof_length)
        return witness, proof

    # -- randomness ----------------------------------------------------------------------------------

    def _challenge(self, message: Message) -> list[Message]:
        run = self._run
        self._joint_seed = os.urandom(prg.SEED_BYTES)
        clients = tuple(sorted(self._witness_holders()))
        signature = self._signing_key.sign(joint_seed_statement(run.session, run.round, self._index,
                                                                self._joint_seed))
        return [ChallengeSeed(*run.header(CHALLENGE, self.party, SERVER), clients=clients, seed=self._joint_seed,
                              signature=signature)]

    def _query(self, message: Message) -> list[Message]:
        message = received(message, QueryRequest)
        seeds = message.joint_seeds
        if len(seeds) != self._run.aggregators or seeds[self._index] != self._joint_seed:
            raise ProtocolViolation("query request does not carry this aggregator's joint seed in its place")
        self._joint_seeds = seeds
        self._query_seed = os.urandom(prg.SEED_BYTES)
        clients = tuple(sorted(self._proof_holders()))
        return [QuerySeed(*self._run.header(QUERY, self.party, SERVER), clients=clients, seed=self._query_seed)]

    # -- verification --------------------------------------------------------------------------------

    def _digest(self) -> bytes:
        run = self._run
        included = self._included if self._included is not None else ()
        return randomness_digest(run.session, run.round, included, self._joint_seeds, self._query_seeds)

    def _verify(self, message: Message) -> list[Message]:
        run = self._run
        statement = run.statement
        message = received(message, VerifyRequest)
        included, seeds = message.included, message.query_seeds
        if list(included) != sorted(set(included)) or not set(included) <= self._proof_holders():
            raise ProtocolViolation("verify request names clients twice, out of order or without a proof here")
        if len(seeds) != run.aggregators or seeds[self._index] != self._query_seed:
            raise ProtocolViolation("verify request does not carry this aggregator's query seed in its place")
        shares = []
        if included:  # R^T gamma (one pass over R) once per round, then O(d) per client
            challenge = challenge_for(run.session, run.round, self._joint_seeds)
            common = round_query(statement, run.session, run.round, challenge, seeds)
            for client in included:
                witness, proof = self._shares_of(client)
                query = query_for(statement, run.session, run.round, client, seeds, common)
                shares.append(statement.verifier_share(witness, proof, leader=self.leader, query=query))
        self._included, self._query_seeds = tuple(included), seeds
        self._own = np.concatenate(shares) if shares else _EMPTY.copy()
        digest = self._digest()
        return [VerifierShare(*run.header(EXCHANGE, self.party, aggregator_id(j)), digest=digest,
                              ring_bits=FIELD_WORD_BITS, vector=to_wire(self._own))
                for j in self._peers()]

    def _exchange(self, message: Message) -> list[Message]:
        run = self._run
        statement = run.statement
        message = received(message, VerifierShare)
        peer = aggregator_index(message.sender, run)
        if self._included is None:
            raise InvalidMessage(f"verifier share from {message.sender} before this aggregator's verify request")
        if message.digest != self._digest():
            raise InvalidMessage(f"verifier share from {message.sender} is bound to other clients or randomness")
        length = len(self._included) * statement.verifier_length
        self._peer_shares[peer] = _field_vector(message, message.vector, length, "verifier share")
        return self._decide_when_ready()

    def _decide_when_ready(self) -> list[Message]:
        run = self._run
        if self._own is None or self._included is None or len(self._peer_shares) < len(self._peers()):
            return []
        statement = run.statement
        combined = self._own
        for share in self._peer_shares.values():
            combined = field.add(combined, share)
        width = statement.verifier_length
        accepted: list[int] = []
        rejected: dict[int, Rejection] = {}
        for position, client in enumerate(self._included):
            verdict = statement.decide(combined[position * width : (position + 1) * width])
            if verdict is None:
                accepted.append(client)
            else:
                rejected[client] = verdict
        self._accepted, self._rejected = tuple(accepted), rejected
        self._peer_shares.clear()
        self._own = None
        return [VerifyReport(*run.header(VERIFY, self.party, SERVER), accepted=self._accepted,
                             rejected={client: reason.value for client, reason in rejected.items()})]

    # -- the sum -------------------------------------------------------------------------------------

    def _aggregate(self, message: Message) -> list[Message]:
        message = received(message, AggregateRequest)
        run = self._run
        included = message.included
        if self._accepted is None:
            raise ProtocolViolation("aggregation request before verification finished")
        if len(set(included)) != len(included) or not set(included) <= set(self._accepted):
            raise ProtocolViolation(f"aggregation request names clients {sorted(set(included) - set(self._accepted))} "
                                    "this aggregator did not accept, or a client twice")
        if len(included) < run.min_clients:
            raise ProtocolViolation(f"refusing to sum {len(included)} client(s); min_clients={run.min_clients}")
        statement = run.statement
        total = np.zeros(run.length, dtype=field.DTYPE)
        for client in included:
            if self.leader:
                witness = self._witnesses[client]
            else:
                witness = field.expand(self._witness_seeds[client],
                                       share_label("witness", run.session, run.round, client, self._index),
                                       statement.witness_length)
            total[:-1] = field.add(total[:-1], statement.coordinates(witness))
            total[-1:] = field.add(total[-1:], statement.weight(witness, leader=self.leader))
        return [AggregateShare(*run.header(AGGREGATE, self.party, SERVER), ring_bits=FIELD_WORD_BITS,
                               vector=to_wire(total))]

    # -- plain data ----------------------------------------------------------------------------------

    def _state_fields(self) -> StateDict:
        statement = self._run.statement
        witness_senders = sorted(self._witnesses)
        proof_senders = sorted(self._proofs)
        seed_senders, seeds = keyed(self._witness_seeds)
        proof_seed_senders, proof_seeds = keyed(self._proof_seeds)
        peers = sorted(self._peer_shares)
        rejected = sorted(self._rejected)
        del statement
        return {
            "signing-key": self._signing_key.private_bytes,
            "witness-senders": witness_senders,
            "witnesses": np.concatenate([self._witnesses[i] for i in witness_senders]) if witness_senders else _EMPTY,
            "proof-senders": proof_senders,
            "proofs": np.concatenate([self._proofs[i] for i in proof_senders]) if proof_senders else _EMPTY,
            "witness-seed-senders": seed_senders, "witness-seeds": seeds,
            "proof-seed-senders": proof_seed_senders, "proof-seeds": proof_seeds,
            "joint-seed": self._joint_seed, "joint-seeds": list(self._joint_seeds),
            "query-seed": self._query_seed, "query-seeds": list(self._query_seeds),
            "verifying": self._included is not None,
            "included": list(self._included or ()),
            "own": self._own if self._own is not None else _EMPTY,
            "has-own": self._own is not None,
            "peers": peers,
            "peer-shares": np.concatenate([self._peer_shares[j] for j in peers]) if peers else _EMPTY,
            "decided": self._accepted is not None,
            "accepted": list(self._accepted or ()),
            "rejected": rejected,
            "reasons": [self._rejected[i].value for i in rejected],
        }

    def _restore_fields(self, reader: StateReader) -> None:
        run = self._run
        statement = run.statement
        last = run.clients - 1

        def vectors(senders_key: str, key: str, length: int) -> dict[int, np.ndarray]:
            senders = reader.integers(senders_key, minimum=0, maximum=last)
            values = reader.vector(key, dtype=field.DTYPE, length=len(senders) * length)
            reader.require(field.is_canonical(values), f"{key} hold elements outside F_p")
            return {i: values[k * length : (k + 1) * length] for k, i in enumerate(senders)}

        self._witnesses = vectors("witness-senders", "witnesses", statement.witness_length)
        self._proofs = vectors("proof-senders", "proofs", statement.proof_length)
        self._witness_seeds = reader.keyed_blobs("witness-seed-senders", "witness-seeds", maximum=last,
                                                 size=prg.SEED_BYTES)
        self._proof_seeds = reader.keyed_blobs("proof-seed-senders", "proof-seeds", maximum=last,
                                               size=prg.SEED_BYTES)
        reader.require(not (self.leader and (self._witness_seeds or self._proof_seeds)), "aggregator 0 holds seeds")
        reader.require(self.leader or not (self._witnesses or self._proofs), "a seeded aggregator holds vectors")
        reader.require(self._proof_holders() <= self._witness_holders(), "holds a proof without its witness")
        self._joint_seed = reader.blob("joint-seed", sizes=(0, prg.SEED_BYTES))
        joint = reader.blobs("joint-seeds", size=prg.SEED_BYTES)
        self._query_seed = reader.blob("query-seed", sizes=(0, prg.SEED_BYTES))
        query = reader.blobs("query-seeds", size=prg.SEED_BYTES)
        for seeds in (joint, query):
            reader.require(len(seeds) in (0, run.aggregators), "holds seeds of another number of aggregators")
        self._joint_seeds, self._query_seeds = tuple(joint), tuple(query)
        reader.require(not joint or joint[self._index] == self._joint_seed,
                       "holds joint seeds without its own in its place")
        reader.require(not query or query[self._index] == self._query_seed,
                       "holds query seeds without its own in its place")
        verifying = reader.boolean("verifying")
        included = reader.integers("included", minimum=0, maximum=last)
        reader.require(verifying or not included, "lists verified clients before verification")
        self._included = tuple(included) if verifying else None
        has_own = reader.boolean("has-own")
        own = reader.vector("own", dtype=field.DTYPE, length=len(included) * statement.verifier_length if has_own
                            else 0)
        self._own = own if has_own else None
        peers = reader.integers("peers", minimum=0, maximum=run.aggregators - 1)
        reader.require(self._index not in peers, "holds a verifier share from itself")
        width = len(included) * statement.verifier_length
        peer_values = reader.vector("peer-shares", dtype=field.DTYPE, length=len(peers) * width)
        reader.require(field.is_canonical(own) and field.is_canonical(peer_values),
                       "holds verifier shares outside F_p")
        reader.require(verifying or not (has_own or peers), "holds verifier shares before verification")
        self._peer_shares = {j: peer_values[k * width : (k + 1) * width] for k, j in enumerate(peers)}
        decided = reader.boolean("decided")
        accepted = reader.integers("accepted", minimum=0, maximum=last)
        rejected = reader.integers("rejected", minimum=0, maximum=last)
        reasons = reader.texts("reasons")
        reader.require(len(reasons) == len(rejected) and all(r in _REASONS for r in reasons),
                       "has rejections without a known reason")
        reader.require(decided or not (accepted or rejected), "has verdicts before deciding")
        reader.require(verifying or not decided, "decided before it verified")
        reader.require(set(accepted) | set(rejected) == (set(included) if decided else set()),
                       "has verdicts for other clients than those it verified")
        reader.require(not set(accepted) & set(rejected), "both accepted and rejected a client")
        self._accepted = tuple(accepted) if decided else None
        self._rejected = {i: Rejection(r) for i, r in zip(rejected, reasons)}
        holds = self._witness_holders() or self._own is not None or self._peer_shares
        reader.require(self._active or not holds, "holds shares after it stopped")


# -- the server ---------------------------------------------------------------------------------------


class Server(ServerEngine):
    """Relays the aggregators' seeds, keeps only clients every aggregator holds, releases the accepted sum."""

    STATE_KIND = "validated-sharing/server"
    _run: ValidatedRun

    def __init__(self, run: ValidatedRun) -> None:
        self._aggregators = [aggregator_id(j) for j in range(run.aggregators)]
        self._holders: dict[str, tuple[int, ...]] = {}
        self._seeds: dict[str, bytes] = {}
        self._signatures: dict[str, bytes] = {}
        self._joint_seeds: tuple[bytes, ...] = ()
        self._joint_signatures: tuple[bytes, ...] = ()
        self._witnessed: tuple[int, ...] = ()
        self._proved: tuple[int, ...] = ()
        self._reports: dict[str, tuple[tuple[int, ...], dict[int, str]]] = {}
        self._accepted: tuple[int, ...] = ()
        self._rejected: dict[int, Rejection] = {}
        self._sums: dict[str, np.ndarray] = {}
        super().__init__(SERVER, run)

    @classmethod
    def _restore_engine(cls, party: str, run: RunParameters, reader: StateReader) -> Server:
        return cls(checked_run(run))

    def _steps(self) -> list[Step]:
        return [
            Step(UPLOAD, begin=self._request_upload),
            Step(CHALLENGE, (ChallengeSeed,), self._receive_seed, begin=self._request_challenge,
                 end=self._close_challenge),
            Step(PROVE, begin=self._request_proofs),
            Step(QUERY, (QuerySeed,), self._receive_seed, begin=self._request_query, end=self._close_query),
            Step(VERIFY, (VerifyReport,), self._receive_report, begin=self._request_verify, end=self._close_verify),
            Step(EXCHANGE, begin=self._nothing),
            Step(AGGREGATE, (AggregateShare,), self._receive_sum, begin=self._request_sums, end=self._close_sums),
        ]

    def _request_upload(self) -> list[Message]:
        run = self._run
        return [UploadRequest(*run.header(UPLOAD, SERVER, client_id(i))) for i in range(run.clients)]

    def _request_challenge(self) -> list[Message]:
        self._holders, self._seeds, self._signatures = {}, {}, {}
        return [ChallengeRequest(*self._run.header(CHALLENGE, SERVER, a)) for a in self._aggregators]

    def _receive_seed(self, message: Message) -> list[Message]:
        if not isinstance(message, (ChallengeSeed, QuerySeed)):
            raise InvalidMessage(f"expected an aggregator's seed; found {type(message).__name__}")
        run = self._run
        clients = message.clients
        if list(clients) != sorted(set(clients)) or any(not 0 <= i < run.clients for i in clients):
            raise InvalidMessage(f"{message.sender} lists unknown clients, or a client twice")
        if isinstance(message, ChallengeSeed):  # the clients check it too; an honest server refuses a bad one first
            index = aggregator_index(message.sender, run)
            verify_signature(run.aggregator_keys[index], message.signature,
                             joint_seed_statement(run.session, run.round, index, message.seed))
            self._signatures[message.sender] = message.signature
        self._holders[message.sender], self._seeds[message.sender] = tuple(clients), message.seed
        return []

    def _common(self, phase: str, among: tuple[int, ...] | None) -> tuple[int, ...]:
        run = self._run
        if len(self._holders) < len(self._aggregators):
            raise ProtocolAbort(f"phase {phase!r}: {len(self._holders)} of {len(self._aggregators)} "
                                "aggregators answered")
        common = set.intersection(*(set(h) for h in self._holders.values()))
        if among is not None:
            common &= set(among)
        if len(common) < run.min_clients:
            raise ProtocolAbort(f"phase {phase!r}: {len(common)} client(s) reached every aggregator; "
                                f"min_clients={run.min_clients}")
        return tuple(sorted(common))

    def _close_challenge(self) -> None:
        self._witnessed = self._common(CHALLENGE, None)
        self._joint_seeds = tuple(self._seeds[a] for a in self._aggregators)
        self._joint_signatures = tuple(self._signatures[a] for a in self._aggregators)

    def _request_proofs(self) -> list[Message]:
        run = self._run
        return [ProveRequest(*run.header(PROVE, SERVER, client_id(i)), joint_seeds=self._joint_seeds,
                             signatures=self._joint_signatures) for i in self._witnessed]

    def _request_query(self) -> list[Message]:
        self._holders, self._seeds, self._signatures = {}, {}, {}
        return [QueryRequest(*self._run.header(QUERY, SERVER, a), joint_seeds=self._joint_seeds)
                for a in self._aggregators]

    def _close_query(self) -> None:
        self._proved = self._common(QUERY, self._witnessed)

    def _request_verify(self) -> list[Message]:
        seeds = tuple(self._seeds[a] for a in self._aggregators)
        return [VerifyRequest(*self._run.header(VERIFY, SERVER, a), included=self._proved, query_seeds=seeds)
                for a in self._aggregators]

    def _receive_report(self, message: Message) -> list[Message]:
        message = received(message, VerifyReport)
        accepted, rejected = message.accepted, message.rejected
        if list(accepted) != sorted(set(accepted)) or set(accepted) | set(rejected) != set(self._proved) \
                or set(accepted) & set(rejected) or any(r not in _REASONS for r in rejected.values()):
            raise InvalidMessage(f"report from {message.sender} does not sort the verified clients into accepted "
                                 "and rejected with known reasons")
        self._reports[message.sender] = (tuple(accepted), dict(rejected))
        return []

    def _close_verify(self) -> None:
        run = self._run
        if len(self._reports) < len(self._aggregators):
            raise ProtocolAbort(f"phase 'verify': {len(self._reports)} of {len(self._aggregators)} aggregators "
                                "answered")
        verdicts = {(accepted, tuple(sorted(rejected.items()))) for accepted, rejected in self._reports.values()}
        if len(verdicts) != 1:
            raise ProtocolAbort("phase 'verify': the aggregators reached different verdicts")
        accepted, rejected = next(iter(self._reports.values()))
        if len(accepted) < run.min_clients:
            raise ProtocolAbort(f"phase 'verify': {len(accepted)} client(s) passed verification; "
                                f"min_clients={run.min_clients}")
        self._accepted = accepted
        self._rejected = {client: Rejection(reason) for client, reason in sorted(rejected.items())}

    @staticmethod
    def _nothing() -> list[Message]:
        """The aggregators' exchange took place inside 'verify': the server asks nothing."""
        return []

    def _request_sums(self) -> list[Message]:
        return [AggregateRequest(*self._run.header(AGGREGATE, SERVER, a), included=self._accepted)
                for a in self._aggregators]

    def _receive_sum(self, message: Message) -> list[Message]:
        message = received(message, AggregateShare)
        self._sums[message.sender] = _field_vector(message, message.vector, self._run.length, "aggregate share")
        return []

    def _close_sums(self) -> None:
        if len(self._sums) < len(self._aggregators):
            raise ProtocolAbort(f"phase 'aggregate': {len(self._sums)} of {len(self._aggregators)} aggregators "
                                "answered")

    def _aggregate(self) -> ValidatedAggregate:
        run = self._run
        total = np.zeros(run.length, dtype=field.DTYPE)
        for share in self._sums.values():
            total = field.add(total, share)
        signed = field.to_signed(total)
        ring_total = ring.from_signed(signed, run.ring_bits)
        return ValidatedAggregate(total=ring_total, included=self._accepted, rejected=dict(self._rejected))

    # -- plain data ------------------------------------------------------------------------------------

    def _state_fields(self) -> StateDict:
        holders = sorted(self._holders)
        reporters = sorted(self._reports)
        summers = sorted(self._sums)
        rejected = sorted(self._rejected)
        return {
            "holders": holders,
            "holder-sizes": [len(self._holders[a]) for a in holders],
            "holder-clients": [i for a in holders for i in self._holders[a]],
            "seed-holders": sorted(self._seeds),
            "seeds": [self._seeds[a] for a in sorted(self._seeds)],
            "signature-holders": sorted(self._signatures),
            "signatures": [self._signatures[a] for a in sorted(self._signatures)],
            "joint-seeds": list(self._joint_seeds),
            "joint-signatures": list(self._joint_signatures),
            "witnessed": list(self._witnessed),
            "proved": list(self._proved),
            "reporters": reporters,
            "report-accepted-sizes": [len(self._reports[a][0]) for a in reporters],
            "report-accepted": [i for a in reporters for i in self._reports[a][0]],
            "report-rejected-sizes": [len(self._reports[a][1]) for a in reporters],
            "report-rejected": [i for a in reporters for i in sorted(self._reports[a][1])],
            "report-reasons": [self._reports[a][1][i] for a in reporters for i in sorted(self._reports[a][1])],
            "accepted": list(self._accepted),
            "rejected": rejected,
            "reasons": [self._rejected[i].value for i in rejected],
            "summers": summers,
            "sums": np.concatenate([self._sums[a] for a in summers]) if summers else _EMPTY,
        }

    def _restore_fields(self, reader: StateReader) -> None:
        run = self._run
        last = run.clients - 1
        aggregators = set(self._aggregators)

        def parties(key: str) -> list[str]:
            names = reader.texts(key)
            reader.require(names == sorted(set(names)) and set(names) <= aggregators,
                           f"{key} must list aggregators of this run once each, in order")
            return names

        def grouped(names: list[str], sizes_key: str, values_key: str) -> list[list[int]]:
            sizes = reader.integers(sizes_key, minimum=0, maximum=run.clients, increasing=False)
            values = reader.integers(values_key, minimum=0, maximum=last, increasing=False)
            reader.require(len(sizes) == len(names) and sum(sizes) == len(values), f"{values_key} has the wrong size")
            groups, start = [], 0
            for size in sizes:
                group = values[start : start + size]
                reader.require(group == sorted(set(group)), f"{values_key} lists a client twice or out of order")
                groups.append(group)
                start += size
            return groups

        holders = parties("holders")
        self._holders = {a: tuple(g) for a, g in zip(holders, grouped(holders, "holder-sizes", "holder-clients"))}
        seed_holders = parties("seed-holders")
        seeds = reader.blobs("seeds", size=prg.SEED_BYTES)
        reader.require(len(seeds) == len(seed_holders), "has seeds of the wrong count")
        self._seeds = dict(zip(seed_holders, seeds))
        signature_holders = parties("signature-holders")
        signatures = reader.blobs("signatures", size=SIGNATURE_BYTES)
        reader.require(len(signatures) == len(signature_holders) and set(signature_holders) <= set(seed_holders),
                       "has signatures of the wrong count, or without their seeds")
        self._signatures = dict(zip(signature_holders, signatures))
        joint = reader.blobs("joint-seeds", size=prg.SEED_BYTES)
        joint_signatures = reader.blobs("joint-signatures", size=SIGNATURE_BYTES)
        reader.require(len(joint) in (0, run.aggregators) and len(joint_signatures) == len(joint),
                       "holds joint seeds of another number of aggregators, or without their signatures")
        self._joint_seeds, self._joint_signatures = tuple(joint), tuple(joint_signatures)
        self._witnessed = tuple(reader.integers("witnessed", minimum=0, maximum=last))
        self._proved = tuple(reader.integers("proved", minimum=0, maximum=last))
        reporters = parties("reporters")
        accepted_groups = grouped(reporters, "report-accepted-sizes", "report-accepted")
        rejected_groups = grouped(reporters, "report-rejected-sizes", "report-rejected")
        reasons = reader.texts("report-reasons")
        reader.require(len(reasons) == sum(len(g) for g in rejected_groups) and all(r in _REASONS for r in reasons),
                       "has report reasons of the wrong count or kind")
        self._reports, start = {}, 0
        for reporter, accepted, rejected in zip(reporters, accepted_groups, rejected_groups):
            self._reports[reporter] = (tuple(accepted), dict(zip(rejected, reasons[start : start + len(rejected)])))
            start += len(rejected)
        self._accepted = tuple(reader.integers("accepted", minimum=0, maximum=last))
        rejected = reader.integers("rejected", minimum=0, maximum=last)
        final_reasons = reader.texts("reasons")
        reader.require(len(final_reasons) == len(rejected) and all(r in _REASONS for r in final_reasons),
                       "has rejections without a known reason")
        self._rejected = {i: Rejection(r) for i, r in zip(rejected, final_reasons)}
        summers = parties("summers")
        sums = reader.vector("sums", dtype=field.DTYPE, length=len(summers) * run.length)
        reader.require(field.is_canonical(sums), "sums hold elements outside F_p")
        self._sums = {a: sums[k * run.length : (k + 1) * run.length] for k, a in enumerate(summers)}
