"""The protocol each party runs over Flower: built from the run config, bound to what helpers publish.

In process, ``Protocol.setup`` makes every engine at once and may act as a
dealer: ``Paillier`` makes the key pair and gives the private key to the
decryptor engine, the public key to the others. Over Flower every party is on
its own machine, so a helper makes its own secret material and publishes only
the public part at discovery (:func:`publish`); the server and the clients
rebuild the same configuration around it (:func:`bind`) and build their own
engine alone (``run_parameters``, then ``server_engine``, ``client_engine``
or ``helper_engine``). Nothing here touches a message: the engines are the
ones the in-process simulator runs.

SecAgg with ``malicious_server=True`` deals every client's Ed25519 signing
key in process; over Flower each client node makes its own and publishes the
verification key at discovery (``Protocol.registers_client_keys``), and every
party passes the list the server relays to ``run_parameters``.

BFV is bound as Paillier is: its key holder (the ``decryptor`` party)
makes its key pair on its own node and publishes the public context
(parameters and public key, no secret key); the server and the clients
load it only after checking it carries exactly their configured parameters.

Validated sharing's aggregators send each other verifier shares: each
aggregator node makes an Ed25519 signing key and publishes its verification
key as its parameters (covered by its fingerprint), and seals what it sends
a peer to that peer's transport key, signed, as a client seals its shares.

Protocols with no dealt material (plaintext, secret sharing, SecAgg in
semi-honest mode) publish nothing and bind to themselves.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeGuard

from securefl.crypto.keys import SigningKey
from securefl.encoding import Encoding
from securefl.errors import ConfigurationError, InvalidMessage
from securefl.protocols.base import Protocol
from securefl.protocols.lattice import BFV, BFVParameters, LatticeKeyHolder  # TenSEAL is imported on first use
from securefl.protocols.validated import ValidatedSharing

__all__ = [
    "publish",
    "bind",
    "bind_peer",
    "check_supported",
    "against_malicious_server",
    "protocol_from_config",
    "ENCODING_KEYS",
]

ENCODING_KEYS = ("clip", "value_bits", "ring_bits", "max_clients", "max_weight")


try:
    import phe

    from securefl.protocols.paillier import DECRYPTOR, KeyHolder, Paillier
except ImportError:  # pragma: no cover - Paillier ships with securefl; tolerate a tree without it
    Paillier = None  # type: ignore[assignment,misc]


def _is_paillier(protocol: Protocol) -> TypeGuard[Paillier]:
    return Paillier is not None and isinstance(protocol, Paillier)


def check_supported(protocol: Protocol) -> None:
    """``ConfigurationError`` unless ``protocol`` is a securefl ``Protocol`` (every one runs over Flower)."""
    if not isinstance(protocol, Protocol):
        raise ConfigurationError(f"protocol must be a securefl Protocol; found {type(protocol).__name__}")


def against_malicious_server(protocol: Protocol, *, semi_honest_server: bool = False) -> Protocol:
    """``protocol`` as it runs over Flower: in its malicious-server mode, unless ``semi_honest_server``.

    Over Flower the ServerApp routes every message and chooses every cohort,
    so a protocol with a malicious-server mode (SecAgg's ``malicious_server``:
    signed keys, the consistency check, a threshold above 2m/3) runs in it by
    default, on the nodes and on the server alike. ``semi_honest_server=True``
    runs the protocol exactly as given: it then assumes the server follows it.
    Paillier and BFV have no such mode (their decryptor cannot tell the
    server's ciphertexts from the clients'): they need ``semi_honest_server=True``.
    """
    if not isinstance(protocol, Protocol):
        raise ConfigurationError(f"protocol must be a securefl Protocol; found {type(protocol).__name__}")
    if semi_honest_server or not dataclasses.is_dataclass(protocol):
        return protocol
    if _is_paillier(protocol):
        raise ConfigurationError(
            "Paillier's decryptor decrypts whatever product of ciphertexts the server hands it, and the server can "
            "encrypt under the public key too: it can pass one client's ciphertext off as a sum of two. Over Flower "
            "Paillier runs only against a semi-honest server: pass semi_honest_server=True on both sides"
        )
    if isinstance(protocol, BFV):
        raise ConfigurationError(
            "BFV's key holder decrypts whatever sum of ciphertexts the server hands it, and the server can encrypt "
            "under the public key too: it can pass one client's ciphertext off as a sum of two. Over Flower BFV "
            "runs only against a semi-honest server: pass semi_honest_server=True on both sides"
        )
    if getattr(protocol, "malicious_server", True) is False:
        try:
            return dataclasses.replace(protocol, malicious_server=True)  # type: ignore[type-var]
        except ConfigurationError as error:
            raise ConfigurationError(
                f"{protocol.name} runs against a malicious server over Flower and its configuration does not allow "
                f"it ({error}); fix it, or pass semi_honest_server=True to trust the server"
            ) from None
    return protocol


def publish(protocol: Protocol, party: str, *, key_dir: Path | None = None,
            signing_key: SigningKey | None = None) -> tuple[Protocol, bytes]:
    """On helper ``party``'s node: (the protocol it runs, the public parameters it publishes).

    A helper of a protocol whose helpers message each other (validated
    sharing) publishes the Ed25519 verification key of ``signing_key``, with
    which it signs what it seals to its peers.

    Paillier's decryptor makes its key pair here (``key_bits`` bits, or the
    ``key_holder`` configured on that node) and publishes the modulus n.
    With ``key_dir`` the key pair is kept in ``key_dir/paillier-<bits>.json``
    (made on first use, owner-only), so that it -- and the fingerprint clients
    pin -- survives from run to run.
    """
    if protocol.helpers_message_each_other:
        if signing_key is None:
            raise ConfigurationError(f"{protocol.name}'s helper {party!r} signs what it sends its peers: it needs a "
                                     "signing key")
        return protocol, signing_key.public_bytes
    if _is_paillier(protocol) and party == DECRYPTOR:
        holder = protocol.key_holder
        if holder is None:
            key_bits = protocol.key_bits
            if key_bits is None:  # resolved in Paillier.__post_init__
                raise ConfigurationError("the Paillier protocol has no key size")
            holder = _stored_key_holder(key_dir, key_bits) if key_dir else KeyHolder.generate(key_bits)
        bound = dataclasses.replace(protocol, key_holder=holder)
        n = holder.public_key.n
        return bound, n.to_bytes((n.bit_length() + 7) // 8, "big")
    if isinstance(protocol, BFV) and party == DECRYPTOR:
        lattice = protocol.key_holder
        if lattice is None:
            parameters = protocol.parameters
            lattice = _stored_lattice_holder(key_dir, parameters) if key_dir else LatticeKeyHolder.generate(parameters)
        return dataclasses.replace(protocol, key_holder=lattice), lattice.public_context_bytes
    return protocol, b""


def _stored_lattice_holder(key_dir: Path, parameters: BFVParameters) -> LatticeKeyHolder:
    """BFV's key pair kept in ``key_dir/bfv-<N>-<t>.key`` (SEAL's serialization of the secret context)."""
    path = Path(key_dir) / f"bfv-{parameters.poly_modulus_degree}-{parameters.plain_modulus}.key"
    if path.exists():
        return LatticeKeyHolder.from_secret_bytes(path.read_bytes(), parameters)
    holder = LatticeKeyHolder.generate(parameters)
    write_secret(path, holder.secret_bytes())  # the holder's own key pair, written once to its owner's disk
    return holder


def _stored_key_holder(key_dir: Path, key_bits: int) -> KeyHolder:
    path = Path(key_dir) / f"paillier-{key_bits}.json"
    if path.exists():
        stored = json.loads(path.read_text())
        return KeyHolder.from_factors(int(stored["n"]), int(stored["p"]), int(stored["q"]))
    holder = KeyHolder.generate(key_bits)
    p, q = holder.factors  # the holder's own key pair, written once to its owner's disk
    write_secret(path, json.dumps({"n": str(holder.public_key.n), "p": str(p), "q": str(q)}).encode())
    return holder


def write_secret(path: Path, data: bytes) -> None:
    """Write ``data`` to a new owner-only file (0600), refusing to overwrite one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)


