"""Every elementary op of minippo.nn alone: forward against a direct formula, backward against float64
central finite differences of a scalar loss L = Σ R ⊙ out with a fixed random R."""
import math

import numpy as np
import pytest

from minippo.nn.attention import (
    MASKED_SCORE,
    SAFE_SCORE,
    attention_backward,
    attention_bias,
    attention_decode,
    attention_forward,
    max_norm,
    query_blocks,
)
from minippo.nn.categorical import (
    cross_entropy,
    entropy_backward,
    entropy_forward,
    log_softmax,
    token_logprobs_backward,
    token_logprobs_forward,
)
from minippo.nn.layers import (
    embedding_backward,
    embedding_forward,
    gelu_backward,
    gelu_forward,
    layernorm_backward,
    layernorm_forward,
    layernorm_normalize,
    linear_backward,
    linear_forward,
    tanh_backward,
    tanh_forward,
)
from tests.gradcheck import (
    assert_gradient_close,
    assert_nonzero,
    check_gradients,
    numerical_gradient,
    relative_error,
)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


# ----------------------------------------------------------------------------------------------
# the checker itself must be able to fail
# ----------------------------------------------------------------------------------------------
def test_gradcheck_detects_a_wrong_gradient(rng):
    x = rng.standard_normal((4, 3))
    W = rng.standard_normal((3, 5))
    R = rng.standard_normal((4, 5))
    numerical = numerical_gradient(lambda: np.sum(R * (x @ W)), W)
    analytic = x.T @ R
    assert_gradient_close(numerical, analytic)  # right
    assert relative_error(numerical, analytic) < 1e-9
    with pytest.raises(AssertionError, match="relative error"):
        assert_gradient_close(numerical, 1.01 * analytic)  # 1 % too large
    with pytest.raises(AssertionError, match="relative error"):
        assert_gradient_close(numerical, analytic + 1e-4 * rng.standard_normal(analytic.shape))
    wrong = analytic.copy()
    wrong[0, 0] = 0.0  # one entry missing
    with pytest.raises(AssertionError, match="relative error"):
        assert_gradient_close(numerical, wrong)
    with pytest.raises(AssertionError, match="vacuous"):
        assert_nonzero(np.zeros(3))


def test_numerical_gradient_restores_input(rng):
    x = rng.standard_normal((2, 3))
    before = x.copy()
    numerical_gradient(lambda: np.sum(np.sin(x)), x)
    np.testing.assert_array_equal(x, before)
    np.testing.assert_allclose(numerical_gradient(lambda: np.sum(np.sin(x)), x), np.cos(x), rtol=1e-9)


# ----------------------------------------------------------------------------------------------
# linear
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("with_bias", [True, False])
def test_linear(rng, with_bias):
    x = rng.standard_normal((6, 4))
    W = rng.standard_normal((4, 3))
    b = rng.standard_normal(3) if with_bias else None
    R = rng.standard_normal((6, 3))
    out = linear_forward(x, W, b)
    expected = x @ W + (b if with_bias else 0.0)
    np.testing.assert_allclose(out, expected, rtol=1e-13, atol=1e-13)

    prior_dW = rng.standard_normal(W.shape)  # backward must ADD into the buffers
    dW = prior_dW.copy()
    db = np.full(3, 0.5) if with_bias else None
    dx = linear_backward(R, x, W, dW, db)

    def loss():
        return np.sum(R * linear_forward(x, W, b))

    arrays = {"x": x, "W": W}
    analytic = {"x": dx, "W": dW - prior_dW}
    if with_bias:
        arrays["b"] = b
        analytic["b"] = db - 0.5
    check_gradients(loss, arrays, analytic)


def test_linear_does_not_modify_inputs(rng):
    x, W, b = rng.standard_normal((3, 2)), rng.standard_normal((2, 2)), rng.standard_normal(2)
    copies = [a.copy() for a in (x, W, b)]
    linear_forward(x, W, b)
    for a, c in zip((x, W, b), copies):
        np.testing.assert_array_equal(a, c)


