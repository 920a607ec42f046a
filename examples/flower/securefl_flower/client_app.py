"""securefl-flower: the ClientApp -- `flwr new`'s PyTorch ClientApp, with securefl's mod.

``@app.train`` and ``@app.evaluate`` are plain Flower: load the received
model, train or evaluate on this SuperNode's partition, reply with
``{"arrays": ArrayRecord, "metrics": MetricRecord}`` (``"num-examples"``
included). The mod ``securefl_mod(PROTOCOL)`` intercepts the train reply: it
keeps the update (trained minus received arrays) and the metrics on the
node, answers the server with an acknowledgement only, and feeds them into
the protocol's secure sum. Evaluate replies pass through unchanged.
"""

import torch
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from securefl.integrations.flower import securefl_mod
from securefl_flower.protocol import PROTOCOL
from securefl_flower.task import Net, load_data
from securefl_flower.task import test as test_fn
from securefl_flower.task import train as train_fn

# Flower ClientApp; the protocol is this node's own (see protocol.py), never the server's choice
app = ClientApp(mods=[securefl_mod(PROTOCOL)])


def _data(context: Context):
    """This SuperNode's (train loader, validation loader)."""
    config = context.run_config
    return load_data(
        partition_id=int(context.node_config["partition-id"]),
        num_partitions=int(context.node_config["num-partitions"]),
        batch_size=int(config["batch-size"]),
        partitioning=str(config["partitioning"]),
        alpha=float(config["dirichlet-alpha"]),
        seed=int(config["seed"]),
    )


@app.train()
def train(msg: Message, context: Context):
    """Train the model on local data."""
    # Load the model and initialize it with the received weights
    model = Net()
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    device = torch.device("cuda:0" if torch.cuda.is_available() else "cpu")

    # Load the data
    trainloader, _ = _data(context)

    # Call the training function
    train_loss = train_fn(model, trainloader, int(context.run_config["local-epochs"]),
                          float(msg.content["config"]["lr"]), device)

    # Construct and return reply Message (the mod turns it into this node's share of the secure sum)
    model_record = ArrayRecord(model.state_dict())
    metrics = {"train_loss": train_loss, "num-examples": len(trainloader.dataset)}
    metric_record = MetricRecord(metrics)
    content = RecordDict({"arrays": model_record, "metrics": metric_record})
    return Message(content=content, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context):
    """Evaluate the model on local data."""
    # Load the model and initialize it with the received weights
    model = Net()
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    device = torch.device("cuda:0" if torch.cuda.is_available() else "cpu")

    # Load the data
    _, valloader = _data(context)

    # Call the evaluation function
    eval_loss, eval_acc = test_fn(model, valloader, device)

    # Construct and return reply Message
    metrics = {"eval_loss": eval_loss, "eval_acc": eval_acc, "num-examples": len(valloader.dataset)}
    metric_record = MetricRecord(metrics)
    content = RecordDict({"metrics": metric_record})
    return Message(content=content, reply_to=msg)
