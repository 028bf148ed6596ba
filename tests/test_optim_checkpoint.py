"""AdamW (hand formula and torch), weight-decay groups, gradient clipping, schedules, checkpoints."""
import json
import math
import os
import stat

import numpy as np
import pytest

from minippo.nn import (
    GPT,
    AdamW,
    GPTConfig,
    ValueHead,
    clip_grad_norm,
    cosine_schedule,
    cross_entropy,
)
from minippo.nn import checkpoint as checkpoint_module
from minippo.nn.checkpoint import load_checkpoint, save_checkpoint
from minippo.nn.optim import CACHE_BLOCK, cache_blocks, decay_groups, linear_schedule


def tiny_config(dtype=np.float64, n_layer=2):
    return GPTConfig(vocab_size=13, block_size=8, n_layer=n_layer, n_head=2, n_embd=8, dtype=dtype)


def small_problem(seed=0):
    rng = np.random.default_rng(seed)
    params = {"w": rng.standard_normal((3, 2)), "b": rng.standard_normal(2)}
    grads = {"w": rng.standard_normal((3, 2)), "b": rng.standard_normal(2)}
    return params, grads


# ----------------------------------------------------------------------------------------------
# AdamW
# ----------------------------------------------------------------------------------------------
def test_adamw_matches_hand_formula_over_two_steps():
    params, grads = small_problem()
    start = {k: v.copy() for k, v in params.items()}
    lr, (b1, b2), eps, wd = 0.1, (0.9, 0.99), 1e-8, 0.3
    opt = AdamW(params, grads, lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd, decay=["w"])

    g1 = {k: v.copy() for k, v in grads.items()}
    opt.step()
    # step 1: m̂ = g, v̂ = g², so the Adam direction is g / (|g| + ε)
    for name in params:
        decay = wd * start[name] if name == "w" else 0.0
        expected = start[name] - lr * (g1[name] / (np.abs(g1[name]) + eps) + decay)
        np.testing.assert_allclose(params[name], expected, rtol=1e-14, atol=1e-15)
    assert opt.step_count == 1

    after1 = {k: v.copy() for k, v in params.items()}
    rng = np.random.default_rng(1)
    for name in grads:
        grads[name][...] = rng.standard_normal(grads[name].shape)
    opt.step(lr=0.05)  # an explicit lr overrides the constructor's
    for name in params:
        m = b1 * (1 - b1) * g1[name] + (1 - b1) * grads[name]
        v = b2 * (1 - b2) * g1[name] ** 2 + (1 - b2) * grads[name] ** 2
        m_hat, v_hat = m / (1 - b1 ** 2), v / (1 - b2 ** 2)
        decay = wd * after1[name] if name == "w" else 0.0
        expected = after1[name] - 0.05 * (m_hat / (np.sqrt(v_hat) + eps) + decay)
        np.testing.assert_allclose(params[name], expected, rtol=1e-14, atol=1e-15)
        np.testing.assert_allclose(opt.m[name], m, rtol=1e-14)
        np.testing.assert_allclose(opt.v[name], v, rtol=1e-14)


def test_adamw_updates_in_place():
    params, grads = small_problem()
    w = params["w"]
    AdamW(params, grads, lr=0.1).step()
    assert params["w"] is w
    assert not np.array_equal(w, small_problem()[0]["w"])