# ----------------------------------------------------------------------------------------------
# LayerNorm
# ----------------------------------------------------------------------------------------------
def test_layernorm(rng):
    x = 3.0 + 2.0 * rng.standard_normal((5, 8))  # nonzero mean, non-unit scale
    weight = 1.0 + 0.5 * rng.standard_normal(8)  # off 1 so a missing γ shows
    bias = 0.5 * rng.standard_normal(8)  # off 0 so a missing β shows
    R = rng.standard_normal((5, 8))
    out, norm, rstd = layernorm_forward(x, weight, bias)
    direct = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5) * weight + bias
    np.testing.assert_allclose(out, direct, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(rstd[:, 0], 1.0 / np.sqrt(x.var(-1) + 1e-5), rtol=1e-12)

    dweight, dbias = np.full(8, 0.25), np.full(8, -0.25)
    dx = layernorm_backward(R, norm, rstd, weight, dweight, dbias)

    def loss():
        return np.sum(R * layernorm_forward(x, weight, bias)[0])

    check_gradients(loss, {"x": x, "weight": weight, "bias": bias},
                    {"x": dx, "weight": dweight - 0.25, "bias": dbias + 0.25})


def test_layernorm_normalize_is_layernorm_without_gain_and_bias(rng):
    x = 3.0 + 2.0 * rng.standard_normal((5, 8))
    norm, rstd = layernorm_normalize(x)
    np.testing.assert_allclose(norm.mean(-1), 0.0, atol=1e-14)
    np.testing.assert_allclose(norm, (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5),
                               rtol=1e-12)
    out, norm_again, rstd_again = layernorm_forward(x, np.ones(8), np.zeros(8))
    np.testing.assert_array_equal(out, norm)
    np.testing.assert_array_equal(rstd_again, rstd)


def test_layernorm_float32_stays_float32(rng):
    x = rng.standard_normal((3, 4)).astype(np.float32)
    w, b = np.ones(4, np.float32), np.zeros(4, np.float32)
    out, norm, rstd = layernorm_forward(x, w, b)
    assert out.dtype == norm.dtype == rstd.dtype == np.float32
    dw, db = np.zeros_like(w), np.zeros_like(b)
    assert layernorm_backward(np.ones_like(x), norm, rstd, w, dw, db).dtype == np.float32


# ----------------------------------------------------------------------------------------------
# GELU and tanh
# ----------------------------------------------------------------------------------------------
def test_gelu(rng):
    x = np.concatenate([3.0 * rng.standard_normal(40), [-6.0, -1.0, 0.0, 1.0, 6.0]])
    R = rng.standard_normal(x.shape)
    out, gate = gelu_forward(x)
    direct = 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))
    np.testing.assert_allclose(out, direct, rtol=1e-14, atol=1e-15)
    assert out[-2] == pytest.approx(0.8411919906082768, abs=1e-15)  # GPT-2's tanh GELU at 1
    assert out[-3] == 0.0
    dx = gelu_backward(R, x, out, gate)
    numerical = numerical_gradient(lambda: np.sum(R * gelu_forward(x)[0]), x)
    assert_gradient_close(numerical, dx, "gelu")
    np.testing.assert_allclose(numerical, dx, rtol=1e-7, atol=1e-9)  # elementwise too


def test_gelu_does_not_modify_input(rng):
    x = rng.standard_normal(10)
    before = x.copy()
    out, gate = gelu_forward(x)
    gelu_backward(np.ones_like(x), x, out, gate)
    np.testing.assert_array_equal(x, before)


def test_tanh(rng):
    x = 2.0 * rng.standard_normal((4, 5))
    R = rng.standard_normal(x.shape)
    out = tanh_forward(x)
    np.testing.assert_allclose(out, np.tanh(x), rtol=1e-15)
    dx = tanh_backward(R, out)
    check_gradients(lambda: np.sum(R * tanh_forward(x)), {"x": x}, {"x": dx})


