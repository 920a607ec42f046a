"""The three engines of packed Paillier summation: client, server, decryptor.

Clients hold only the public key; the server multiplies the ciphertexts it
receives into the running aggregate; the decryptor holds the ``KeyHolder``
and sees nothing but the aggregate, which it decrypts only for at least
``min_clients`` contributions, once per (session, round). The phases and
the key holder's rules are the shared homomorphic engines'
(``securefl.protocols.homomorphic.engines``); this module is the arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gmpy2
import numpy as np
import phe

from securefl.protocols.base import RunParameters
from securefl.protocols.homomorphic.engines import (
    HomomorphicClient,
    HomomorphicDecryptor,
    HomomorphicMessages,
    HomomorphicRun,
    HomomorphicServer,
    checked_run,
)
from securefl.protocols.paillier.keys import KeyHolder, ciphertext_bytes, ciphertexts_from_bytes, ciphertexts_to_bytes
from securefl.protocols.paillier.messages import DecryptedSum, DecryptRequest, EncryptedUpload, UploadRequest
from securefl.protocols.paillier.obfuscators import Obfuscation, ObfuscatorPool
from securefl.protocols.paillier.packing import SlotLayout
from securefl.protocols.paillier.parallel import Mpz
from securefl.protocols.state import StateDict, StateReader

__all__ = ["PaillierRun"]

_MESSAGES = HomomorphicMessages(UploadRequest, EncryptedUpload, DecryptRequest, DecryptedSum)


@dataclass(frozen=True)
class PaillierRun(HomomorphicRun):
    """What every engine of one run shares: public parameters only (never the private key).

    ``ciphertexts`` = ceil((D + 1) / slots): D coordinates and one
    contribution counter (each client packs a 1 there).
    """

    public_key: phe.PaillierPublicKey
    layout: SlotLayout
    workers: int | None
    obfuscation: Obfuscation = Obfuscation()

    def _identity(self) -> tuple[bytes | str | int, ...]:
        n: int = self.public_key.n
        layout = self.layout
        return (*super()._identity(), n.to_bytes((n.bit_length() + 7) // 8, "big"), layout.bound,
                layout.max_terms, layout.plaintext_bits, self.obfuscation.kind, self.obfuscation.exponent_bits or 0)


def _paillier_run(run: RunParameters) -> PaillierRun:
    return checked_run(run, PaillierRun, "Paillier")


class _Client(HomomorphicClient[PaillierRun]):
    STATE_KIND = "paillier/client"
    MESSAGES = _MESSAGES

    def __init__(self, index: int, run: PaillierRun, pool: ObfuscatorPool) -> None:
        self._pool = pool
        super().__init__(index, run)

    @classmethod
    def _restore_engine(cls, party: str, run: RunParameters, reader: StateReader) -> _Client:
        run = _paillier_run(run)
        return cls(cls._index_of(party, run), run, ObfuscatorPool(run.public_key, run.obfuscation))

    def _state_fields(self) -> StateDict:
        # The packed values follow from the input (``_accept_input``); the obfuscators made ahead are stored.
        return {**super()._state_fields(),
                "obfuscators": ciphertexts_to_bytes(self._pool.ready(), self._run.public_key)}

    def _restore_fields(self, reader: StateReader) -> None:
        super()._restore_fields(reader)
        public_key = self._run.public_key
        data = reader.blob("obfuscators")
        width = ciphertext_bytes(public_key)
        reader.require(len(data) % width == 0, f"obfuscators must be a whole number of {width}-byte values")
        reader.require(self._active or not data, "holds obfuscators after it stopped")
        self._pool.extend(ciphertexts_from_bytes(data, public_key, count=len(data) // width,
                                                 what="stored obfuscators"))

    def _check_input(self, signed: np.ndarray) -> np.ndarray:
        return self._run.layout.check(signed, what=f"{self.party} input coordinate")

    def _wipe(self) -> None:
        super()._wipe()
        self._pool.clear()

    def _encrypt(self, values: np.ndarray) -> bytes:
        run = self._run
        plaintexts = run.layout.encode(values)
        obfuscators = self._pool.take(len(plaintexts))
        n = gmpy2.mpz(run.public_key.n)
        nsquare = gmpy2.mpz(run.public_key.nsquare)
        # (1 + n)^m = 1 + n m (mod n^2), so E(m) = (1 + n m) y mod n^2.
        ciphertexts = [(n * m + 1) * y % nsquare for m, y in zip(plaintexts, obfuscators)]
        obfuscators.clear()
        return ciphertexts_to_bytes(ciphertexts, run.public_key)


class _Server(HomomorphicServer[PaillierRun]):
    STATE_KIND = "paillier/server"
    MESSAGES = _MESSAGES

    @classmethod
    def _restore_engine(cls, party: str, run: RunParameters, reader: StateReader) -> _Server:
        return cls(_paillier_run(run))

    def _load(self, data: Any, *, what: str) -> list[Mpz]:
        run = self._run
        return ciphertexts_from_bytes(data, run.public_key, count=run.ciphertexts, what=what)

    def _add(self, aggregate: list[Mpz], ciphertexts: list[Mpz], *, what: str) -> list[Mpz]:
        # Homomorphic addition: E(a) E(b) = E(a + b) (mod n^2).
        nsquare = gmpy2.mpz(self._run.public_key.nsquare)
        return [a * c % nsquare for a, c in zip(aggregate, ciphertexts)]

    def _dump(self, ciphertexts: Any) -> bytes:
        return ciphertexts_to_bytes(ciphertexts, self._run.public_key)

    def _stored_aggregate(self, reader: StateReader) -> bytes:
        run = self._run
        return reader.blob("aggregate", sizes=(0, run.ciphertexts * ciphertext_bytes(run.public_key)))


class _Decryptor(HomomorphicDecryptor[PaillierRun]):
    """Holds the ``KeyHolder``'s private key (the rules are the shared decryptor's)."""

    STATE_KIND = "paillier/decryptor"
    MESSAGES = _MESSAGES
    KEY_HOLDER = KeyHolder
    CAPACITY = "the slots"
    INPUTS = "packed inputs"

    @classmethod
    def _restore_engine(cls, party: str, run: RunParameters, reader: StateReader) -> _Decryptor:
        return cls(_paillier_run(run), None)

    def _load_aggregate(self, data: Any) -> list[Mpz]:
        run = self._run
        return ciphertexts_from_bytes(data, run.public_key, count=run.ciphertexts, what="decryption request")

    def _decrypt_sums(self, aggregate: Any, count: int) -> np.ndarray | None:
        run = self._run
        plaintexts = self._keys.decrypt_raw(aggregate, workers=run.workers)
        sums: np.ndarray | None = run.layout.decode(plaintexts, length=run.values, terms=count)
        return sums
