"""Protocols by command-line name, with the options each one takes."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

from securefl.encoding import Encoding
from securefl.errors import ConfigurationError
from securefl.protocols.base import Protocol

__all__ = ["PROTOCOLS", "REQUIRES", "available", "make_protocol", "protocol_names"]


def _plaintext(encoding: Encoding, options: dict[str, Any]) -> Protocol:
    from securefl.protocols.plaintext import Plaintext

    return Plaintext(encoding=encoding)


def _secret_sharing(encoding: Encoding, options: dict[str, Any]) -> Protocol:
    from securefl.protocols.secret_sharing import SecretSharing

    return SecretSharing(aggregators=options.get("aggregators") or 2, encoding=encoding)


def _validated_sharing(encoding: Encoding, options: dict[str, Any]) -> Protocol:
    from securefl.protocols.validated import DEFAULT_NORM_BOUND, ValidatedSharing

    bound = options.get("norm_bound")
    return ValidatedSharing(norm_bound=DEFAULT_NORM_BOUND if bound is None else bound,
                            aggregators=options.get("aggregators") or 2, encoding=encoding)


def _paillier(encoding: Encoding, options: dict[str, Any]) -> Protocol:
    from securefl.protocols.paillier import Paillier

    return Paillier(encoding=encoding)


def _bfv(encoding: Encoding, options: dict[str, Any]) -> Protocol:
    from securefl.protocols.lattice import BFV

    return BFV(encoding=encoding)


def _secagg(encoding: Encoding, options: dict[str, Any]) -> Protocol:
    from securefl.protocols.secagg import SecAgg

    if options.get("neighbors") is not None:
        raise ConfigurationError(
            "secagg uses the complete graph; for k neighbours use --protocol secagg+ --neighbors K"
        )
    return SecAgg(encoding=encoding)


def _secagg_plus(encoding: Encoding, options: dict[str, Any]) -> Protocol:
    from securefl.protocols.secagg import SecAgg

    if options.get("neighbors") is None:
        raise ConfigurationError("secagg+ needs the number of neighbours per client: --neighbors K")
    return SecAgg(neighbors=options["neighbors"], encoding=encoding)


PROTOCOLS: dict[str, Callable[[Encoding, dict[str, Any]], Protocol]] = {
    "plaintext": _plaintext,
    "secret-sharing": _secret_sharing,
    "validated-sharing": _validated_sharing,
    "secagg": _secagg,
    "secagg+": _secagg_plus,
    "paillier": _paillier,
    "bfv": _bfv,
}


REQUIRES: dict[str, tuple[str, str]] = {"bfv": ("tenseal", "lattice")}
"""Protocols that need an optional extra: name -> (module, extra)."""


def available(name: str) -> bool:
    """Whether protocol ``name`` can run in this install (its optional extra, if any, is installed)."""
    required = REQUIRES.get(name)
    return required is None or importlib.util.find_spec(required[0]) is not None


def protocol_names() -> list[str]:
    """The protocols this install can run (those needing a missing extra left out)."""
    return [name for name in PROTOCOLS if available(name)]


def make_protocol(name: str, *, encoding: Encoding | None = None, **options: Any) -> Protocol:
    """Build the protocol called ``name`` (as on the command line)."""
    factory = PROTOCOLS.get(name)
    if factory is None:
        raise ConfigurationError(f"unknown protocol {name!r}; choose from {', '.join(PROTOCOLS)}")
    if not available(name):
        module, extra = REQUIRES[name]
        raise ConfigurationError(f"{name} needs {module}, which is not installed: pip install 'securefl[{extra}]'")
    return factory(encoding or Encoding(), options)
