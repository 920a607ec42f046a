"""ClientApp: an ordinary Flower ClientApp, switched to secure aggregation by one mod (the protocol fixed here)."""

from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from securefl.integrations.flower import securefl_mod
from securefl.protocols.secagg import SecAgg
from securefl_mod_test.task import ENCODING, examples_of, train_loss_of, update_for

app = ClientApp(mods=[securefl_mod(SecAgg(encoding=ENCODING))])  # complete-graph SecAgg


@app.train()
def train(msg: Message, context: Context) -> Message:
    """'Training': the received arrays plus this partition's fixed update."""
    partition = int(context.node_config["partition-id"])
    arrays = msg.content["arrays"].to_numpy_ndarrays()
    trained = [array + step for array, step in zip(arrays, update_for(partition))]
    metrics = MetricRecord({"num-examples": examples_of(partition), "train_loss": train_loss_of(partition)})
    return Message(RecordDict({"arrays": ArrayRecord(trained), "metrics": metrics}), reply_to=msg)
