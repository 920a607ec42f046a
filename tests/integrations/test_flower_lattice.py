"""BFV over Flower: the key holder on its own SuperNode, its public context checked, the server trusted only
when the nodes say so."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

pytest.importorskip("flwr", reason="Flower is not installed (pip install 'securefl[flower]')")
pytest.importorskip("tenseal", reason="TenSEAL is not installed (pip install 'securefl[lattice]')")

from flwr.app import RecordDict  # noqa: E402

from securefl.encoding import Encoding  # noqa: E402
from securefl.errors import ConfigurationError, InvalidMessage, ProtocolViolation  # noqa: E402
from securefl.integrations.flower import protocol_from_config, wire  # noqa: E402
from securefl.integrations.flower.binding import against_malicious_server, bind, publish  # noqa: E402
from securefl.integrations.flower.node import KEY_HOLDER_KEY  # noqa: E402
from securefl.protocols import BFV  # noqa: E402
from securefl.protocols.lattice import DECRYPTOR, LatticeKeyHolder  # noqa: E402
from tests.integrations.test_flower_driver import (  # noqa: E402
    CLIENTS,
    LENGTH,
    FlowerDriver,
    federation,
    ring_sum,
)

pytestmark = pytest.mark.flower

PROTOCOL = BFV(encoding=Encoding(max_clients=8))


def test_the_secret_key_stays_on_the_key_holder_supernode():
    grid = federation(PROTOCOL)
    driver = FlowerDriver(grid, PROTOCOL, timeout=5)
    driver.discover(min_nodes=CLIENTS + 1)

    session = bytes(range(16))
    aggregation = driver.aggregate(driver.federation.clients, vector_length=LENGTH, session=session, round=3)

    assert np.array_equal(aggregation.aggregate.total, ring_sum(range(CLIENTS)))
    server_keys = aggregation.protocol.keys
    assert not server_keys.can_decrypt
    with pytest.raises(ProtocolViolation):
        server_keys.secret_context  # noqa: B018 - the property refuses
    assert PROTOCOL.key_holder is None and "keys" not in PROTOCOL._cache  # nothing was dealt in the ServerApp
    decryptor = grid.contexts[driver.federation.helpers[DECRYPTOR]]
    stored = LatticeKeyHolder.from_state_dict(dict(decryptor.state.config_records[KEY_HOLDER_KEY]))
    assert stored.key_id == server_keys.key_id and stored.can_decrypt
    bound = wire.bound_session(session, wire.content_digest(RecordDict()))  # the session its engine ran under
    assert not stored.claim(bound, 3) and stored.claim(bound, 4)  # its decryption is on record


def test_publish_and_bind_check_the_public_context(tmp_path):
    published, context = publish(PROTOCOL, DECRYPTOR, key_dir=tmp_path)
    again, same = publish(PROTOCOL, DECRYPTOR, key_dir=tmp_path)  # kept in the key dir: the same key
    assert same == context and again.keys.key_id == published.keys.key_id
    assert [p.name for p in tmp_path.iterdir()] == [f"bfv-4096-{PROTOCOL.parameters.plain_modulus}.key"]
    assert (next(tmp_path.iterdir()).stat().st_mode & 0o077) == 0

    client = bind(PROTOCOL, {DECRYPTOR: context})
    assert client.keys.key_id == published.keys.key_id and not client.keys.can_decrypt
    with pytest.raises(InvalidMessage, match="published no BFV public context"):
        bind(PROTOCOL, {})
    with pytest.raises(InvalidMessage, match="carries a secret key"):
        bind(PROTOCOL, {DECRYPTOR: published.keys.secret_bytes()})
    other = BFV(encoding=Encoding(max_clients=16))  # another t: the context does not fit this party's parameters
    with pytest.raises(InvalidMessage, match="expected N=4096"):
        bind(other, {DECRYPTOR: context})


def test_bfv_runs_over_flower_only_against_a_semi_honest_server():
    with pytest.raises(ConfigurationError, match="semi_honest_server=True"):
        against_malicious_server(PROTOCOL)
    assert against_malicious_server(PROTOCOL, semi_honest_server=True) is PROTOCOL


def test_protocol_from_config():
    protocol = protocol_from_config({"protocol": "bfv", "max-clients": 8, "poly-modulus-degree": 8192})
    assert isinstance(protocol, BFV) and protocol.parameters.poly_modulus_degree == 8192
    assert dataclasses.replace(protocol, min_clients=3).min_clients == 3