def test_adamw_in_cache_blocks_equals_the_whole_array_update_exactly():
    """C-ordered parameters are updated in blocks of CACHE_BLOCK elements, others whole: bit-identical."""
    rng = np.random.default_rng(3)
    shape = (3 * CACHE_BLOCK // 200 + 7, 200)  # several blocks and a partial one
    start, grads = rng.standard_normal(shape, dtype=np.float32), rng.standard_normal((2,) + shape, dtype=np.float32)
    results = []
    for order in "CF":
        param = {"w": np.array(start, order=order)}
        grad = {"w": np.zeros(shape, dtype=np.float32, order=order)}
        assert len(cache_blocks((param["w"], grad["w"]))) == (4 if order == "C" else 1)
        optimizer = AdamW(param, grad, lr=1e-2, weight_decay=0.1)
        for g in grads:
            grad["w"][...] = g
            optimizer.step()
        results.append(param["w"])
    np.testing.assert_array_equal(results[0], results[1])


def test_adamw_errors():
    params, grads = small_problem()
    with pytest.raises(ValueError, match="same keys"):
        AdamW(params, {"w": grads["w"]})
    with pytest.raises(ValueError, match="grads must have the shapes of params.*'w'"):
        AdamW(params, {**grads, "w": grads["w"][:1]})
    other = np.float32 if grads["w"].dtype == np.float64 else np.float64
    with pytest.raises(TypeError, match="grads must have the dtypes of params.*'w'"):
        AdamW(params, {**grads, "w": grads["w"].astype(other)})
    for bad in (0.0, float("nan"), float("inf"), "0.1"):
        with pytest.raises(ValueError, match="lr must be a finite number > 0"):
            AdamW(params, grads, lr=bad)
    for bad in (0.0, -1e-8):
        with pytest.raises(ValueError, match="eps must be a finite number > 0"):
            AdamW(params, grads, eps=bad)
    for bad in ((0.9, 1.0), (0.9,), (-0.1, 0.9)):
        with pytest.raises(ValueError, match="betas"):
            AdamW(params, grads, betas=bad)
    with pytest.raises(ValueError, match="weight_decay must be a finite number >= 0"):
        AdamW(params, grads, weight_decay=-0.1)
    with pytest.raises(ValueError, match="unknown parameters.*'nope'"):
        AdamW(params, grads, decay=["w", "nope"])


def test_decay_groups_on_a_gpt_exactly():
    model = GPT(tiny_config())
    decay, no_decay = decay_groups(model.params)
    expected_decay = [f"transformer.h.{i}.{n}" for i in range(2)
                      for n in ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")]
    expected_no_decay = ["transformer.wte.weight", "transformer.wpe.weight"]
    for i in range(2):
        expected_no_decay += [f"transformer.h.{i}.{n}" for n in (
            "ln_1.weight", "ln_1.bias", "attn.c_attn.bias", "attn.c_proj.bias",
            "ln_2.weight", "ln_2.bias", "mlp.c_fc.bias", "mlp.c_proj.bias")]
    expected_no_decay += ["transformer.ln_f.weight", "transformer.ln_f.bias"]
    assert sorted(decay) == sorted(expected_decay)
    assert sorted(no_decay) == sorted(expected_no_decay)
    assert AdamW(model.params, model.grads).decay == set(expected_decay)
    # a value head's weight is a (C, 1) matrix, its bias a vector
    assert decay_groups(ValueHead(8).params) == (["weight"], ["bias"])


def test_weight_decay_touches_only_the_decay_group():
    """With zero gradients the Adam direction is 0, so only decoupled decay moves parameters."""
    model = GPT(tiny_config())
    for value in model.params.values():
        value += 0.1  # biases off 0 so that decaying them would show
    before = model.state_dict()
    decay, no_decay = decay_groups(model.params)
    AdamW(model.params, model.grads, lr=0.1, weight_decay=0.5).step()
    for name in decay:
        np.testing.assert_allclose(model.params[name], before[name] * (1 - 0.1 * 0.5), rtol=1e-14)
    for name in no_decay:
        np.testing.assert_array_equal(model.params[name], before[name])


def test_adamw_matches_torch_over_several_steps():
    torch = pytest.importorskip("torch")
    model = GPT(tiny_config(), seed=0)
    rng = np.random.default_rng(0)
    for value in model.params.values():
        value += 0.1 * rng.standard_normal(value.shape)
    decay, no_decay = decay_groups(model.params)
    lr, betas, eps, wd = 1e-2, (0.9, 0.95), 1e-8, 0.1
    ours = AdamW(model.params, model.grads, lr=lr, betas=betas, eps=eps, weight_decay=wd)
    reference = {name: torch.tensor(value, requires_grad=True) for name, value in model.params.items()}
    torch_opt = torch.optim.AdamW(
        [{"params": [reference[n] for n in decay], "weight_decay": wd},
         {"params": [reference[n] for n in no_decay], "weight_decay": 0.0}],
        lr=lr, betas=betas, eps=eps)
    for step in range(6):
        for name, grad in model.grads.items():
            grad[...] = rng.standard_normal(grad.shape) * (0.01 if step % 2 else 1.0)
            reference[name].grad = torch.tensor(grad)
        ours.step()
        torch_opt.step()
    for name, value in model.params.items():
        np.testing.assert_allclose(value, reference[name].detach().numpy(), rtol=1e-12, atol=1e-14, err_msg=name)
        assert not np.allclose(value, GPT(tiny_config(), seed=0).params[name])


def test_adamw_state_dict_resumes_exactly():
    params, grads = small_problem()
    rng = np.random.default_rng(2)
    gradient_stream = [{k: rng.standard_normal(v.shape) for k, v in grads.items()} for _ in range(4)]

    def run(opt, steps):
        for g in steps:
            for k in grads:
                opt.grads[k][...] = g[k]
            opt.step()

    straight_params, straight_grads = small_problem()
    straight = AdamW(straight_params, straight_grads, lr=0.05, weight_decay=0.1)
    run(straight, gradient_stream)

    first = AdamW(params, grads, lr=0.05, weight_decay=0.1)
    run(first, gradient_stream[:2])
    state = first.state_dict()
    resumed_params = {k: v.copy() for k, v in params.items()}
    resumed = AdamW(resumed_params, {k: np.zeros_like(v) for k, v in grads.items()}, lr=0.05, weight_decay=0.1)
    resumed.load_state_dict(state)
    assert resumed.step_count == 2
    run(resumed, gradient_stream[2:])
    for k in params:
        np.testing.assert_array_equal(resumed_params[k], straight_params[k])

    bad = dict(state)
    del bad["m.w"]
    bad["v.b"] = np.zeros(3)
    bad["extra"] = np.zeros(1)
    with pytest.raises(ValueError, match=r"missing \['m.w'\].*unexpected \['extra'\].*wrong shape \['v.b'\]"):
        resumed.load_state_dict(bad)


# ----------------------------------------------------------------------------------------------
# gradient clipping
# ----------------------------------------------------------------------------------------------
def test_clip_grad_norm():
    grads = {"a": np.array([3.0, 0.0]), "b": np.array([[0.0], [4.0]])}
    assert clip_grad_norm(grads, 10.0) == pytest.approx(5.0, rel=1e-15)
    np.testing.assert_array_equal(grads["a"], [3.0, 0.0])  # under the limit: untouched
    assert clip_grad_norm(grads, None) == pytest.approx(5.0, rel=1e-15)
    norm = clip_grad_norm(grads, 1.0)
    assert norm == pytest.approx(5.0, rel=1e-15)  # the norm before clipping
    scale = 1.0 / (5.0 + 1e-6)
    np.testing.assert_allclose(grads["a"], [3.0 * scale, 0.0], rtol=1e-15)
    np.testing.assert_allclose(grads["b"], [[0.0], [4.0 * scale]], rtol=1e-15)
    assert clip_grad_norm(grads, None) == pytest.approx(1.0, abs=1e-6)


def test_clip_grad_norm_scales_a_flat_gradient_the_views_share_in_one_call_with_the_same_numbers():
    flat = np.random.default_rng(0).standard_normal(10).astype(np.float32)
    per_array = {"a": flat[:4].copy().reshape(2, 2), "b": flat[4:].copy()}
    views = {"a": flat[:4].reshape(2, 2), "b": flat[4:]}
    assert clip_grad_norm(views, 0.5, flat=flat) == clip_grad_norm(per_array, 0.5)
    np.testing.assert_array_equal(flat, np.concatenate([per_array["a"].ravel(), per_array["b"]]))
    assert clip_grad_norm(views, None) == pytest.approx(0.5, rel=1e-5)


def test_clip_grad_norm_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    grads = {"a": rng.standard_normal((4, 3)), "b": rng.standard_normal(5)}
    tensors = [torch.zeros(4, 3, dtype=torch.float64, requires_grad=True),
               torch.zeros(5, dtype=torch.float64, requires_grad=True)]
    for t, g in zip(tensors, grads.values()):
        t.grad = torch.tensor(g)
    torch_norm = torch.nn.utils.clip_grad_norm_(tensors, 0.5)
    norm = clip_grad_norm(grads, 0.5)
    assert norm == pytest.approx(float(torch_norm), rel=1e-14)
    for t, g in zip(tensors, grads.values()):
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-12)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_clip_grad_norm_non_finite_raises_and_leaves_grads(bad):
    grads = {"fine": np.ones(3), "broken": np.array([1.0, bad])}
    with pytest.raises(FloatingPointError, match="non-finite gradients in broken$"):
        clip_grad_norm(grads, 1.0)
    np.testing.assert_array_equal(grads["fine"], np.ones(3))
    many = {f"g{i}": np.array([bad]) for i in range(8)}
    with pytest.raises(FloatingPointError, match="in g0, g1, g2, g3, g4 and 3 more$"):
        clip_grad_norm(many, 1.0)


def test_clip_grad_norm_of_huge_float32_gradients():
    """‖g‖² overflows float32 (1e20² > 3.4e38) although g is finite: the norm is still right."""
    grads = {"a": np.full(4, 1e20, np.float32), "b": np.ones(2, np.float32)}
    norm = clip_grad_norm(grads, 1.0)
    assert norm == pytest.approx(2e20, rel=1e-6)
    assert grads["a"].dtype == np.float32
    np.testing.assert_allclose(grads["a"], 0.5, rtol=1e-6)


@pytest.mark.parametrize("bad", [0, -1.0, "1", True])
def test_clip_grad_norm_rejects_a_bad_max_norm(bad):
    with pytest.raises(ValueError, match="max_norm must be None or a positive number"):
        clip_grad_norm({"a": np.ones(2)}, bad)


# ----------------------------------------------------------------------------------------------
# schedules
# ----------------------------------------------------------------------------------------------
def test_cosine_schedule_values():
    kwargs = dict(max_lr=1.0, warmup_steps=10, total_steps=110, min_lr=0.1)
    assert cosine_schedule(0, **kwargs) == pytest.approx(0.1)  # (0 + 1) / 10
    assert cosine_schedule(4, **kwargs) == pytest.approx(0.5)
    assert cosine_schedule(9, **kwargs) == pytest.approx(1.0)
    assert cosine_schedule(10, **kwargs) == pytest.approx(1.0)  # warmup done: the peak
    assert cosine_schedule(60, **kwargs) == pytest.approx(0.55)  # halfway: (max + min) / 2
    assert cosine_schedule(35, **kwargs) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi / 4)))
    assert cosine_schedule(110, **kwargs) == pytest.approx(0.1)  # end: min_lr
    assert cosine_schedule(500, **kwargs) == pytest.approx(0.1)  # and stays there
    values = [cosine_schedule(s, **kwargs) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(values, values[1:]))
    assert cosine_schedule(0, max_lr=2.0, warmup_steps=0, total_steps=4) == pytest.approx(2.0)
    assert cosine_schedule(4, max_lr=2.0, warmup_steps=0, total_steps=4) == pytest.approx(0.0)