def bind(protocol: Protocol, parameters: Mapping[str, bytes]) -> Protocol:
    """On the server and on the clients: ``protocol`` around the helpers' public parameters.

    Paillier: a key holder with the decryptor's public key only (its
    ``decrypt`` refuses), and no obfuscator precomputation in ``setup``, which
    would otherwise make every client's pool on every node. BFV: a key holder
    around the published public context, checked against this party's own
    parameters (``InvalidMessage`` for any other, or one carrying a secret key).
    Validated sharing: the verification keys its aggregators published.
    """
    if isinstance(protocol, ValidatedSharing):
        return protocol.with_aggregator_keys(parameters)
    if isinstance(protocol, BFV):
        context = parameters.get(DECRYPTOR)
        if not context:
            raise InvalidMessage("the decryptor published no BFV public context")
        return dataclasses.replace(protocol, key_holder=LatticeKeyHolder.public_only(context, protocol.parameters))
    if not _is_paillier(protocol):
        return protocol
    published = parameters.get(DECRYPTOR)
    if not published:
        raise InvalidMessage("the decryptor published no Paillier public key")
    public_key = phe.PaillierPublicKey(int.from_bytes(published, "big"))
    if public_key.n.bit_length() != protocol.key_bits:
        raise InvalidMessage(
            f"the decryptor's Paillier key has {public_key.n.bit_length()} bits; this party is configured "
            f"for key_bits={protocol.key_bits}"
        )
    return dataclasses.replace(protocol, key_holder=KeyHolder.public_only(public_key), precompute=False)


