"""The Paillier key pair, held by one party, and the wire form of ciphertexts.

Keys are ``phe`` objects: ``phe.PaillierPublicKey`` (n, g = n + 1) and
``phe.PaillierPrivateKey`` (p, q and the CRT constants). Key generation is
``phe.generate_paillier_keypair``, whose primes come from
``random.SystemRandom`` (the OS CSPRNG, os.urandom) and ``gmpy2.next_prime``.

Decryption is Paillier's CRT form (Paillier 1999, section 7; phe's
``raw_decrypt``), batched: for the primes s in {p, q}

    m_s = L_s(c^(s-1) mod s^2) h_s mod s,   L_s(x) = (x - 1) / s,
    m   = m_p + ((m_q - m_p) p^-1 mod q) p,

with the two exponentiations of every ciphertext computed by gmpy2 in
threads (``parallel.powmod_many``).

On the wire a ciphertext is an integer c in [1, n^2) coprime to n, written
big-endian in exactly ceil(bitlength(n^2) / 8) bytes; a vector of them is
the concatenation, so its length is checked before any value is read.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import gmpy2
import phe

from securefl import validation
from securefl.crypto.keys import context
from securefl.errors import ConfigurationError, InvalidMessage, ProtocolViolation
from securefl.protocols.homomorphic.keyholder import KEY_ID_BYTES, DecryptionRecord
from securefl.protocols.paillier.parallel import Mpz, powmod_many
from securefl.protocols.state import StateDict, StateReader
from securefl.protocols.wire import SESSION_BYTES

__all__ = [
    "MIN_KEY_BITS",
    "KeyHolder",
    "key_id",
    "ciphertext_bytes",
    "ciphertexts_to_bytes",
    "ciphertexts_from_bytes",
    "check_public_key",
]

# Small keys exist for fast tests only; 2048 bits is the smallest for real use (~112-bit security).
MIN_KEY_BITS = 256
_KEY_ID_LABEL = "securefl/paillier/key-id/v1"


def check_public_key(public_key: object) -> phe.PaillierPublicKey:
    if not isinstance(public_key, phe.PaillierPublicKey):
        raise ConfigurationError(f"expected a phe.PaillierPublicKey; found {type(public_key).__name__}")
    return public_key


def _int_bytes(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def _modulus_bytes(public_key: phe.PaillierPublicKey) -> bytes:
    n: int = public_key.n
    return n.to_bytes((n.bit_length() + 7) // 8, "big")


def key_id(public_key: phe.PaillierPublicKey) -> bytes:
    """16-byte fingerprint of a public key: SHA-256(context(label, n))[:16]."""
    check_public_key(public_key)
    return hashlib.sha256(context(_KEY_ID_LABEL, _modulus_bytes(public_key))).digest()[:KEY_ID_BYTES]


def ciphertext_bytes(public_key: phe.PaillierPublicKey) -> int:
    """Bytes of one ciphertext on the wire: ceil(bitlength(n^2) / 8)."""
    nsquare: int = check_public_key(public_key).nsquare
    return (nsquare.bit_length() + 7) // 8


def ciphertexts_to_bytes(ciphertexts: Sequence[object], public_key: phe.PaillierPublicKey) -> bytes:
    """Concatenate ciphertexts (ints or ``phe.EncryptedNumber``) at fixed width, checking each."""
    width = ciphertext_bytes(public_key)
    nsquare = public_key.nsquare
    out = bytearray()
    for index, ciphertext in enumerate(ciphertexts):
        if isinstance(ciphertext, phe.EncryptedNumber):
            if ciphertext.public_key != public_key:
                raise ConfigurationError(f"ciphertext {index} is under another public key")
            if ciphertext.exponent != 0:
                raise ConfigurationError(f"ciphertext {index} has exponent {ciphertext.exponent}; expected 0")
            value = ciphertext.ciphertext(be_secure=False)
        elif isinstance(ciphertext, (int, type(gmpy2.mpz(0)))) and not isinstance(ciphertext, bool):
            value = int(ciphertext)
        else:
            raise ConfigurationError(f"ciphertext {index} is a {type(ciphertext).__name__}; expected an int")
        if not 1 <= value < nsquare:
            raise ConfigurationError(f"ciphertext {index} is outside [1, n^2)")
        out += value.to_bytes(width, "big")
    return bytes(out)


def ciphertexts_from_bytes(data: bytes, public_key: phe.PaillierPublicKey, *, count: int, what: str) -> list[Mpz]:
    """Parse ``count`` fixed-width ciphertexts; ``InvalidMessage`` naming ``what`` on any bad one.

    Each value must lie in [1, n^2) and be coprime to n (checked at once:
    gcd(prod c mod n, n) = 1 iff every c is, then located if not).
    """
    width = ciphertext_bytes(public_key)
    if len(data) != count * width:
        raise InvalidMessage(
            f"{what} carries {len(data)} bytes of ciphertexts; expected {count} x {width} = {count * width}"
        )
    n = gmpy2.mpz(public_key.n)
    nsquare = gmpy2.mpz(public_key.nsquare)
    values = [gmpy2.mpz(int.from_bytes(data[i * width : (i + 1) * width], "big")) for i in range(count)]
    product = gmpy2.mpz(1)
    for index, value in enumerate(values):
        if not 1 <= value < nsquare:
            raise InvalidMessage(f"{what}: ciphertext {index} is outside [1, n^2)")
        product = product * value % n
    if gmpy2.gcd(product, n) != 1:
        index = next(i for i, value in enumerate(values) if gmpy2.gcd(value, n) != 1)
        raise InvalidMessage(f"{what}: ciphertext {index} is not coprime to n")
    return values


class KeyHolder:
    """The Paillier key pair of the decryptor: the only object that can decrypt.

    Threat model: whoever holds this object reads every ciphertext under its
    key; the protocol's guarantee is that the key holder is only ever sent
    aggregates, and refuses small or repeated ones (see ``Paillier``).
    """

    def __init__(self, public_key: phe.PaillierPublicKey, private_key: phe.PaillierPrivateKey) -> None:
        check_public_key(public_key)
        if not isinstance(private_key, phe.PaillierPrivateKey):
            raise ConfigurationError(f"expected a phe.PaillierPrivateKey; found {type(private_key).__name__}")
        if private_key.public_key != public_key or private_key.p * private_key.q != public_key.n:
            raise ConfigurationError("the private key does not belong to the public key")
        if public_key.n.bit_length() < MIN_KEY_BITS:
            raise ConfigurationError(f"key of {public_key.n.bit_length()} bits is below the {MIN_KEY_BITS}-bit minimum")
        self._public_key = public_key
        self._private_key = private_key
        self._key_id = key_id(public_key)
        self._decrypted = DecryptionRecord()

    @classmethod
    def generate(cls, key_bits: int = 2048) -> KeyHolder:
        """A fresh key pair with an n of exactly ``key_bits`` bits (primes from the OS CSPRNG)."""
        if not validation.is_integer(key_bits) or key_bits < MIN_KEY_BITS or key_bits % 2:
            raise ConfigurationError(f"key_bits must be an even integer >= {MIN_KEY_BITS}; found {key_bits!r}")
        public_key, private_key = phe.generate_paillier_keypair(n_length=int(key_bits))
        return cls(public_key, private_key)

    @classmethod
    def public_only(cls, public_key: phe.PaillierPublicKey) -> KeyHolder:
        """What the server and the clients hold: the public key, and no way to decrypt."""
        check_public_key(public_key)
        holder = cls.__new__(cls)
        holder._public_key = public_key
        holder._private_key = None
        holder._key_id = key_id(public_key)
        holder._decrypted = DecryptionRecord()
        return holder

    @classmethod
    def from_factors(cls, n: int, p: int, q: int) -> KeyHolder:
        """Rebuild a key pair from n = p q (e.g. from the key holder's own key store)."""
        public_key = phe.PaillierPublicKey(int(n))
        return cls(public_key, phe.PaillierPrivateKey(public_key, int(p), int(q)))

    @property
    def factors(self) -> tuple[int, int]:
        """(p, q): the private key, for the key holder's own storage. Handle as a secret."""
        return int(self._require_private().p), int(self._require_private().q)

    @property
    def can_decrypt(self) -> bool:
        return self._private_key is not None

    def _require_private(self) -> phe.PaillierPrivateKey:
        if self._private_key is None:
            raise ProtocolViolation("this party holds only the Paillier public key")
        return self._private_key

    @property
    def public_key(self) -> phe.PaillierPublicKey:
        return self._public_key

    @property
    def key_bits(self) -> int:
        n: int = self._public_key.n
        return n.bit_length()

    @property
    def key_id(self) -> bytes:
        return self._key_id

    def __repr__(self) -> str:
        return f"KeyHolder({self.key_bits}-bit key {self._key_id.hex()[:12]})"

    def state_dict(self) -> StateDict:
        """The key pair (n, p, q big-endian) and the (session, round) pairs decrypted, as plain data.

        For the key holder's own storage between processes: it holds the private key.
        """
        n = int(self._public_key.n)
        p, q = self.factors
        return {
            "n": _int_bytes(n),
            "p": _int_bytes(p),
            "q": _int_bytes(q),
            "decrypted": self._decrypted.tokens(),
        }

    @classmethod
    def from_state_dict(cls, state: Mapping[str, object]) -> KeyHolder:
        """Inverse of :meth:`state_dict`; ``InvalidMessage`` for a malformed or inconsistent state."""
        reader = StateReader(state, what="Paillier key holder")
        n, p, q = (int.from_bytes(reader.blob(name), "big") for name in ("n", "p", "q"))
        tokens = reader.blobs("decrypted", size=SESSION_BYTES + 8)
        reader.finish()
        try:
            holder = cls.from_factors(n, p, q)
        except (ConfigurationError, ValueError) as error:
            reader.fail(f"holds no valid key pair: {error}")
        holder._decrypted = DecryptionRecord.from_tokens(tokens)
        return holder

    def claim(self, session: bytes, round: int) -> bool:
        """Record one decryption for (session, round); False if one was already made (``keyholder``'s rule)."""
        return self._decrypted.claim(session, round)

    def decrypt_raw(self, ciphertexts: Sequence[object], *, workers: int | None = None) -> list[int]:
        """Plaintexts in [0, n) of raw ciphertexts (ints in [1, n^2)), by CRT; batched over threads."""
        key = self._require_private()
        nsquare = self._public_key.nsquare
        values = [int(c) for c in ciphertexts]  # type: ignore[call-overload]  # ints or gmpy2.mpz
        if any(not 1 <= c < nsquare for c in values):
            raise ConfigurationError("a ciphertext is outside [1, n^2)")
        residues = []
        for prime, square, h in ((key.p, key.psquare, key.hp), (key.q, key.qsquare, key.hq)):
            prime, h = gmpy2.mpz(prime), gmpy2.mpz(h)
            powers = powmod_many([gmpy2.mpz(c % square) for c in values], prime - 1, square, workers=workers)
            residues.append([(x - 1) // prime * h % prime for x in powers])
        p, q, p_inverse = gmpy2.mpz(key.p), gmpy2.mpz(key.q), gmpy2.mpz(key.p_inverse)
        return [int(mp + ((mq - mp) * p_inverse % q) * p) for mp, mq in zip(*residues)]

    def decrypt(self, number: phe.EncryptedNumber) -> int:
        """phe's own decryption of one ``EncryptedNumber`` (checks it is under this key)."""
        if not isinstance(number, phe.EncryptedNumber) or number.public_key != self._public_key:
            raise ConfigurationError("expected an EncryptedNumber under this key holder's public key")
        plaintext: int = self._require_private().decrypt(number)
        return plaintext