# ----------------------------------------------------------------------------------------------
# embedding (repeated ids must accumulate)
# ----------------------------------------------------------------------------------------------
def test_embedding_with_repeated_ids(rng):
    table = rng.standard_normal((7, 4))
    ids = np.array([[1, 3, 1, 1], [3, 3, 0, 6]])
    R = rng.standard_normal((2, 4, 4))
    out = embedding_forward(ids, table)
    assert out.shape == (2, 4, 4)
    np.testing.assert_array_equal(out[0, 2], table[1])
    dtable = np.full_like(table, 0.1)
    embedding_backward(R, ids, dtable)
    dtable -= 0.1
    check_gradients(lambda: np.sum(R * embedding_forward(ids, table)), {"table": table}, {"table": dtable})
    # exact values: row 1 gets three contributions, unused rows none
    np.testing.assert_allclose(dtable[1], R[0, 0] + R[0, 2] + R[0, 3], rtol=1e-14)
    np.testing.assert_allclose(dtable[3], R[0, 1] + R[1, 0] + R[1, 1], rtol=1e-14)
    np.testing.assert_array_equal(dtable[[2, 4, 5]], 0.0)


# ----------------------------------------------------------------------------------------------
# attention
# ----------------------------------------------------------------------------------------------
def naive_attention(q, k, v, query_positions, key_mask=None):
    """Per batch row, per head, per query: softmax over the allowed keys, with explicit loops."""
    B, nh, Tq, hs = q.shape
    Tk = k.shape[2]
    y = np.zeros_like(q)
    for b in range(B):
        for h in range(nh):
            for i in range(Tq):
                allowed = [j for j in range(Tk) if j <= query_positions[i]
                           and (key_mask is None or key_mask[b, j] == 1)]
                if not allowed:
                    continue
                scores = np.array([q[b, h, i] @ k[b, h, j] / math.sqrt(hs) for j in allowed])
                weights = np.exp(scores - scores.max())
                weights /= weights.sum()
                y[b, h, i] = sum(w * v[b, h, j] for w, j in zip(weights, allowed))
    return y


def qkv(rng, B=2, nh=2, Tq=5, Tk=5, hs=3):
    return (rng.standard_normal((B, nh, Tq, hs)), rng.standard_normal((B, nh, Tk, hs)),
            rng.standard_normal((B, nh, Tk, hs)))


def test_attention_bias_values():
    bias = attention_bias(np.arange(3), 3, dtype=np.float64)
    assert bias.shape == (3, 3) and bias.dtype == np.float64
    np.testing.assert_array_equal(bias == 0, np.tril(np.ones((3, 3), bool)))
    assert np.all(bias[np.triu_indices(3, 1)] == MASKED_SCORE)
    masked = attention_bias(np.arange(3), 3, key_mask=np.array([[0, 1, 1], [1, 1, 1]]), dtype=np.float32)
    assert masked.shape == (2, 1, 3, 3) and masked.dtype == np.float32
    np.testing.assert_array_equal(masked[0, 0] == 0, [[0, 0, 0], [0, 1, 0], [0, 1, 1]])
    np.testing.assert_array_equal(masked[1, 0] == 0, np.tril(np.ones((3, 3), bool)))
    # decode step: one query at absolute position 3 sees keys 0..3
    decode = attention_bias(np.array([3]), 4, key_mask=np.array([[0, 1, 1, 1]]), dtype=np.float64)
    np.testing.assert_array_equal(decode[0, 0, 0] == 0, [False, True, True, True])


def full_weights(weights, key_count):
    """The attention matrix A (..., T_q, T_k) from the per-block (P, 1/l), zeros where a block stopped."""
    padded = [np.concatenate([p * inverse_sums, np.zeros(p.shape[:-1] + (key_count - p.shape[-1],))], axis=-1)
              for p, inverse_sums in weights]
    return np.concatenate(padded, axis=-2)


# causal=False: one block over all keys; causal=True with blocks of 2 queries over 5: keys 2, 4, 5
BLOCKINGS = [dict(causal=False), dict(causal=True, block_size=2)]


def test_query_blocks_stop_at_the_last_query_of_each_block():
    assert list(query_blocks(5, 5, causal=True, block_size=2)) == [
        (slice(0, 2), 2), (slice(2, 4), 4), (slice(4, 5), 5)]
    # decode: 2 new queries at positions 3, 4 of 5 cached keys
    assert list(query_blocks(2, 5, causal=True, block_size=1)) == [(slice(0, 1), 4), (slice(1, 2), 5)]
    assert list(query_blocks(5, 5, causal=False)) == [(slice(0, 5), 5)]