def test_linear_schedule_values():
    assert linear_schedule(0, 3e-4, 100) == pytest.approx(3e-4)
    assert linear_schedule(25, 3e-4, 100) == pytest.approx(2.25e-4)
    assert linear_schedule(100, 3e-4, 100) == 0.0
    assert linear_schedule(150, 3e-4, 100) == 0.0


# ----------------------------------------------------------------------------------------------
# checkpoints
# ----------------------------------------------------------------------------------------------
IDX = np.array([[1, 5, 5, 2, 1, 1, 7, 12], [0, 3, 3, 9, 1, 3, 3, 3]])


def train_steps(model, optimizer, rng, steps):
    for _ in range(steps):
        idx = rng.integers(0, 13, size=(2, 8))
        targets = np.roll(idx, -1, axis=1)
        targets[:, -1] = -1
        model.zero_grad()
        _, dlogits = cross_entropy(model.forward(idx), targets)
        model.backward(dlogits)
        clip_grad_norm(model.grads, 1.0)
        optimizer.step()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_checkpoint_round_trip_resumes_identically(tmp_path, dtype):
    config = tiny_config(dtype)
    model = GPT(config, seed=0)
    optimizer = AdamW(model.params, model.grads, lr=1e-2, weight_decay=0.1)
    rng = np.random.default_rng(7)
    train_steps(model, optimizer, rng, 2)
    path = tmp_path / "ckpt" / "model.npz"  # parent directory is created
    save_checkpoint(path, model.params, kind="gpt", config=config.to_dict(), optimizer_state=optimizer.state_dict(),
                    step=2, rng=rng, extra={"note": "hello", "losses": [1.5, 1.25]})
    train_steps(model, optimizer, rng, 2)  # the uninterrupted run

    loaded = load_checkpoint(path)
    assert loaded["step"] == 2 and loaded["extra"] == {"note": "hello", "losses": [1.5, 1.25]}
    resumed_config = GPTConfig.from_dict(loaded["config"])
    assert resumed_config == config
    resumed = GPT(resumed_config, seed=123)
    resumed.load_state_dict(loaded["params"])
    assert all(loaded["params"][k].dtype == dtype for k in resumed.params)
    resumed_optimizer = AdamW(resumed.params, resumed.grads, lr=1e-2, weight_decay=0.1)
    resumed_optimizer.load_state_dict(loaded["optimizer_state"])
    assert resumed_optimizer.step_count == 2
    train_steps(resumed, resumed_optimizer, loaded["rng"], 2)
    for name in model.params:
        np.testing.assert_array_equal(resumed.params[name], model.params[name], err_msg=name)
        np.testing.assert_array_equal(resumed_optimizer.m[name], optimizer.m[name], err_msg=name)
    assert loaded["rng"].random() == rng.random()  # the random stream continues identically


