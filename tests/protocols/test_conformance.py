"""The conformance suite: every protocol of the catalog (and the modes the catalog does not name) run
through the same refusals of the phase machine, the codec and the single-use rule.

The cases come from ``catalog.protocol_names()``, so a protocol added to the
catalog is checked with no edit here; ``CATALOG_OPTIONS`` only gives options
a catalog entry cannot do without, and any protocol with a ``key_bits``
field is built with ``KEY_BITS`` so that the suite stays fast (one key per
protocol object, made on first use); BFV runs over a small encoding (N =
2048, 22 KB ciphertexts), and the catalog leaves it out where TenSEAL is
not installed. The checks live in ``conformance.py``; the last tests run
them on deliberately broken engines, which must fail them.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pytest

from securefl.encoding import Encoding
from securefl.errors import InvalidMessage
from securefl.protocols import catalog, plaintext
from securefl.protocols.base import EngineState, Parties, Protocol
from securefl.protocols.plaintext import Plaintext
from securefl.protocols.secagg import SecAgg
from tests.protocols import conformance

KEY_BITS = 1024
CATALOG_OPTIONS: dict[str, dict] = {
    "secagg+": {"neighbors": 2},
    # Every bit of the first message of each kind is flipped: small ciphertexts keep that quick.
    "bfv": {"encoding": Encoding(value_bits=4, max_clients=8, max_weight=1)},
}
EXTRA_CASES = {
    "secagg/malicious-server": lambda: SecAgg(malicious_server=True),
    "secagg+/malicious-server": lambda: SecAgg(neighbors=2, malicious_server=True),
}


def _fast(protocol: Protocol) -> Protocol:
    """The protocol with a ``KEY_BITS`` key where it has a key size."""
    if dataclasses.is_dataclass(protocol) and "key_bits" in {field.name for field in dataclasses.fields(protocol)}:
        return dataclasses.replace(protocol, key_bits=KEY_BITS)
    return protocol


def _catalog_case(name: str):
    return lambda: _fast(catalog.make_protocol(name, **CATALOG_OPTIONS.get(name, {})))


CASES = {**{name: _catalog_case(name) for name in catalog.protocol_names()}, **EXTRA_CASES}


@functools.cache
def protocol_of(name: str) -> Protocol:
    return CASES[name]()


@pytest.fixture(params=list(CASES))
def protocol(request) -> Protocol:
    return protocol_of(request.param)


def test_every_catalog_protocol_is_a_case():
    assert set(catalog.protocol_names()) <= set(CASES)
    for name in catalog.protocol_names():
        assert protocol_of(name).name == name


# -- 1. session, round, recipient, sender, phase label -----------------------------------------------


def test_tampered_headers_are_refused_at_every_delivery(protocol):
    assert conformance.check_header_refusals(protocol) > 0


# -- 2. replays --------------------------------------------------------------------------------------


def test_replayed_messages_are_refused(protocol):
    assert conformance.check_replays(protocol) > 0


# -- 3. stage transitions ------------------------------------------------------------------------------


def test_stage_transition_matrix(protocol):
    assert conformance.check_transition_matrix(protocol) > 0


def test_server_driver_misuse_is_a_local_protocol_error(protocol):
    assert conformance.check_server_driver_misuse(protocol) > 0


# -- 4. bytes on the wire ------------------------------------------------------------------------------


def test_truncated_and_extended_bytes_are_invalid(protocol):
    assert conformance.check_truncated_and_extended_bytes(protocol) > 0


def test_bit_flips_are_invalid_or_canonical_and_header_flips_refused(protocol):
    assert conformance.check_bit_flips(protocol) > 0


# -- 5. terminal states --------------------------------------------------------------------------------


def test_every_engine_is_finalized_after_done(protocol):
    assert conformance.check_finalized_after_done(protocol) > 0


def test_server_is_finalized_after_abort(protocol):
    assert conformance.check_server_finalized_after_abort(protocol) > 0


def test_client_is_finalized_after_abort(protocol):
    assert conformance.check_client_finalized_after_abort(protocol) > 0


def test_helpers_are_finalized_after_abort(protocol):
    checked = conformance.check_helpers_finalized_after_abort(protocol)
    assert checked > 0 or not conformance.reference(protocol).helpers


def test_malformed_bodies_are_refused_without_harm(protocol):
    assert conformance.check_malformed_bodies(protocol) > 0


# -- 6. the transcript ---------------------------------------------------------------------------------


def test_transcript_is_exactly_the_server_input(protocol):
    assert conformance.check_transcript_is_server_input(protocol) > 0


# -- 7. single use -------------------------------------------------------------------------------------


def test_responders_answer_their_last_request_once(protocol):
    assert conformance.check_single_use(protocol) > 0


def test_provide_input_once_and_before_its_phase(protocol):
    assert conformance.check_provide_input_once(protocol) == 2 * conformance.CLIENTS


# -- 8. minimum cohort ---------------------------------------------------------------------------------


def test_fewer_than_min_clients_are_refused(protocol):
    assert conformance.check_min_clients(protocol) > 0


# -- 9. the checks catch broken engines ------------------------------------------------------------------


class _ServerBeginsTwice(plaintext._Server):
    """Opens the open phase again (and hands out its requests again)."""

    def begin_phase(self, phase):
        if self._open and self._machine_steps[self._position].phase == phase:
            return self._machine_steps[self._position].begin()
        return super().begin_phase(phase)


class _ServerTakesDuplicates(plaintext._Server):
    """Forgets who answered: a second copy of a reply is taken again."""

    def handle(self, message):
        replies = super().handle(message)
        self._answered.discard(message.sender)
        return replies


class _ServerTakesUploadsWhileClosed(plaintext._Server):
    """Takes an upload while no phase is open."""

    def handle(self, message):
        if not self._open and isinstance(message, plaintext.PlaintextUpload):
            self._require_active()
            self._check_header(message)
            return self._receive(message)
        return super().handle(message)


class _ServerNeverAborts(plaintext._Server):
    """Ends the upload phase whoever uploaded."""

    def _close(self):
        return None


class _ServerAnswersWhenDone(plaintext._Server):
    """Keeps taking messages after its last phase."""

    def handle(self, message):
        if self.state is EngineState.DONE:
            return []
        return super().handle(message)


class _ClientAnswersTwice(plaintext._Client):
    """Answers a second copy of its request (with zeros: its input is gone)."""

    def handle(self, message):
        if self.state is EngineState.DONE and isinstance(message, plaintext.UploadRequest):
            run = self._run
            return [plaintext.PlaintextUpload(*run.header(message.phase, self.party, message.sender),
                                              ring_bits=run.ring_bits, vector=np.zeros(run.length, np.uint32))]
        return super().handle(message)


class _ClientIgnoresSession(plaintext._Client):
    """Does not look at the session id."""

    def _check_header(self, message):
        super()._check_header(dataclasses.replace(message, session=self._run.session))


class _ClientTakesSecondInput(plaintext._Client):
    """Replaces its input when given another."""

    def provide_input(self, vector):
        self._input = None
        super().provide_input(vector)


class _ClientWithoutInputSendsZeros(plaintext._Client):
    """Uploads zeros when it was given no input."""

    def _take_input(self):
        if self._input is None:
            return np.zeros(self._run.length, np.uint32)
        return super()._take_input()


def _plaintext_with(*, server=plaintext._Server, client=plaintext._Client, **options):
    class Double(Plaintext):
        def setup(self, *, clients, vector_length, session, round):
            run = self.run_parameters(clients=clients, vector_length=vector_length, session=session, round=round)
            return Parties(server=server(run), clients=[client(i, run) for i in range(run.clients)])

    return Double(**options)


def _lenient_decoder(monkeypatch):
    """A codec that ignores one trailing byte."""
    strict = conformance.decode_message

    def decode(data):
        try:
            return strict(data)
        except InvalidMessage:
            return strict(data[:-1])

    monkeypatch.setattr(conformance, "decode_message", decode)
    return Plaintext()


def _double(check, make, failure, id):
    return pytest.param(check, make, failure, id=id)


DOUBLES = [
    _double(conformance.check_server_driver_misuse, lambda mp: _plaintext_with(server=_ServerBeginsTwice),
            r"phase 'upload' open: begin_phase\('upload'\): DID NOT RAISE .*LocalProtocolError",
            "server-begins-a-phase-twice"),
    _double(conformance.check_replays, lambda mp: _plaintext_with(server=_ServerTakesDuplicates),
            r"replay .* -> server to server \(active\): DID NOT RAISE .*UnexpectedMessage",
            "server-takes-a-replayed-reply"),
    _double(conformance.check_transition_matrix, lambda mp: _plaintext_with(server=_ServerTakesUploadsWhileClosed),
            r"after 0 phase\(s\).* to server \(active\): DID NOT RAISE .*UnexpectedMessage",
            "server-takes-a-reply-while-closed"),
    _double(conformance.check_server_finalized_after_abort, lambda mp: _plaintext_with(server=_ServerNeverAborts),
            r"every request lost: DID NOT RAISE .*ProtocolAbort", "server-never-aborts"),
    _double(conformance.check_finalized_after_done, lambda mp: _plaintext_with(server=_ServerAnswersWhenDone),
            r"server DONE: .* to server \(done\): DID NOT RAISE .*AlreadyFinalized", "server-answers-when-done"),
    _double(conformance.check_single_use, lambda mp: _plaintext_with(client=_ClientAnswersTwice),
            r"a second copy of the last request: .*DID NOT RAISE .*AlreadyFinalized", "client-answers-twice"),
    _double(conformance.check_replays, lambda mp: _plaintext_with(client=_ClientAnswersTwice),
            r"replay .* to client/0 \(done\): DID NOT RAISE .*AlreadyFinalized", "client-answers-a-replay"),
    _double(conformance.check_header_refusals, lambda mp: _plaintext_with(client=_ClientIgnoresSession),
            r"wrong session: .*DID NOT RAISE .*InvalidMessage", "client-ignores-the-session"),
    _double(conformance.check_bit_flips, lambda mp: _plaintext_with(client=_ClientIgnoresSession),
            r"flipped: UploadRequest.*DID NOT RAISE .*InvalidMessage", "client-ignores-a-flipped-session"),
    _double(conformance.check_provide_input_once, lambda mp: _plaintext_with(client=_ClientTakesSecondInput),
            r"provide_input twice: DID NOT RAISE .*LocalProtocolError", "client-takes-a-second-input"),
    _double(conformance.check_client_finalized_after_abort,
            lambda mp: _plaintext_with(client=_ClientWithoutInputSendsZeros),
            r"given no input.*DID NOT RAISE .*LocalProtocolError", "client-without-input-answers"),
    _double(conformance.check_min_clients, lambda mp: Plaintext(min_clients=1),
            r"check_clients\(1\): DID NOT RAISE .*ConfigurationError", "sum-of-one-released"),
    _double(conformance.check_truncated_and_extended_bytes, _lenient_decoder,
            r"1 byte\(s\) appended: DID NOT RAISE .*InvalidMessage", "codec-ignores-a-trailing-byte"),
]


@pytest.mark.parametrize(("check", "double", "failure"), DOUBLES)
def test_a_broken_engine_fails_the_check(check, double, failure, monkeypatch):
    check(Plaintext())  # the check passes on the engines it is modelled on
    broken = double(monkeypatch)
    with pytest.raises(AssertionError, match=failure):
        check(broken)