@pytest.mark.parametrize("blocking", BLOCKINGS)
def test_attention_forward_matches_naive_loop(rng, blocking):
    q, k, v = qkv(rng)
    y, weights = attention_forward(q, k, v, attention_bias(np.arange(5), 5, dtype=np.float64), **blocking)
    np.testing.assert_allclose(y, naive_attention(q, k, v, np.arange(5)), rtol=1e-12, atol=1e-13)
    assert [p.shape[-1] for p, _ in weights] == ([2, 4, 5] if blocking["causal"] else [5])
    att = full_weights(weights, 5)
    np.testing.assert_allclose(att.sum(-1), 1.0, rtol=1e-14)
    assert np.all(att[..., np.triu_indices(5, 1)[0], np.triu_indices(5, 1)[1]] == 0.0)  # exactly 0


@pytest.mark.parametrize("blocking", BLOCKINGS)
def test_attention_forward_with_padding_matches_naive_loop(rng, blocking):
    q, k, v = qkv(rng, B=3)
    key_mask = np.array([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [0, 1, 1, 1, 1]])
    bias = attention_bias(np.arange(5), 5, key_mask, np.float64)
    y, weights = attention_forward(q, k, v, bias, **blocking)
    expected = naive_attention(q, k, v, np.arange(5), key_mask)
    real_query = key_mask.astype(bool)  # a pad query has no key to look at
    for b in range(3):
        np.testing.assert_allclose(y[b][:, real_query[b]], expected[b][:, real_query[b]], rtol=1e-12, atol=1e-13)
    assert np.all(full_weights(weights, 5)[0, :, 2:, :2] == 0.0)  # real queries give pad keys exactly zero weight
    assert np.all(np.isfinite(y))  # pad queries: harmless, finite


@pytest.mark.parametrize("blocking", [dict(causal=False), dict(causal=True, block_size=1)])
def test_attention_forward_decode_queries_match_naive_loop(rng, blocking):
    """Queries at absolute positions 3 and 4 over 5 cached keys (what KV-cache decoding does)."""
    q, k, v = qkv(rng, Tq=2, Tk=5)
    key_mask = np.array([[0, 1, 1, 1, 1], [1, 1, 1, 1, 1]])
    positions = np.array([3, 4])
    y, _ = attention_forward(q, k, v, attention_bias(positions, 5, key_mask, np.float64), **blocking)
    np.testing.assert_allclose(y, naive_attention(q, k, v, positions, key_mask), rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("padded", [False, True])
def test_attention_decode_matches_naive_loop(rng, padded):
    """One new query at position 4 against a cache of 5 keys, read through views of a longer cache."""
    q, k, v = qkv(rng, B=2, nh=3, Tq=1, Tk=7)
    key_mask = np.array([[0, 1, 1, 1, 1], [1, 1, 1, 1, 1]]) if padded else None
    bias = attention_bias(np.array([4]), 5, key_mask, np.float64) if padded else None
    y = attention_decode(q[:, :, 0], k[:, :, :5], v[:, :, :5], bias)
    assert y.shape == (2, 3, 3) and y.dtype == np.float64
    expected = naive_attention(q, k[:, :, :5], v[:, :, :5], np.array([4]), key_mask)[:, :, 0]
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-13)
    q32, k32, v32 = (a.astype(np.float32) for a in (q, k, v))
    assert attention_decode(q32[:, :, 0], k32, v32).dtype == np.float32
    large = attention_decode(200.0 * q[:, :, 0], 200.0 * k[:, :, :5], v[:, :, :5])  # scores ~10⁴: max subtracted
    np.testing.assert_allclose(large, naive_attention(200.0 * q, 200.0 * k[:, :, :5], v[:, :, :5],
                                                      np.array([4]))[:, :, 0], rtol=1e-10, atol=1e-12)