def test_checkpoint_without_optional_parts(tmp_path):
    params = {"w": np.arange(6.0).reshape(2, 3)}
    save_checkpoint(tmp_path / "a.npz", params, kind="gpt")
    loaded = load_checkpoint(str(tmp_path / "a.npz"))
    np.testing.assert_array_equal(loaded["params"]["w"], params["w"])
    assert loaded["optimizer_state"] == {} and loaded["rng"] is None and loaded["config"] is None
    assert loaded["step"] == 0 and loaded["extra"] == {}


def test_checkpoint_write_is_atomic(tmp_path):
    path = tmp_path / "model.npz"
    save_checkpoint(path, {"w": np.ones(3)}, step=1, kind="gpt")
    save_checkpoint(path, {"w": np.full(3, 2.0)}, step=2, kind="gpt")  # overwrite
    assert os.listdir(tmp_path) == ["model.npz"]
    assert load_checkpoint(path)["step"] == 2

    class Unsavable:
        def __array__(self, dtype=None, copy=None):
            raise RuntimeError("cannot convert")

    with pytest.raises(RuntimeError, match="cannot convert"):
        save_checkpoint(path, {"w": np.zeros(3), "bad": Unsavable()}, step=3, kind="gpt")
    assert os.listdir(tmp_path) == ["model.npz"]  # no temporary file left behind
    loaded = load_checkpoint(path)  # and the previous checkpoint is intact
    assert loaded["step"] == 2
    np.testing.assert_array_equal(loaded["params"]["w"], np.full(3, 2.0))


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_checkpoint_file_mode_follows_umask(tmp_path):
    """A checkpoint should be readable like any file the user writes (np.save gives 0o666 & ~umask);
    tempfile.mkstemp creates 0o600 and the atomic rename keeps that mode."""
    umask = os.umask(0o022)
    os.umask(umask)
    save_checkpoint(tmp_path / "model.npz", {"w": np.ones(3)}, kind="gpt")
    np.save(tmp_path / "plain.npy", np.ones(3))
    expected = stat.S_IMODE(os.stat(tmp_path / "plain.npy").st_mode)
    assert expected == 0o666 & ~umask
    assert stat.S_IMODE(os.stat(tmp_path / "model.npz").st_mode) == expected


