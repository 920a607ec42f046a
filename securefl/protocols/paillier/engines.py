"""The messages and the three engines of packed Paillier summation.

Phases: ``upload`` (server -> client request; client -> server packed
ciphertexts, multiplied into the running aggregate as they arrive) and
``decrypt`` (server -> decryptor: the aggregate and the included clients;
decryptor -> server: the ring sum). Clients hold only the public key; the
decryptor holds the ``KeyHolder`` and sees nothing but the aggregate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import gmpy2
import numpy as np
import phe

from securefl import ring
from securefl.errors import InvalidMessage, ProtocolAbort, ProtocolViolation
from securefl.protocols.base import (
    SERVER,
    ClientEngine,
    Engine,
    Message,
    RingAggregate,
    RingVector,
    RunParameters,
    ServerEngine,
    check_vector,
    client_id,
    client_index,
    expect,
)
from securefl.protocols.paillier.keys import (
    KeyHolder,
    ciphertext_bytes,
    ciphertexts_from_bytes,
    ciphertexts_to_bytes,
    key_id,
)
from securefl.protocols.paillier.obfuscators import ObfuscatorPool
from securefl.protocols.paillier.packing import SlotLayout

if TYPE_CHECKING:
    from securefl.protocols.paillier.protocol import Paillier

__all__ = [
    "UPLOAD",
    "DECRYPT",
    "DECRYPTOR",
    "UploadRequest",
    "EncryptedUpload",
    "DecryptRequest",
    "DecryptedSum",
]

UPLOAD, DECRYPT = "upload", "decrypt"
DECRYPTOR = "decryptor"
_INCONSISTENT = "the aggregate does not decrypt to a sum of {count} packed inputs; nothing is released"


@dataclass(frozen=True)
class UploadRequest(Message):
    """Server -> client: encrypt and send your input."""

    KIND = "paillier/upload-request"


@dataclass(frozen=True)
class EncryptedUpload(Message):
    """Client -> server: ceil((D + 1) / slots) packed ciphertexts, each |n^2| bytes big-endian."""

    KIND = "paillier/encrypted-upload"
    key_id: bytes
    length: int
    ciphertexts: bytes


@dataclass(frozen=True)
class DecryptRequest(Message):
    """Server -> decryptor: the product of the included clients' ciphertexts, and who they are."""

    KIND = "paillier/decrypt-request"
    key_id: bytes
    included: tuple[int, ...]
    length: int
    ciphertexts: bytes


@dataclass(frozen=True)
class DecryptedSum(Message):
    """Decryptor -> server: sum over the included clients of their vectors, in Z_2^k."""

    KIND = "paillier/decrypted-sum"
    ring_bits: int
    vector: RingVector


@dataclass(frozen=True)
class _Run(RunParameters):
    """What every engine of one run shares: public parameters only (never the private key)."""

    protocol: "Paillier"
    public_key: phe.PaillierPublicKey

    def __post_init__(self) -> None:
        layout: SlotLayout = self.protocol.layout
        derived = {
            "key_id": key_id(self.public_key),
            "layout": layout,
            # D coordinates + one contribution counter (each client packs a 1 there).
            "ciphertexts": layout.plaintexts(self.length + 1),
            "width": ciphertext_bytes(self.public_key),
        }
        for name, value in derived.items():
            object.__setattr__(self, name, value)


class _Client(ClientEngine):
    def __init__(self, index: int, run: _Run, pool: ObfuscatorPool) -> None:
        self.party = client_id(index)
        self._run = run
        self._pool = pool
        self._values: np.ndarray | None = None
        self._sent = False

    def provide_input(self, vector: np.ndarray) -> None:
        run = self._run
        check_vector(vector, length=run.length, ring_bits=run.ring_bits)
        signed = ring.to_signed(vector, run.ring_bits)
        values = np.empty(run.length + 1, dtype=np.int64)
        values[:-1] = run.layout.check(signed, what=f"{self.party} input coordinate")
        values[-1] = 1
        self._values = values

    def handle(self, message: Message) -> list[Message]:
        run = self._run
        expect(message, UploadRequest, session=run.session, round=run.round, phase=UPLOAD,
               recipient=self.party, senders=(SERVER,))
        if self._sent:
            raise ProtocolViolation(f"{self.party} already sent its ciphertexts in this session")
        if self._values is None:
            raise ProtocolAbort(f"{self.party} has no input to encrypt")
        self._sent = True
        plaintexts = run.layout.encode(self._values)
        self._values = None
        obfuscators = self._pool.take(len(plaintexts))
        n = gmpy2.mpz(run.public_key.n)
        nsquare = gmpy2.mpz(run.public_key.nsquare)
        # (1 + n)^m = 1 + n m (mod n^2), so E(m) = (1 + n m) y mod n^2.
        ciphertexts = [(n * m + 1) * y % nsquare for m, y in zip(plaintexts, obfuscators)]
        obfuscators.clear()
        body = ciphertexts_to_bytes(ciphertexts, run.public_key)
        return [EncryptedUpload(*run.header(UPLOAD, self.party, SERVER), key_id=run.key_id, length=run.length,
                                ciphertexts=body)]


