"""The three engines of BFV summation: client, server, decryptor (the key holder).

Clients hold only the public context; the server adds the ciphertexts it
receives slot by slot into the running aggregate, Enc(a) + Enc(b) =
Enc(a + b mod t), without reading them (RLWE); the decryptor holds the
secret key and sees nothing but the aggregate. The phases and the key
holder's rules are the shared homomorphic engines'
(``securefl.protocols.homomorphic.engines``); this module is the arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from securefl.errors import ConfigurationError, InvalidMessage, ProtocolViolation
from securefl.protocols.base import RunParameters
from securefl.protocols.homomorphic.engines import (
    HomomorphicClient,
    HomomorphicDecryptor,
    HomomorphicMessages,
    HomomorphicRun,
    HomomorphicServer,
    checked_run,
)
from securefl.protocols.lattice.keys import LatticeKeyHolder, encrypt_vector, load_ciphertexts, serialize_ciphertexts
from securefl.protocols.lattice.messages import DecryptedSum, DecryptRequest, EncryptedUpload, UploadRequest
from securefl.protocols.lattice.parameters import BFVParameters
from securefl.protocols.state import StateReader

__all__ = ["BFVRun"]

_MESSAGES = HomomorphicMessages(UploadRequest, EncryptedUpload, DecryptRequest, DecryptedSum)
_LIBRARY_ERRORS = (ValueError, RuntimeError, TypeError)


@dataclass(frozen=True)
class BFVRun(HomomorphicRun):
    """What every engine of one run shares: public parameters only (never the secret key).

    ``ciphertexts`` = ceil((D + 1) / N): D coordinates and one contribution
    counter (each client puts a 1 there); ``bound`` = B, the largest |x| of
    one encoded coordinate.
    """

    parameters: BFVParameters
    bound: int
    public_context: Any = field(compare=False, repr=False)

    def _identity(self) -> tuple[bytes | str | int, ...]:
        parameters = self.parameters
        return (*super()._identity(), parameters.poly_modulus_degree, parameters.plain_modulus,
                len(parameters.coeff_mod_bit_sizes), *parameters.coeff_mod_bit_sizes, self.bound)


def _bfv_run(run: RunParameters) -> BFVRun:
    return checked_run(run, BFVRun, "BFV")


class _Client(HomomorphicClient[BFVRun]):
    STATE_KIND = "bfv/client"
    MESSAGES = _MESSAGES

    @classmethod
    def _restore_engine(cls, party: str, run: RunParameters, reader: StateReader) -> _Client:
        run = _bfv_run(run)
        return cls(cls._index_of(party, run), run)

    def _check_input(self, signed: np.ndarray) -> np.ndarray:
        bound = self._run.bound
        largest = int(np.abs(signed).max()) if signed.size else 0
        if largest > bound:
            raise ConfigurationError(
                f"{self.party} input has a coordinate of magnitude {largest} > {bound}, the encoding's bound "
                f"max_weight x (2^(value_bits-1) - 1): a sum of max_clients such values could wrap modulo t"
            )
        return signed

    def _encrypt(self, values: np.ndarray) -> tuple[bytes, ...]:
        run = self._run
        return tuple(encrypt_vector(run.public_context, values, run.parameters.slots))


class _Server(HomomorphicServer[BFVRun]):
    STATE_KIND = "bfv/server"
    MESSAGES = _MESSAGES

    @classmethod
    def _restore_engine(cls, party: str, run: RunParameters, reader: StateReader) -> _Server:
        return cls(_bfv_run(run))

    def _load(self, data: Any, *, what: str) -> list[Any]:
        run = self._run
        loaded: list[Any] = load_ciphertexts(data, run.public_context, run.parameters, length=run.values, what=what)
        return loaded

    def _add(self, aggregate: list[Any], ciphertexts: list[Any], *, what: str) -> list[Any]:
        # Slot by slot: Enc(a) + Enc(b) = Enc(a + b mod t); new objects, so a refusal leaves the aggregate as it was.
        try:
            return [a + c for a, c in zip(aggregate, ciphertexts)]
        except _LIBRARY_ERRORS as error:
            raise InvalidMessage(f"{what} cannot be added to the aggregate ({error})") from None

    def _dump(self, ciphertexts: Any) -> tuple[bytes, ...]:
        return serialize_ciphertexts(ciphertexts)

    def _stored_aggregate(self, reader: StateReader) -> list[bytes]:
        stored: list[bytes] = reader.blobs("aggregate")
        return stored


class _Decryptor(HomomorphicDecryptor[BFVRun]):
    """Holds the ``LatticeKeyHolder``'s secret key (the rules are the shared decryptor's)."""

    STATE_KIND = "bfv/decryptor"
    MESSAGES = _MESSAGES
    KEY_HOLDER = LatticeKeyHolder
    CAPACITY = "the plaintext slots (modulo t)"
    INPUTS = "bounded inputs"

    @classmethod
    def _restore_engine(cls, party: str, run: RunParameters, reader: StateReader) -> _Decryptor:
        return cls(_bfv_run(run), None)

    def _load_aggregate(self, data: Any) -> list[Any]:
        run = self._run
        loaded: list[Any] = load_ciphertexts(data, self._keys.secret_context, run.parameters, length=run.values,
                                             what="decryption request")
        return loaded

    def _decrypt_sums(self, aggregate: Any, count: int) -> np.ndarray | None:
        try:
            sums = np.concatenate([np.asarray(vector.decrypt(), dtype=np.int64) for vector in aggregate])
        except _LIBRARY_ERRORS as error:
            raise ProtocolViolation(f"the aggregate does not decrypt ({error}); nothing is released") from None
        # Slots are centred modulo t; an honest sum of ``count`` inputs has |x| <= count B.
        if sums.size and int(np.abs(sums[:-1]).max(initial=0)) > count * self._run.bound:
            return None
        return sums