def bind_peer(protocol: Protocol, party: str, parameters: Mapping[str, bytes],
              signing_key: SigningKey | None) -> Protocol:
    """On helper ``party``'s node, for a protocol whose helpers message each other: ``protocol`` around every
    helper's published parameters (:func:`bind`) and this node's own ``signing_key``."""
    if not isinstance(protocol, ValidatedSharing):
        raise ConfigurationError(f"{protocol.name}'s helpers send each other nothing")
    if signing_key is None:
        raise InvalidMessage(f"{party} made no signing key at discovery; the server must discover it first")
    if parameters.get(party) != signing_key.public_bytes:
        raise InvalidMessage(f"the server relays another key or parameters for {party!r}, this node")
    return protocol.with_aggregator_keys(parameters).with_signing_key(party, signing_key)


def _snake(key: str) -> str:
    return key.replace("-", "_")


def protocol_from_config(config: Mapping[str, Any], *, prefix: str = "") -> Protocol:
    """Build a protocol from a Flower run config (kebab-case keys, as in ``pyproject.toml``).

    ``protocol`` names it as on the securefl command line (``plaintext``,
    ``secret-sharing``, ``secagg``, ``secagg+``, ``paillier``, ``bfv``); ``clip``,
    ``value-bits``, ``ring-bits``, ``max-clients``, ``max-weight`` make its
    ``Encoding``; every other key under ``prefix`` that names a field of the
    protocol (``aggregators``, ``neighbors``, ``threshold``, ``key-bits``,
    ``min-clients``, ...) sets that field; an empty string leaves an option
    at its default (TOML has no null). Unknown keys are ignored, since a run
    config also holds the app's own settings.
    """
    from securefl.protocols.catalog import make_protocol

    options = {
        _snake(key[len(prefix):]): value
        for key, value in config.items()
        if key.startswith(prefix) and value != ""  # "" leaves an option at the protocol's default
    }
    name = options.pop("protocol", None)
    if not isinstance(name, str):
        raise ConfigurationError(f"the run config must name a protocol ({prefix}protocol = \"secagg\"); found {name!r}")
    encoding = Encoding(**{key: options.pop(key) for key in ENCODING_KEYS if key in options})
    protocol = make_protocol(name, encoding=encoding, **options)
    if dataclasses.is_dataclass(protocol):
        fields = {f.name for f in dataclasses.fields(protocol) if f.init}
        changes = {key: value for key, value in options.items() if key in fields and getattr(protocol, key) != value}
        if changes:
            protocol = dataclasses.replace(protocol, **changes)
    return protocol
