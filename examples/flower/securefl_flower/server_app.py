"""securefl-flower: the ServerApp -- `flwr new`'s PyTorch ServerApp, FedAvg wrapped in SecureAggregation.

``SecureAggregation(FedAvg(...), PROTOCOL)`` runs Flower's own
``Strategy.start`` loop; in each round the nodes' updates and training
metrics reach the server only as the protocol's secure sum, from which
FedAvg takes its (example-weighted) mean. Federated evaluation is FedAvg's
own; the global model is also evaluated here, on digits no SuperNode holds.
"""

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from securefl.integrations.flower import SecureAggregation
from securefl_flower.protocol import PROTOCOL
from securefl_flower.task import Net, load_centralized_testset, new_model, test

# Create ServerApp
app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Main entry point for the ServerApp."""
    # Read run config
    fraction_train = float(context.run_config["fraction-train"])
    num_rounds = int(context.run_config["num-server-rounds"])
    lr = float(context.run_config["lr"])
    min_nodes = int(context.run_config["min-nodes"])

    # Load global model
    global_model = new_model(int(context.run_config["seed"]))
    arrays = ArrayRecord(global_model.state_dict())

    # Initialize FedAvg strategy, its training replies replaced by the protocol's secure sum
    strategy = FedAvg(fraction_train=fraction_train, min_available_nodes=min_nodes)
    strategy = SecureAggregation(strategy, PROTOCOL)

    # Start strategy, run FedAvg for `num_rounds`
    result = strategy.start(
        grid=grid,
        initial_arrays=arrays,
        train_config=ConfigRecord({"lr": lr}),
        num_rounds=num_rounds,
        evaluate_fn=global_evaluate,
    )

    # What the secure aggregation did, round by round (no node's update or metrics: the server never had them)
    print(f"\nsecurefl: {PROTOCOL.describe()}")
    for report in strategy.reports:
        outcome = f"aborted, model unchanged: {report.aborted}" if report.aborted else (
            f"secure sum of {len(report.included)}/{len(report.sampled)} SuperNodes, {report.examples} examples")
        dropped = f", dropped {report.dropped}" if report.dropped else ""
        print(f"  round {report.round}: {outcome}{dropped} ({report.seconds:.1f} s)")
    final = result.evaluate_metrics_serverapp.get(num_rounds)
    if final is not None:
        print(f"Global model on the held-out digits after {num_rounds} rounds: accuracy {final['accuracy']:.3f}, "
              f"loss {final['loss']:.3f}")

    # Save final model to disk
    print("\nSaving final model to disk...")
    final_arrays = result.arrays if len(result.arrays) else arrays  # every round aborted: the initial model
    state_dict = final_arrays.to_torch_state_dict()
    torch.save(state_dict, str(context.run_config["final-model"]))


def global_evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord:
    """Evaluate the global model on the held-out digits (on no SuperNode)."""
    model = Net()
    model.load_state_dict(arrays.to_torch_state_dict())
    device = torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    loss, accuracy = test(model, load_centralized_testset(), device)
    return MetricRecord({"accuracy": accuracy, "loss": loss})
