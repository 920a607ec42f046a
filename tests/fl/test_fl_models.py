import numpy as np
import pytest
import torch

from securefl.errors import ConfigurationError
from securefl.fl.models import make_model


def parameters(model):
    return [p.detach().clone() for p in model.parameters()]


def test_same_seed_same_parameters_other_seed_other_parameters():
    first, again, other = make_model(seed=3), make_model(seed=3), make_model(seed=4)
    assert all(torch.equal(a, b) for a, b in zip(parameters(first), parameters(again)))
    assert not all(torch.equal(a, b) for a, b in zip(parameters(first), parameters(other)))


def test_making_a_model_leaves_the_global_torch_rng_alone():
    before = torch.random.get_rng_state()
    make_model(seed=0, hidden=32)
    assert torch.equal(torch.random.get_rng_state(), before)


def test_shapes_and_default_linear_initialisation_bounds():
    model = make_model(hidden=32, seed=0)
    logits = model(torch.zeros(5, 64))
    assert logits.shape == (5, 10)
    assert model.hidden.weight.shape == (32, 64) and model.output.weight.shape == (10, 32)
    # Kaiming-uniform with a = sqrt(5) gives U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    assert model.hidden.weight.abs().max() <= 1 / np.sqrt(64)
    assert model.output.bias.abs().max() <= 1 / np.sqrt(32)
    assert model.hidden.weight.std() > 0.5 / np.sqrt(3 * 64)


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [({"hidden": 0}, "hidden"), ({"seed": -2}, "seed"), ({"seed": 1.0}, "seed"), ({"classes": 0}, "classes")],
)
def test_bad_values_are_refused_by_name(kwargs, named):
    arguments = {"seed": 0, **kwargs}
    with pytest.raises(ConfigurationError, match=named):
        make_model(**arguments)
