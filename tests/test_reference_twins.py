"""Every optimised kernel of minippo.nn against its textbook twin ``<kernel>_reference`` (float64, tight
tolerances; forward and backward; masks and padding), and the twins' own gradients against finite
differences, so that a twin is a trustworthy first read."""
import numpy as np
import pytest

from minippo.nn.attention import (
    MASKED_SCORE,
    SAFE_SCORE,
    attention_backward,
    attention_backward_reference,
    attention_bias,
    attention_decode,
    attention_forward,
    attention_forward_reference,
    max_norm,
)
from minippo.nn.categorical import cross_entropy, cross_entropy_reference
from minippo.nn.generation import decode_step, decode_step_reference
from minippo.nn.gpt import positions_and_bias
from minippo.nn.layers import (
    embedding_backward,
    embedding_backward_reference,
    gelu_backward,
    gelu_backward_reference,
    gelu_forward,
    gelu_forward_reference,
    layernorm_backward,
    layernorm_backward_reference,
    layernorm_forward,
    layernorm_forward_reference,
)
from minippo.nn.sampling import TokenSampler, sample_reference
from tests.gradcheck import check_gradients
from tests.test_gpt import PROMPT, PROMPT_MASK, make_model


@pytest.fixture
def rng():
    return np.random.default_rng(2024)


def test_layernorm_twin(rng):
    x = 3.0 + 2.0 * rng.standard_normal((6, 8))
    weight, bias = 1.0 + 0.5 * rng.standard_normal(8), 0.5 * rng.standard_normal(8)
    dout = rng.standard_normal((6, 8))
    fast, twin = layernorm_forward(x, weight, bias), layernorm_forward_reference(x, weight, bias)
    for a, b in zip(fast, twin):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-13)
    grads = {}
    for name, backward in (("fast", layernorm_backward), ("twin", layernorm_backward_reference)):
        dweight, dbias = np.full(8, 0.5), np.full(8, -0.5)  # both must add into what is there
        grads[name] = (backward(dout, fast[1], fast[2], weight, dweight, dbias), dweight, dbias)
    for a, b in zip(grads["fast"], grads["twin"]):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)
    dx, dweight, dbias = grads["twin"]
    check_gradients(lambda: np.sum(dout * layernorm_forward_reference(x, weight, bias)[0]),
                    {"x": x, "weight": weight, "bias": bias}, {"x": dx, "weight": dweight - 0.5, "bias": dbias + 0.5})