def test_attention_large_scores_subtract_the_row_max(rng):
    """Scores far beyond SAFE_SCORE: exp(S) alone would overflow, so the row max must be subtracted."""
    q, k, v = qkv(rng)
    q, k = q * 30.0, k * 30.0  # |S| up to about 1000
    assert np.abs(np.einsum("bhqd,bhkd->bhqk", q, k)).max() / math.sqrt(3) > 10 * SAFE_SCORE
    bias = attention_bias(np.arange(5), 5, dtype=np.float64)
    y, weights = attention_forward(q, k, v, bias, causal=True, block_size=2)
    np.testing.assert_allclose(y, naive_attention(q, k, v, np.arange(5)), rtol=1e-12, atol=1e-13)
    R = rng.standard_normal(q.shape)
    dq, dk, dv = attention_backward(R, q, k, v, y, weights)
    q, k = q / 3.0, k / 3.0  # still above SAFE_SCORE (the bound), but soft enough for finite differences
    assert max_norm(q / math.sqrt(3)) * max_norm(k) > SAFE_SCORE
    y, weights = attention_forward(q, k, v, bias, causal=True, block_size=2)
    dq, dk, dv = attention_backward(R, q, k, v, y, weights)
    check_gradients(lambda: np.sum(R * attention_forward(q, k, v, bias, causal=True, block_size=2)[0]),
                    {"q": q, "k": k, "v": v}, {"q": dq, "k": dk, "v": dv})


@pytest.mark.parametrize("scale", [1.0, 30.0])  # 30: scores far beyond SAFE_SCORE, the row max is subtracted
@pytest.mark.parametrize("blocking", BLOCKINGS)
def test_attention_pad_query_output_and_gradient_are_zero(rng, scale, blocking):
    """A query with every key masked gets output 0, and any upstream gradient there is ignored."""
    q, k, v = qkv(rng, B=1)
    q, k = scale * q, scale * k
    assert (max_norm(q / math.sqrt(3)) * max_norm(k) > SAFE_SCORE) == (scale > 1)
    bias = attention_bias(np.arange(5), 5, np.array([[0, 0, 1, 1, 1]]), np.float64)
    y, weights = attention_forward(q, k, v, bias, **blocking)
    assert np.all(y[0, :, :2] == 0.0)
    dy = np.zeros(q.shape)
    dy[0, :, :2] = 1e6  # upstream gradient on the pad queries only
    grads = attention_backward(dy, q, k, v, y, weights)
    for gradient in grads:
        assert np.all(gradient == 0.0)  # the output there does not depend on q, k or v


@pytest.mark.parametrize("blocking", BLOCKINGS)
def test_attention_backward_causal(rng, blocking):
    q, k, v = qkv(rng)
    bias = attention_bias(np.arange(5), 5, dtype=np.float64)
    R = rng.standard_normal(q.shape)
    y, weights = attention_forward(q, k, v, bias, **blocking)
    dq, dk, dv = attention_backward(R, q, k, v, y, weights)
    check_gradients(lambda: np.sum(R * attention_forward(q, k, v, bias, **blocking)[0]),
                    {"q": q, "k": k, "v": v}, {"q": dq, "k": dk, "v": dv})


@pytest.mark.parametrize("blocking", BLOCKINGS)
def test_attention_backward_with_left_padding(rng, blocking):
    q, k, v = qkv(rng, B=3)
    key_mask = np.array([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [0, 1, 1, 1, 1]])
    bias = attention_bias(np.arange(5), 5, key_mask, np.float64)
    # pad query rows (all keys masked) carry zero weight in the loss, as in real losses
    R = rng.standard_normal(q.shape) * key_mask[:, None, :, None]
    y, weights = attention_forward(q, k, v, bias, **blocking)
    dq, dk, dv = attention_backward(R, q, k, v, y, weights)
    check_gradients(lambda: np.sum(R * attention_forward(q, k, v, bias, **blocking)[0]),
                    {"q": q, "k": k, "v": v}, {"q": dq, "k": dk, "v": dv})
    # pad keys receive no gradient at all; pad queries neither
    assert np.all(dk[0, :, :2] == 0.0) and np.all(dv[0, :, :2] == 0.0)
    assert np.all(dq[0, :, :2] == 0.0)


