"""examples/own_model.py: a user's CNN, DataLoaders and loop, aggregated by securefl."""

import runpy
import warnings
from pathlib import Path

import numpy as np
import torch

from securefl.aggregator import Layout

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "own_model.py"


def _example():
    return runpy.run_path(str(EXAMPLE))  # the module's functions, without running main()


def test_the_cnn_is_large_enough_and_has_batchnorm():
    model = _example()["make_cnn"]()
    assert sum(p.numel() for p in model.parameters()) >= 50_000
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


def test_each_protocol_gives_the_exact_float_mean_within_the_quantisation_bound():
    example = _example()
    loaders, _ = example["non_iid_loaders"](3, 0)
    torch.manual_seed(0)
    reference_model = example["make_cnn"]()
    reference = {k: v.clone() for k, v in reference_model.state_dict().items()}
    states, counts = [], []
    for loader in loaders:
        local = example["make_cnn"]()
        local.load_state_dict(reference)
        example["train"](local, loader)
        states.append({k: v.clone() for k, v in local.state_dict().items()})
        counts.append(len(loader.dataset))
    layout = Layout.of(reference, buffers="skip")
    start = layout.flatten(reference, client=0)
    updates = [layout.flatten(state, client=i) - start for i, state in enumerate(states)]
    warnings.simplefilter("ignore")  # a BatchNorm variance may move by more than the clip: counted below
    for name, aggregator in example["protocols"](1, len(loaders), 1024).items():
        weights = None if aggregator.dp else counts
        result = aggregator.aggregate_models(states, reference=reference, weights=weights)
        mean = layout.flatten(result.mean, client=0)
        if aggregator.dp is None:
            # The exact mean of what the clients sent: their updates, cut to the clip (the cut is counted).
            clip = aggregator.protocol.encoding.clip
            assert result.metrics["clipped_coordinates"] == sum(int((np.abs(u) > clip).sum()) for u in updates)
            exact = np.average([np.clip(u, -clip, clip) for u in updates], axis=0, weights=counts)
            step = aggregator.protocol.encoding.step
            bound = result.metrics["weight_error"] * max(np.abs(u).max() for u in updates) + step + 1e-6
            assert np.abs(mean - exact).max() <= bound, name
            assert result.epsilon is None
        else:
            assert result.epsilon is not None and 0 < result.epsilon <= 8.0, name
        assert result.included == tuple(range(len(loaders)))
        model = example["make_cnn"]()
        model.load_state_dict(result.model)


def test_the_example_runs_small_and_prints_epsilon(capsys):
    example = _example()
    results = example["main"](["--clients", "3", "--rounds", "1", "--key-bits", "1024",
                               "--protocols", "secagg", "secagg + central DP"])
    out = capsys.readouterr().out
    assert "epsilon" in out and len(results) == 2
    assert results[1]["epsilon"] is not None and results[0]["parameters"] >= 50_000


def test_the_securefl_lines_are_at_most_fifteen():
    lines = [line for line in EXAMPLE.read_text().splitlines() if line.rstrip().endswith("# securefl")]
    assert 0 < len(lines) <= 15


def test_fedavg_trains_the_users_cnn_on_their_loaders():
    from securefl import FedAvg, FedAvgConfig, SecAgg

    example = _example()
    loaders, test = example["non_iid_loaders"](4, 1)
    torch.manual_seed(1)
    config = FedAvgConfig(clients=len(loaders), rounds=3, local_epochs=1, seed=1)
    trainer = FedAvg(SecAgg(), config, model=example["make_cnn"], client_data=loaders, test_data=test,
                     optimizer=lambda parameters: torch.optim.SGD(parameters, lr=0.05, momentum=0.9))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # BatchNorm variances beyond the clip are counted in the record
        history = trainer.run()
    assert history.final_accuracy > history.initial_accuracy + 0.2
    assert all(record.server_saw_individual_updates is False for record in history.records)
    assert all(record.included == tuple(range(len(loaders))) for record in history.records)
    assert isinstance(trainer.global_state["1.num_batches_tracked"], torch.Tensor)