def test_gelu_twin(rng):
    x = np.concatenate([3.0 * rng.standard_normal(50), [-6.0, -1.0, 0.0, 1.0, 6.0]])
    dout = rng.standard_normal(x.shape)
    out, gate = gelu_forward(x)
    out_twin, gate_twin = gelu_forward_reference(x)
    np.testing.assert_allclose(out, out_twin, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(gate, gate_twin, rtol=1e-14, atol=1e-15)
    dx_twin = gelu_backward_reference(dout, x, out, gate)
    np.testing.assert_allclose(gelu_backward(dout, x, out, gate), dx_twin, rtol=1e-12, atol=1e-14)
    check_gradients(lambda: np.sum(dout * gelu_forward_reference(x)[0]), {"x": x}, {"x": dx_twin})


def test_embedding_backward_twin_accumulates_repeated_ids(rng):
    ids = np.array([[1, 3, 1, 1], [3, 3, 0, 6]])
    dout = rng.standard_normal((2, 4, 5))
    fast, twin = np.full((7, 5), 0.25), np.full((7, 5), 0.25)
    embedding_backward(dout, ids, fast)
    embedding_backward_reference(dout, ids, twin)
    np.testing.assert_allclose(fast, twin, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(twin[1], 0.25 + dout[0, 0] + dout[0, 2] + dout[0, 3], rtol=1e-14)


def qkv(rng, B=3, nh=2, T_q=6, T_k=6, hs=4, scale=1.0):
    return (scale * rng.standard_normal((B, nh, T_q, hs)), scale * rng.standard_normal((B, nh, T_k, hs)),
            rng.standard_normal((B, nh, T_k, hs)))


KEY_MASK = np.array([[1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1], [0, 0, 0, 0, 1, 1]])


@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("scale", [1.0, 12.0])  # 12: beyond SAFE_SCORE, the fast version subtracts the row max
@pytest.mark.parametrize("blocking", [{"causal": False}, {"causal": True, "block_size": 2}])
def test_attention_twin_forward_and_backward(rng, padded, scale, blocking):
    q, k, v = qkv(rng, scale=scale)
    assert (max_norm(q / 2.0) * max_norm(k) >= SAFE_SCORE) == (scale > 1)
    bias = attention_bias(np.arange(6), 6, KEY_MASK if padded else None, np.float64)
    y, weights = attention_forward(q, k, v, bias, **blocking)
    y_twin, att = attention_forward_reference(q, k, v, bias)
    np.testing.assert_allclose(y, y_twin, rtol=1e-11, atol=1e-13)
    if padded:
        assert np.all(y_twin[2, :, :4] == 0.0)  # pad queries: nothing to attend to
    dy = rng.standard_normal(y.shape)
    for fast, twin in zip(attention_backward(dy, q, k, v, y, weights), attention_backward_reference(dy, q, k, v, att)):
        np.testing.assert_allclose(fast, twin, rtol=1e-10, atol=1e-11 * scale)


def test_attention_twin_gradient_and_decode(rng):
    q, k, v = qkv(rng)
    bias = attention_bias(np.arange(6), 6, KEY_MASK, np.float64)
    dy = rng.standard_normal(q.shape) * KEY_MASK[:, None, :, None]  # pad queries carry no weight
    att = attention_forward_reference(q, k, v, bias)[1]
    dq, dk, dv = attention_backward_reference(dy, q, k, v, att)
    check_gradients(lambda: np.sum(dy * attention_forward_reference(q, k, v, bias)[0]),
                    {"q": q, "k": k, "v": v}, {"q": dq, "k": dk, "v": dv})
    # the decode kernel: the last query alone against every key, padded or not
    for decode_bias in (None, bias[:, :, -1:]):
        y = attention_decode(q[:, :, -1], k, v, decode_bias)
        twin = attention_forward_reference(q[:, :, -1:], k, v, decode_bias)[0][:, :, 0]
        np.testing.assert_allclose(y, twin, rtol=1e-12, atol=1e-13)
    assert np.all(bias[2, 0, 0, :] == MASKED_SCORE)  # row 2's first query sees no key at all


@pytest.mark.parametrize("ignore_index", [-1, -100])
def test_cross_entropy_twin(rng, ignore_index):
    logits = 2.0 * rng.standard_normal((3, 5, 7))
    targets = rng.integers(0, 7, (3, 5))
    targets[0, 4] = targets[1, :2] = ignore_index
    loss, dlogits = cross_entropy(logits, targets, ignore_index=ignore_index)
    loss_twin, dlogits_twin = cross_entropy_reference(logits, targets, ignore_index=ignore_index)
    assert loss == pytest.approx(loss_twin, rel=1e-13)
    np.testing.assert_allclose(dlogits, dlogits_twin, rtol=1e-12, atol=1e-16)
    assert np.all(dlogits_twin[targets == ignore_index] == 0.0)
    check_gradients(lambda: cross_entropy_reference(logits, targets, ignore_index)[0],
                    {"logits": logits}, {"logits": dlogits_twin})


@pytest.mark.parametrize("vocab", [13, 257])
@pytest.mark.parametrize("temperature", [0.0, 0.6, 1.0, 1.7])
@pytest.mark.parametrize("truncation", [{}, {"top_k": 4}, {"top_p": 0.7}, {"top_k": 6, "top_p": 0.5}])
def test_sampler_twin_picks_the_same_tokens_for_the_same_seed(vocab, temperature, truncation):
    logits = 3.0 * np.random.default_rng(vocab).standard_normal((200, vocab))
    options = (temperature, truncation.get("top_k"), truncation.get("top_p"))
    token, logprob = TokenSampler(*options, vocab, np.random.default_rng(5)).sample(logits)
    token_twin, logprob_twin = sample_reference(logits, *options, np.random.default_rng(5))
    np.testing.assert_array_equal(token, token_twin)
    np.testing.assert_allclose(logprob, logprob_twin, rtol=1e-12, atol=1e-12)
    assert len(np.unique(token)) > (1 if temperature == 0 or "top_k" in truncation else 4)


@pytest.mark.parametrize("padded", [False, True])
def test_decode_step_twin_is_the_full_forward_at_the_last_position(padded):
    """A KV-cache decode step after a prefill of the prompt equals the whole forward over the sequence."""
    model = make_model()
    config = model.config
    mask = PROMPT_MASK if padded else np.ones_like(PROMPT)
    B, T0 = PROMPT.shape
    positions, bias = positions_and_bias(mask if padded else None, B, T0, config.dtype)
    prompt = model.serial_forward(PROMPT, positions, bias, np.empty((B, T0, config.n_embd)))
    kv_shape = (B, config.n_head, T0 + 1, config.head_size)
    kv_caches = [(np.empty(kv_shape), np.empty(kv_shape)) for _ in range(config.n_layer)]
    for (keys, values), block in zip(kv_caches, prompt.blocks):
        keys[:, :, :T0], values[:, :, :T0] = block.k, block.v
    token = np.array([7, 2, 11])
    tokens = np.concatenate([PROMPT, token[:, None]], axis=1)
    full_mask = np.concatenate([mask, np.ones((B, 1), dtype=int)], axis=1)
    decode_bias = attention_bias(np.array([T0]), T0 + 1, full_mask, config.dtype) if padded else None
    hidden = decode_step(model, token, positions[:, -1] + 1, decode_bias, kv_caches, T0)
    expected = decode_step_reference(model, tokens, full_mask if padded else None)
    np.testing.assert_allclose(hidden, expected, rtol=1e-12, atol=1e-12)
