"""The driver core's transport over a Flower Grid: one Flower message per party and exchange.

:class:`GridTransport` carries a :class:`securefl.driver.Round`'s parcels to
the SuperNodes that play the parties: for each party addressed it packs the
control fields (the aggregation's setup, the phase, the party it plays) and
the canonical bytes of its messages into one Flower message (:mod:`.wire`),
pushes them all, and pulls the replies until every node has answered or
``timeout`` seconds have passed (:func:`push_and_pull`). What a node sends
comes back as parcels named with their route: a plain entry is decoded for
its sender and recipient, a sealed envelope is routed by the names on it
(``wire.envelope_route``) and stays closed. A node that does not answer in
time, answers with an error, answers as another party or sends an entry
that is not a message is a failure, which the Round turns into a dropout.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from flwr.app import ConfigRecordValues, Message, RecordDict
from flwr.serverapp import Grid

from securefl import validation
from securefl.driver import Delivery, Parcel, Payload, Transport
from securefl.errors import InvalidMessage
from securefl.integrations.flower import wire
from securefl.protocols.wire import decode_message

__all__ = ["ExtraContent", "GridTransport", "push_and_pull"]

ExtraContent = Callable[[int, int], "RecordDict | None"]
"""``extra(node_id, client_index)``: records to attach to the first message a client receives, or None."""


def push_and_pull(
    grid: Grid, contents: Mapping[int, RecordDict], *, group: str, timeout: float, poll_interval: float
) -> tuple[dict[int, tuple[dict[str, Any], list[wire.Entry]]], dict[int, str]]:
    """Send one message per node; collect replies until all answered or ``timeout`` passed.

    Returns ({node: (control, entries)}, {node: why it gave no usable reply}).
    """
    nodes = list(contents)
    ttl = max(timeout * 2, 60.0)
    messages = [
        Message(contents[node], dst_node_id=node, message_type=wire.MESSAGE_TYPE, group_id=group, ttl=ttl)
        for node in nodes
    ]
    ids = list(grid.push_messages(messages)) if messages else []
    failures: dict[int, str] = {}
    pending: dict[str, int] = {}
    for node, message_id in zip(nodes, ids + [None] * (len(nodes) - len(ids))):
        if message_id:
            pending[message_id] = node
        else:
            failures[node] = "the SuperLink did not accept the message"
    replies: dict[int, tuple[dict[str, Any], list[wire.Entry]]] = {}
    deadline = time.monotonic() + timeout
    while pending:
        for reply in grid.pull_messages(list(pending)):
            replied = pending.pop(reply.metadata.reply_to_message_id, None)
            if replied is None:
                continue
            if reply.has_error():
                failures[replied] = f"error reply: {reply.error.reason}"
                continue
            try:
                replies[replied] = wire.unpack(reply.content)
            except InvalidMessage as error:
                failures[replied] = str(error)
        if not pending or time.monotonic() >= deadline:
            break
        time.sleep(poll_interval)
    for node in pending.values():
        failures[node] = f"no reply within {timeout:g} s"
    return replies, failures


def _joined(payload: Payload) -> bytes:
    return payload if isinstance(payload, bytes) else b"".join(payload)


def _parcel(entry: wire.Entry) -> Parcel:
    """What a node sent, with its route; ``InvalidMessage`` for an entry that is neither a message nor an envelope."""
    if entry.sealed:
        recipient, sender = wire.envelope_route(entry.data)
        return Parcel(sender=sender, recipient=recipient, payload=entry.data, sealed=True)
    message = decode_message(entry.data)
    return Parcel(sender=message.sender, recipient=message.recipient, payload=entry.data, message=message)


class GridTransport(Transport):
    """The parties of one aggregation on their SuperNodes (``node_of``: party -> node id).

    ``setup`` holds the control fields every message carries (session,
    round, protocol, helper keys ...); ``extra`` gives records to attach to
    the first message each client receives. Per exchange each node reports
    ``engine-seconds`` (the Round's seconds for it), and with its first
    answer a client reports ``input-seconds`` and its input function's
    ``metric.*`` values: kept in :attr:`node_metrics` (by party) and
    :attr:`input_seconds`.
    """

    def __init__(
        self,
        grid: Grid,
        *,
        node_of: Mapping[str, int],
        setup: Mapping[str, ConfigRecordValues],
        group: str,
        timeout: float,
        poll_interval: float,
        extra: ExtraContent | None = None,
    ) -> None:
        self._grid = grid
        self._node_of = dict(node_of)
        self._setup = dict(setup)
        self._group = group
        self._timeout = validation.positive_float(timeout, "timeout (seconds)")
        self._poll_interval = validation.positive_float(poll_interval, "poll_interval (seconds)")
        self._extra = extra
        self._contacted: set[str] = set()
        self.node_metrics: dict[str, dict[str, float]] = defaultdict(dict)
        self.input_seconds: list[float] = []

    @property
    def parties(self) -> Collection[str]:
        return self._node_of.keys()

    def exchange(self, outbox: Mapping[str, Sequence[Parcel]], *, phase: str) -> Delivery:
        contents: dict[int, RecordDict] = {}
        party_of: dict[int, str] = {}
        for party, parcels in outbox.items():
            node = self._node_of[party]
            extra = None
            if party not in self._contacted and party.startswith("client/") and self._extra is not None:
                extra = self._extra(node, int(party.split("/", 1)[1]))
            self._contacted.add(party)
            entries = [wire.Entry(data=_joined(parcel.payload), sealed=parcel.sealed) for parcel in parcels]
            contents[node] = wire.pack({**self._setup, "phase": phase, "party": party}, entries, extra)
            party_of[node] = party
        replies, failures = push_and_pull(self._grid, contents, group=self._group, timeout=self._timeout,
                                          poll_interval=self._poll_interval)
        delivery = Delivery(failures={party_of[node]: reason for node, reason in failures.items()})
        for node, (control, entries) in replies.items():
            party = party_of[node]
            if control.get("party") != party:
                delivery.failures[party] = f"answered as {control.get('party')!r}"
                continue
            self._record_metrics(party, control, delivery)
            try:
                delivery.replies[party] = [_parcel(entry) for entry in entries]
            except InvalidMessage as error:
                delivery.failures[party] = f"InvalidMessage: {error}"
        return delivery

    def _record_metrics(self, party: str, control: Mapping[str, Any], delivery: Delivery) -> None:
        seconds = control.get("engine-seconds")
        if isinstance(seconds, float):
            delivery.seconds[party] = seconds
        encode = control.get("input-seconds")
        if isinstance(encode, float):
            self.input_seconds.append(encode)
            self.node_metrics[party]["input-seconds"] = encode
        for key, value in control.items():
            if key.startswith("metric.") and validation.is_number(value):
                self.node_metrics[party][key[len("metric."):]] = float(value)