def test_checkpoint_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        load_checkpoint(tmp_path / "nope.npz")


def corrupt(path, how):
    data = bytearray(path.read_bytes())
    if how == "truncated":
        path.write_bytes(bytes(data[:len(data) // 2]))
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "garbage":
        path.write_bytes(b"this is not a checkpoint at all" * 10)
    elif how == "flipped":  # a byte inside the stored array data: the zip CRC must catch it
        offset = data.find(b"\x00\x00\x00\x00\x00\x00\xf0?")  # the float64 1.0 of "w"
        assert offset > 0
        data[offset + 7] ^= 0xFF
        path.write_bytes(bytes(data))
    else:
        raise AssertionError(how)


@pytest.mark.parametrize("how", ["truncated", "empty", "garbage", "flipped"])
def test_checkpoint_corrupted_file_raises_value_error_naming_the_path(tmp_path, how):
    path = tmp_path / "model.npz"
    save_checkpoint(path, {"w": np.ones((4, 4))}, step=5, extra={"x": 1}, kind="gpt")
    corrupt(path, how)
    with pytest.raises(ValueError, match="model.npz"):
        load_checkpoint(path)


def test_checkpoint_not_minippo_or_wrong_version(tmp_path):
    path = tmp_path / "plain.npz"
    np.savez(path, w=np.ones(3))
    with pytest.raises(ValueError, match=r"plain.npz.*no 'meta'"):
        load_checkpoint(path)
    path = tmp_path / "future.npz"
    np.savez(path, meta=np.array('{"format_version": 99}'))
    with pytest.raises(ValueError, match=r"future.npz.*format 99"):
        load_checkpoint(path)
    path = tmp_path / "badjson.npz"
    np.savez(path, meta=np.array("{not json"))
    with pytest.raises(ValueError, match=r"badjson.npz.*not valid JSON"):
        load_checkpoint(path)
    path = tmp_path / "array.npy"
    np.save(path, np.ones(3))
    with pytest.raises(ValueError, match=r"array.npy.*not an .npz archive"):
        load_checkpoint(path)
    path = tmp_path / "badrng.npz"
    save_checkpoint(path, {"w": np.ones(3)}, rng=np.random.default_rng(0), kind="gpt")
    with np.load(path) as archive:
        contents = dict(archive)
    meta = json.loads(str(contents["meta"]))
    meta["rng_state"] = {"bit_generator": "NoSuchGenerator"}
    np.savez(path, **{**contents, "meta": np.array(json.dumps(meta))})
    with pytest.raises(ValueError, match=r"badrng.npz.*random-generator state is invalid"):
        load_checkpoint(path)


def test_checkpoint_extra_must_be_an_object_and_a_directory_is_named(tmp_path):
    path = tmp_path / "listextra.npz"
    meta = {"format_version": 1, "config": None, "step": 0, "rng_state": None, "extra": [1, 2]}
    np.savez(path, meta=np.array(json.dumps(meta)))
    with pytest.raises(ValueError, match=r"listextra.npz.*'extra' metadata must be a JSON object, got list"):
        load_checkpoint(path)
    with pytest.raises(IsADirectoryError, match="is a directory"):
        load_checkpoint(tmp_path)


def test_load_state_dict_refuses_non_numbers_and_keeps_long_key_lists_short():
    head = ValueHead(3, dtype=np.float64)
    for bad, shown in [(np.array([["x"], ["y"], ["z"]]), "<U1"), (np.ones((3, 1)) * (1 + 2j), "complex128")]:
        with pytest.raises(ValueError, match=rf"weight: dtype {shown} is not real numbers"):
            head.load_state_dict({"weight": bad, "bias": np.zeros(1)})
    model = GPT(GPTConfig(vocab_size=5, block_size=4, n_layer=3, n_head=1, n_embd=2), seed=0)
    with pytest.raises(ValueError) as error:
        model.load_state_dict({})
    message = str(error.value)
    assert f"{len(model.params)} missing keys: transformer.wte.weight, transformer.wpe.weight" in message
    assert f"and {len(model.params) - 5} more" in message and len(message) < 300
    wider = GPT(GPTConfig(vocab_size=5, block_size=4, n_layer=3, n_head=1, n_embd=4), seed=0)
    with pytest.raises(ValueError) as error:
        model.load_state_dict(wider.state_dict())
    message = str(error.value)
    assert message.startswith("cannot load state_dict: "
                              "transformer.wte.weight: shape (5, 4) in state_dict, expected (5, 2)")
    assert f"and {len(model.params) - 5} more" in message and len(message) < 500


@pytest.mark.parametrize("bit_generator", [np.random.PCG64, np.random.MT19937, np.random.Philox, np.random.SFC64])
def test_checkpoint_keeps_any_numpy_bit_generator(tmp_path, bit_generator):
    """MT19937 and Philox states hold arrays; they go through the JSON metadata as lists."""
    rng = np.random.Generator(bit_generator(5))
    rng.random(3)
    save_checkpoint(tmp_path / "rng.npz", {"w": np.ones(2)}, rng=rng, kind="gpt")
    restored = load_checkpoint(tmp_path / "rng.npz")["rng"]
    assert type(restored.bit_generator) is bit_generator
    np.testing.assert_array_equal(restored.random(6), rng.random(6))


def write_format_1(path, params, extra, config=None):
    """A checkpoint as the previous minippo wrote it: format 1, no kind."""
    meta = {"format_version": 1, "config": config, "step": 0, "rng_state": None, "extra": extra}
    np.savez(path, **{f"params/{name}": value for name, value in params.items()}, meta=np.array(json.dumps(meta)))


def test_checkpoints_record_their_kind_and_loaders_ask_for_theirs(tmp_path):
    path = tmp_path / "rm.npz"
    save_checkpoint(path, {"w": np.ones(2)}, kind="reward_model")
    assert load_checkpoint(path)["kind"] == "reward_model" == load_checkpoint(path, kind="reward_model")["kind"]
    with pytest.raises(ValueError) as error:
        load_checkpoint(path, kind="ppo_policy")
    assert str(error.value) == (f"checkpoint {str(path)!r} holds a reward model (load it with RewardModel.load), "
                                f"not a control-task PPO policy")
    with pytest.raises(ValueError,
                       match=r"^kind must be one of \('gpt', 'reward_model', 'ppo_policy'\), got 'policy'$"):
        save_checkpoint(tmp_path / "x.npz", {"w": np.ones(2)}, kind="policy")
    with pytest.raises(TypeError, match="kind"):
        save_checkpoint(tmp_path / "x.npz", {"w": np.ones(2)})  # every checkpoint says what it holds
    assert not (tmp_path / "x.npz").exists()


def test_format_1_checkpoints_get_their_kind_from_one_legacy_rule(tmp_path):
    for extra, kind in [({"kind": "reward_model", "gain": 1.0, "bias": 0.0}, "reward_model"),
                        ({"obs_rms": None}, "ppo_policy"), ({"kind": "policy", "tokenizer": "byte"}, "gpt"),
                        ({}, "gpt")]:
        write_format_1(tmp_path / "old.npz", {"w": np.ones(2)}, extra)
        state = load_checkpoint(tmp_path / "old.npz", kind=kind)
        assert state["kind"] == kind and state["extra"] == extra
        np.testing.assert_array_equal(state["params"]["w"], np.ones(2))
    meta = {"format_version": 2, "kind": "mystery", "config": None, "step": 0, "rng_state": None, "extra": {}}
    np.savez(tmp_path / "odd.npz", meta=np.array(json.dumps(meta)))
    with pytest.raises(ValueError, match=r"odd.npz': unknown checkpoint kind 'mystery'"):
        load_checkpoint(tmp_path / "odd.npz")


def test_checkpoint_os_errors_are_reported_as_such_naming_the_file(tmp_path, monkeypatch):
    """No permission or a failing disk is not a damaged checkpoint (monkeypatched: tests may run as root)."""
    path = tmp_path / "model.npz"
    save_checkpoint(path, {"w": np.ones(3)}, kind="gpt")

    def refuse(name, mode="r", *args, **kwargs):
        raise PermissionError(13, "Permission denied", name)

    with monkeypatch.context() as patch:
        patch.setattr(checkpoint_module, "open", refuse, raising=False)
        with pytest.raises(PermissionError) as error:
            load_checkpoint(path)
    assert str(error.value) == f"[Errno 13] Permission denied: {str(path)!r}"

    def failing_disk(*args, **kwargs):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(checkpoint_module.np, "load", failing_disk)
    with pytest.raises(OSError) as error:
        load_checkpoint(path)
    assert type(error.value) is OSError and str(error.value) == f"[Errno 5] Input/output error: {str(path)!r}"
