"""What a GPT holds: gradient buffers only once asked for (frozen models hold none), and given
parameter arrays used as they are (no random initialisation, no copy)."""
import numpy as np
import pytest

from minippo.nn import GPT, AdamW
from minippo.nn.gpt import parameter_shapes
from tests.test_gpt import IDX, lm_targets, make_config


def test_a_model_run_only_forward_holds_no_gradient_buffers():
    model = GPT(make_config(), seed=0)
    model.forward(IDX)
    model.generate(IDX[:, :3], 2, rng=0)
    assert model._grads is None
    grads = model.grads  # first use: zeros of every parameter's shape and dtype
    assert model._grads is grads and set(grads) == set(model.params)
    for name, gradient in grads.items():
        assert gradient.shape == model.params[name].shape and gradient.dtype == model.params[name].dtype
        assert not gradient.any()


def test_lazy_gradients_train_like_eager_ones():
    model = GPT(make_config(), seed=0)
    optimizer = AdamW(model.params, model.grads, lr=1e-2)
    before = model.state_dict()
    model.loss(IDX, lm_targets(IDX))
    model.backward()
    optimizer.step()
    assert all(not np.array_equal(before[name], value) for name, value in model.params.items()
               if name != "transformer.wpe.weight")


def test_given_parameters_are_used_as_they_are():
    config = make_config()
    reference = GPT(config, seed=4)
    params = {name: value.copy() for name, value in reference.params.items()}
    model = GPT(config, params=params)
    assert all(model.params[name] is params[name] for name in params)
    np.testing.assert_array_equal(model.forward(IDX), reference.forward(IDX))


def test_given_parameters_are_checked():
    config = make_config()
    params = {name: np.zeros(shape, config.dtype) for name, shape in parameter_shapes(config).items()}
    with pytest.raises(TypeError, match="params"):
        GPT(config, params=[1, 2])
    with pytest.raises(ValueError, match="missing transformer.wte.weight"):
        GPT(config, params={k: v for k, v in params.items() if k != "transformer.wte.weight"})
    with pytest.raises(ValueError, match="unexpected extra"):
        GPT(config, params={**params, "extra": np.zeros(1)})
    with pytest.raises(ValueError, match="transformer.wpe.weight"):
        GPT(config, params={**params, "transformer.wpe.weight": np.zeros((3, 3), config.dtype)})
    with pytest.raises(ValueError, match="float32"):
        GPT(config, params={**params, "transformer.ln_f.bias": params["transformer.ln_f.bias"].astype(np.float32)})