def test_attention_backward_writes_into_given_buffers(rng):
    q, k, v = qkv(rng)
    y, weights = attention_forward(q, k, v, attention_bias(np.arange(5), 5, dtype=np.float64),
                                   causal=True, block_size=2)
    dy = rng.standard_normal(q.shape)
    buffers = tuple(np.full_like(a, np.nan) for a in (q, k, v))  # stale contents must not leak in
    returned = attention_backward(dy, q, k, v, y, weights, out=buffers)
    for buffer, result, expected in zip(buffers, returned, attention_backward(dy, q, k, v, y, weights)):
        assert result is buffer
        np.testing.assert_array_equal(buffer, expected)


def test_attention_float32_stays_float32(rng):
    q, k, v = (a.astype(np.float32) for a in qkv(rng))
    y, weights = attention_forward(q, k, v, attention_bias(np.arange(5), 5, dtype=np.float32),
                                   causal=True, block_size=2)
    assert y.dtype == np.float32 and all(a.dtype == np.float32 for block in weights for a in block)
    assert all(g.dtype == np.float32 for g in attention_backward(np.ones_like(y), q, k, v, y, weights))


# ----------------------------------------------------------------------------------------------
# log-softmax, token log-probabilities, entropy
# ----------------------------------------------------------------------------------------------
def test_log_softmax(rng):
    z = 3.0 * rng.standard_normal((4, 6))
    direct = np.log(np.exp(z) / np.exp(z).sum(-1, keepdims=True))
    np.testing.assert_allclose(log_softmax(z), direct, rtol=1e-13, atol=1e-13)
    big = np.array([[1000.0, 0.0, -1000.0]])  # stable with the true max
    np.testing.assert_allclose(log_softmax(big), [[0.0, -1000.0, -2000.0]], atol=1e-12)
    np.testing.assert_array_equal(z, z.copy())
    assert log_softmax(z.astype(np.float32)).dtype == np.float32


def test_token_logprobs(rng):
    z = 2.0 * rng.standard_normal((2, 5, 7))
    tokens = np.array([[1, 1, 6, 0, 1], [3, 3, 3, 2, 6]])
    R = rng.standard_normal((2, 5))
    logprobs, log_probs_all = token_logprobs_forward(z, tokens)
    direct = log_softmax(z)
    np.testing.assert_allclose(logprobs, np.take_along_axis(direct, tokens[..., None], -1)[..., 0], rtol=1e-14)
    assert logprobs[1, 0] == direct[1, 0, 3]
    dz = token_logprobs_backward(R, tokens, log_probs_all)
    check_gradients(lambda: np.sum(R * token_logprobs_forward(z, tokens)[0]), {"z": z}, {"z": dz})


def test_token_logprobs_errors(rng):
    z = rng.standard_normal((2, 3, 5))
    with pytest.raises(ValueError, match=r"in \[0, 5\)"):
        token_logprobs_forward(z, np.array([[0, 1, 5], [0, 0, 0]]))
    with pytest.raises(ValueError, match=r"in \[0, 5\)"):
        token_logprobs_forward(z, np.array([[0, 1, -1], [0, 0, 0]]))
    with pytest.raises(TypeError, match="integer"):
        token_logprobs_forward(z, np.zeros((2, 3)))
    with pytest.raises(ValueError, match="shape"):
        token_logprobs_forward(z, np.zeros((2, 4), dtype=int))


def test_entropy(rng):
    z = 2.0 * rng.standard_normal((3, 4, 6))
    R = rng.standard_normal((3, 4))
    log_probs_all = log_softmax(z)
    H = entropy_forward(log_probs_all)
    p = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    np.testing.assert_allclose(H, -(p * np.log(p)).sum(-1), rtol=1e-13)
    assert entropy_forward(log_softmax(np.zeros((1, 6))))[0] == pytest.approx(math.log(6), rel=1e-15)
    dz = entropy_backward(R, log_probs_all, H)
    check_gradients(lambda: np.sum(R * entropy_forward(log_softmax(z))), {"z": z}, {"z": dz})