class _Server(ServerEngine):
    def __init__(self, run: _Run) -> None:
        self.party = SERVER
        self._run = run
        self._client_ids = [client_id(i) for i in range(run.clients)]
        self._aggregate: list | None = None
        self._uploaded: list[int] = []
        self._sum: np.ndarray | None = None
        self._requested = False

    def begin_phase(self, phase: str) -> list[Message]:
        run = self._run
        if phase == UPLOAD:
            return [UploadRequest(*run.header(UPLOAD, SERVER, party)) for party in self._client_ids]
        if phase == DECRYPT and self._aggregate is not None and not self._requested:
            self._requested = True
            body = ciphertexts_to_bytes(self._aggregate, run.public_key)
            return [DecryptRequest(*run.header(DECRYPT, SERVER, DECRYPTOR), key_id=run.key_id,
                                   included=tuple(sorted(self._uploaded)), length=run.length, ciphertexts=body)]
        raise ProtocolAbort(f"phase {phase!r} cannot begin now")

    def handle(self, message: Message) -> list[Message]:
        if message.phase == DECRYPT:
            return self._receive_sum(message)
        run = self._run
        expect(message, EncryptedUpload, session=run.session, round=run.round, phase=UPLOAD,
               recipient=SERVER, senders=self._client_ids)
        index = client_index(message.sender)
        if index in self._uploaded:
            raise InvalidMessage(f"duplicate upload from {message.sender}")
        if self._requested:
            raise InvalidMessage(f"upload from {message.sender} arrived after the decryption request")
        if message.key_id != run.key_id:
            raise InvalidMessage(f"upload from {message.sender} is under another key (key id {message.key_id.hex()})")
        if message.length != run.length:
            raise InvalidMessage(
                f"upload from {message.sender} is for {message.length} coordinates; expected {run.length}"
            )
        values = ciphertexts_from_bytes(message.ciphertexts, run.public_key, count=run.ciphertexts,
                                        what=f"upload from {message.sender}")
        if self._aggregate is None:
            self._aggregate = values
        else:
            # Homomorphic addition: E(a) E(b) = E(a + b) (mod n^2).
            nsquare = gmpy2.mpz(run.public_key.nsquare)
            self._aggregate = [a * c % nsquare for a, c in zip(self._aggregate, values)]
        self._uploaded.append(index)
        return []

    def _receive_sum(self, message: Message) -> list[Message]:
        run = self._run
        expect(message, DecryptedSum, session=run.session, round=run.round, phase=DECRYPT,
               recipient=SERVER, senders=(DECRYPTOR,))
        if self._sum is not None:
            raise InvalidMessage(f"duplicate decrypted sum from {message.sender}")
        if message.ring_bits != run.ring_bits or message.vector.size != run.length:
            raise InvalidMessage(f"decrypted sum from {message.sender} has the wrong ring or length")
        self._sum = message.vector
        return []

    def end_phase(self, phase: str) -> None:
        minimum = self._run.protocol.min_clients
        if phase == UPLOAD and len(self._uploaded) < minimum:
            raise ProtocolAbort(
                f"phase 'upload': {len(self._uploaded)} of {self._run.clients} client(s) uploaded; "
                f"min_clients={minimum}"
            )
        if phase == DECRYPT and self._sum is None:
            raise ProtocolAbort("phase 'decrypt': the decryptor did not answer")

    def result(self) -> RingAggregate:
        if self._sum is None:
            raise ProtocolAbort("the aggregation has not completed")
        return RingAggregate(total=self._sum, included=tuple(sorted(self._uploaded)))


class _Decryptor(Engine):
    """Holds the private key; decrypts one aggregate of >= min_clients clients per (session, round)."""

    def __init__(self, run: _Run, keys: KeyHolder) -> None:
        self.party = DECRYPTOR
        self._run = run
        self._keys = keys

    def handle(self, message: Message) -> list[Message]:
        run = self._run
        protocol = run.protocol
        expect(message, DecryptRequest, session=run.session, round=run.round, phase=DECRYPT,
               recipient=self.party, senders=(SERVER,))
        if message.key_id != self._keys.key_id:
            raise InvalidMessage(f"decryption request is under another key (key id {message.key_id.hex()})")
        if message.length != run.length:
            raise InvalidMessage(f"decryption request is for {message.length} coordinates; expected {run.length}")
        included = message.included
        count = len(included)
        if len(set(included)) != count:
            raise ProtocolViolation("decryption request lists a client twice")
        if any(not 0 <= i < run.clients for i in included):
            raise ProtocolViolation(f"decryption request names clients outside [0, {run.clients})")
        if count < protocol.min_clients:
            raise ProtocolViolation(
                f"refusing to decrypt an aggregate of {count} client(s); min_clients={protocol.min_clients}"
            )
        if count > protocol.encoding.max_clients:
            raise ProtocolViolation(
                f"refusing to decrypt an aggregate of {count} clients; the slots hold sums of at most "
                f"max_clients={protocol.encoding.max_clients}"
            )
        values = ciphertexts_from_bytes(message.ciphertexts, run.public_key, count=run.ciphertexts,
                                        what="decryption request")
        # One decryption per (session, round), claimed before decrypting: a request that fails
        # a check below still uses it up, so the server gets no retries to probe with.
        if not self._keys.claim(run.session, run.round):
            raise ProtocolViolation("already decrypted an aggregate for this session and round")
        plaintexts = self._keys.decrypt_raw(values, workers=protocol.workers)
        sums = run.layout.decode(plaintexts, length=run.length + 1, terms=count)
        if sums is None or int(sums[-1]) != count:
            raise ProtocolViolation(_INCONSISTENT.format(count=count))
        total = ring.from_signed(sums[:-1], run.ring_bits)
        return [DecryptedSum(*run.header(DECRYPT, self.party, SERVER), ring_bits=run.ring_bits, vector=total)]
