"""template-app: a Flower / PyTorch app (the ServerApp of `flwr new`'s PyTorch template, on our task)."""

import json
from pathlib import Path

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from tests.integrations.template_app.task import app_config, new_model

# Create ServerApp
app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Main entry point for the ServerApp."""
    config = app_config(context)

    # Load global model
    global_model = new_model(config["seed"])
    arrays = ArrayRecord(global_model.state_dict())

    # Initialize FedAvg strategy
    strategy = FedAvg(fraction_train=config["fraction-train"], min_available_nodes=5)

    # Start strategy, run FedAvg for `num_rounds`
    result = strategy.start(
        grid=grid,
        initial_arrays=arrays,
        train_config=ConfigRecord({"lr": config["lr"]}),
        num_rounds=config["num-server-rounds"],
    )

    # Save final model and metrics to disk
    print("\nSaving final model to disk...")
    state_dict = result.arrays.to_torch_state_dict()
    torch.save(state_dict, config["final-model"])
    history = {"train": result.train_metrics_clientapp, "evaluate": result.evaluate_metrics_clientapp}
    history = {kind: {r: dict(metrics) for r, metrics in rounds.items()} for kind, rounds in history.items()}
    Path(config["final-metrics"]).write_text(json.dumps(history))