def test_entropy_with_impossible_tokens():
    """A −inf logit is a token of probability 0: it adds 0 to H (π log π → 0) and gets gradient 0."""
    z = np.array([[0.3, -1.2, -np.inf, 0.5], [-np.inf, 1.0, -np.inf, 1.0]])
    log_probs_all = log_softmax(z)
    H = entropy_forward(log_probs_all)
    np.testing.assert_allclose(H, [entropy_forward(log_softmax(z[:1, [0, 1, 3]]))[0], math.log(2)], rtol=1e-14)
    dz = entropy_backward(np.ones(2), log_probs_all, H)
    assert np.all(np.isfinite(dz)) and dz[0, 2] == 0 and dz[1, 0] == 0 and dz[1, 2] == 0
    np.testing.assert_allclose(dz[0, [0, 1, 3]], entropy_backward(np.ones(1), log_softmax(z[:1, [0, 1, 3]]),
                                                               H[:1])[0], rtol=1e-14)
    assert np.isnan(entropy_forward(np.array([[0.0, np.nan]])))[0]  # NaN is not hidden


# ----------------------------------------------------------------------------------------------
# cross-entropy
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("ignore_index", [-1, -100])
def test_cross_entropy(rng, ignore_index):
    z = 2.0 * rng.standard_normal((3, 4, 6))
    targets = np.array([[1, 1, 5, ignore_index], [ignore_index, ignore_index, 2, 2], [0, 3, 3, 1]])
    loss, dz = cross_entropy(z, targets, ignore_index=ignore_index)
    valid = targets != ignore_index
    p = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    direct = -np.mean([math.log(p[b, t, targets[b, t]]) for b, t in zip(*np.nonzero(valid))])
    assert isinstance(loss, float)
    assert loss == pytest.approx(direct, rel=1e-13)
    assert dz.shape == z.shape and dz.dtype == z.dtype
    onehot = np.zeros_like(z)
    for b, t in zip(*np.nonzero(valid)):
        onehot[b, t, targets[b, t]] = 1.0
    np.testing.assert_allclose(dz, (p - onehot) * valid[..., None] / valid.sum(), rtol=1e-12, atol=1e-15)
    assert np.all(dz[~valid] == 0.0)
    numerical = numerical_gradient(lambda: cross_entropy(z, targets, ignore_index=ignore_index)[0], z)
    assert_gradient_close(numerical, dz, "dlogits")


def test_cross_entropy_float32(rng):
    z = rng.standard_normal((2, 3, 4)).astype(np.float32)
    loss, dz = cross_entropy(z, np.array([[0, 1, -1], [3, 3, 2]]))
    assert dz.dtype == np.float32
    loss64, dz64 = cross_entropy(z.astype(np.float64), np.array([[0, 1, -1], [3, 3, 2]]))
    assert loss == pytest.approx(loss64, rel=1e-5)
    np.testing.assert_allclose(dz, dz64, atol=1e-6)


def test_cross_entropy_errors(rng):
    z = rng.standard_normal((2, 3, 4))
    with pytest.raises(ValueError, match="nothing to score"):
        cross_entropy(z, np.full((2, 3), -1))
    with pytest.raises(ValueError, match=r"targets must be in \[0, 4\)"):
        cross_entropy(z, np.array([[0, 4, 1], [0, 0, 0]]))
    with pytest.raises(ValueError, match=r"targets must be in \[0, 4\)"):
        cross_entropy(z, np.array([[0, -2, 1], [0, 0, 0]]))  # -2 is not the ignore_index
    with pytest.raises(ValueError, match="targets must have shape"):
        cross_entropy(z, np.zeros((2, 2), dtype=int))
    with pytest.raises(TypeError, match="integer"):
        cross_entropy(z, np.zeros((2, 3)))


def test_mlp_parameters_are_c_contiguous_and_orthogonal():
    from minippo.nn.mlp import MLP

    mlp = MLP([4, 64, 2], output_gain=0.01, dtype=np.float64, seed=0)
    for name, value in mlp.params.items():
        assert value.flags.c_contiguous, name
    first = mlp.params["layers.0.weight"]  # (4, 64): orthonormal rows times √2
    np.testing.assert_allclose(first @ first.T, 2.0 * np.eye(4), atol=1e-12)
