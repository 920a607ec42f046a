"""An in-process Flower Grid that behaves like a deployment, for fast driver tests.

Every message and every node Context goes through Flower's own protobuf
serialisation on the way, as between a SuperLink, a SuperNode and a fresh
``flwr-clientapp`` process: nothing but records survives from one message
to the next. Nodes can be killed (they stop answering) at any moment; a
node killed ``offline`` is one the SuperLink has marked offline: it answers
for it with Flower's own NODE_UNAVAILABLE error reply.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterable

from flwr.app import Context, Message, RecordDict
from flwr.common.serde import context_from_proto, context_to_proto, message_from_proto, message_to_proto
from flwr.proto.message_pb2 import Context as ProtoContext
from flwr.proto.message_pb2 import Message as ProtoMessage
from flwr.server.superlink.linkstate.utils import create_message_error_unavailable_res_message
from flwr.serverapp import Grid
from flwr.supercore.task_identity import TaskIdentity


def _through_the_wire(message: Message) -> Message:
    proto = ProtoMessage.FromString(message_to_proto(message).SerializeToString())
    return message_from_proto(proto)


def _fresh_process_context(context: Context) -> Context:
    proto = ProtoContext.FromString(context_to_proto(context).SerializeToString())
    return context_from_proto(proto)


class FakeGrid(Grid):
    """Nodes are (node config, ClientApp); ``kill(node)`` silences one for good."""

    def __init__(self, nodes: Iterable[tuple[dict, Callable[[Message, Context], Message]]], run_config=None) -> None:
        # What a ServerApp process has set before its main runs.
        TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
        self._ids = itertools.count(1001)
        self.apps: dict[int, Callable] = {}
        self.contexts: dict[int, Context] = {}
        for node_config, app in nodes:
            node_id = next(self._ids)
            self.apps[node_id] = app
            self.contexts[node_id] = Context(
                run_id=1, node_id=node_id, node_config=dict(node_config), state=RecordDict(),
                run_config=dict(run_config or {}),
            )
        self.dead: set[int] = set()
        self.offline: set[int] = set()
        self.inbox: dict[str, Message] = {}
        self.replies: dict[str, Message] = {}
        self.seen: list[Message] = []  # every message through the "SuperLink", both ways
        self.replies_made: list[Message] = []  # the SuperLink's own error replies
        self.on_push: Callable[[list[Message]], None] | None = None

    # -- Grid ----------------------------------------------------------------

    def set_run(self, run) -> None:  # pragma: no cover - unused
        self._run = run

    @property
    def run(self):  # pragma: no cover - unused
        return getattr(self, "_run", None)

    def create_message(self, content, message_type, dst_node_id, group_id, ttl=None):  # pragma: no cover
        return Message(content, dst_node_id=dst_node_id, message_type=message_type, group_id=group_id, ttl=ttl)

    def get_node_ids(self) -> list[int]:
        return [node for node in self.apps if node not in self.dead]

    def push_messages(self, messages: Iterable[Message]) -> list[str]:
        messages = list(messages)
        if self.on_push is not None:
            self.on_push(messages)
        ids = []
        for message in messages:
            message_id = uuid.uuid4().hex
            message.metadata.__dict__["_message_id"] = message_id
            delivered = _through_the_wire(message)
            delivered.metadata.__dict__["_message_id"] = message_id
            self.seen.append(delivered)
            self.inbox[message_id] = delivered
            ids.append(message_id)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> list[Message]:
        out = []
        for message_id in message_ids:
            if message_id in self.inbox:
                self._process(message_id)
            reply = self.replies.pop(message_id, None)
            if reply is not None:
                out.append(reply)
        return out

    def send_and_receive(self, messages, *, timeout=None):  # pragma: no cover - the driver does not use it
        return self.pull_messages(self.push_messages(messages))

    # -- the SuperNodes ------------------------------------------------------

    def kill(self, node_id: int, *, offline: bool = False) -> None:
        self.dead.add(node_id)
        if offline:
            self.offline.add(node_id)

    def _process(self, message_id: str) -> None:
        message = self.inbox[message_id]
        node = message.metadata.dst_node_id
        if node in self.offline:
            del self.inbox[message_id]
            reply = create_message_error_unavailable_res_message(message.metadata, "node_unavail")
            self.replies_made.append(reply)
            self.replies[message_id] = reply
            return
        if node in self.dead:
            return
        del self.inbox[message_id]
        context = _fresh_process_context(self.contexts[node])
        reply = self.apps[node](message, context)
        self.contexts[node] = _fresh_process_context(context)
        reply = _through_the_wire(reply)
        reply.metadata.__dict__["_message_id"] = uuid.uuid4().hex
        self.seen.append(reply)
        self.replies[message_id] = reply
