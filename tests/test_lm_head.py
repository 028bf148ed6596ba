"""The fused LM head and cross-entropy (minippo.nn.lm_head) and GPT.loss built on it: the same loss
and gradients as the textbook path (logits -> cross_entropy -> backward), checked against its twin,
against finite differences in float64, through the whole GPT, with padding and several chunks."""
import numpy as np
import pytest

from minippo.nn import cross_entropy, lm_head
from minippo.nn.lm_head import add_transposed_product, lm_head_cross_entropy, lm_head_cross_entropy_reference
from minippo.parallel import get_num_threads, set_num_threads
from tests.gradcheck import check_gradients
from tests.test_gpt import IDX, MASK, lm_targets, make_model


def head_problem(dtype, rng, N=23, C=6, V=17):
    hidden = rng.standard_normal((N, C)).astype(dtype)
    wte = rng.standard_normal((V, C)).astype(dtype)
    targets = rng.integers(0, V, N)
    weights = (rng.random(N) > 0.3).astype(dtype) / N  # some positions do not count
    return hidden, wte, targets, weights


@pytest.mark.parametrize("vocab_block", [3, 2048])  # dE in several blocks of a slice, or in one
@pytest.mark.parametrize("threads", [1, 2, 3])  # the vocabulary in 1, 2 or 3 slices
@pytest.mark.parametrize("chunk_rows", [1, 5, 23, 64])
def test_fused_head_equals_its_twin(chunk_rows, threads, vocab_block, monkeypatch):
    monkeypatch.setattr(lm_head, "VOCAB_BLOCK", vocab_block)
    hidden, wte, targets, weights = head_problem(np.float64, np.random.default_rng(0))
    targets[:3] = [0, 16, 8]  # the first and last word, and one in the middle slice
    fast_dwte, twin_dwte = np.full(wte.shape, 0.5), np.full(wte.shape, 0.5)  # both must add into it
    saved = get_num_threads()
    set_num_threads(threads)
    try:
        fast = lm_head_cross_entropy(hidden, wte, targets, weights, fast_dwte, chunk_rows=chunk_rows)
    finally:
        set_num_threads(saved)
    twin = lm_head_cross_entropy_reference(hidden, wte, targets, weights, twin_dwte)
    assert fast[0] == pytest.approx(twin[0], rel=1e-13)
    np.testing.assert_allclose(fast[1], twin[1], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(fast_dwte, twin_dwte, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("scratch_rows", [1, 4, 23, 30])
def test_add_transposed_product_equals_its_twin(scratch_rows):
    rng = np.random.default_rng(5)
    a = rng.standard_normal((7, 40))[:, 3:26]  # (n, V) = (7, 23), a column slice as the vocabulary slices are
    b, out = rng.standard_normal((7, 5)), rng.standard_normal((23, 5))
    expected = out + a.T @ b
    add_transposed_product(out, a, b, np.empty((min(scratch_rows, 23), 5)))
    np.testing.assert_allclose(out, expected, rtol=1e-13, atol=1e-14)


def test_fused_head_keeps_float32():
    hidden, wte, targets, weights = head_problem(np.float32, np.random.default_rng(1))
    dwte = np.zeros_like(wte)
    loss, dhidden = lm_head_cross_entropy(hidden, wte, targets, weights, dwte, chunk_rows=7)
    assert dhidden.dtype == dwte.dtype == np.float32
    twin_dwte = np.zeros(wte.shape)
    twin = lm_head_cross_entropy_reference(*(a.astype(np.float64) for a in (hidden, wte)), targets,
                                           weights.astype(np.float64), twin_dwte)
    assert loss == pytest.approx(twin[0], rel=1e-5)
    np.testing.assert_allclose(dhidden, twin[1], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(dwte, twin_dwte, rtol=1e-4, atol=1e-6)


def test_twin_gradients_against_finite_differences():
    hidden, wte, targets, weights = head_problem(np.float64, np.random.default_rng(2), N=7, C=4, V=9)
    dwte = np.zeros_like(wte)
    _, dhidden = lm_head_cross_entropy_reference(hidden, wte, targets, weights, dwte)
    check_gradients(lambda: lm_head_cross_entropy_reference(hidden, wte, targets, weights,
                                                            np.zeros_like(wte))[0],
                    {"hidden": hidden, "wte": wte}, {"hidden": dhidden, "wte": dwte})


@pytest.mark.parametrize("use_mask", [False, True], ids=["no_mask", "left_padding"])
@pytest.mark.parametrize("threads", [1, 2])
def test_gpt_loss_equals_logits_then_cross_entropy(use_mask, threads):
    """model.loss + backward() gives the loss and every gradient of the textbook path."""
    mask = MASK if use_mask else None
    targets = lm_targets(IDX, mask)
    saved = get_num_threads()
    set_num_threads(threads)
    try:
        model = make_model()
        model.zero_grad()
        loss, dlogits = cross_entropy(model.forward(IDX, attention_mask=mask), targets)
        model.backward(dlogits)
        textbook = {name: g.copy() for name, g in model.grads.items()}
        model.zero_grad()
        fused = model.loss(IDX, targets, attention_mask=mask)
        model.backward()
    finally:
        set_num_threads(saved)
    assert fused == pytest.approx(loss, rel=1e-13)
    for name, gradient in model.grads.items():
        np.testing.assert_allclose(gradient, textbook[name], rtol=1e-10, atol=1e-13, err_msg=name)


def test_gpt_loss_gradients_against_finite_differences():
    model = make_model(n_layer=1)
    targets = lm_targets(IDX, MASK)
    model.zero_grad()
    value = model.loss(IDX, targets, attention_mask=MASK)
    model.backward()
    assert value > 0.5
    analytic = {name: g.copy() for name, g in model.grads.items()}
    check_gradients(lambda: model.loss(IDX, targets, attention_mask=MASK), model.params, analytic)


def test_gpt_loss_with_a_head_on_the_hidden_state():
    """backward(dhidden=...) after loss adds both the head's and the cross-entropy's gradients."""
    model = make_model()
    targets = lm_targets(IDX)
    dhidden = np.random.default_rng(5).standard_normal(IDX.shape + (model.config.n_embd,))
    model.zero_grad()
    model.backward(cross_entropy(model.forward(IDX), targets)[1], dhidden)
    expected = {name: g.copy() for name, g in model.grads.items()}
    model.zero_grad()
    model.loss(IDX, targets)
    model.backward(dhidden=dhidden)
    for name, gradient in model.grads.items():
        np.testing.assert_allclose(gradient, expected[name], rtol=1e-10, atol=1e-13, err_msg=name)


def test_gpt_loss_errors():
    model = make_model()
    targets = lm_targets(IDX)
    with pytest.raises(TypeError, match="targets"):
        model.loss(IDX, targets.astype(float))
    with pytest.raises(ValueError, match="targets must have the shape"):
        model.loss(IDX, targets[:, :-1])
    with pytest.raises(ValueError, match="targets must hold token ids"):
        model.loss(IDX, np.full(IDX.shape, model.config.vocab_size))
    with pytest.raises(ValueError, match="nothing to score"):
        model.loss(IDX, np.full(IDX.shape, -1))
    model.loss(IDX, targets)
    with pytest.raises(ValueError, match="loss()"):
        model.backward(np.zeros(IDX.shape + (model.config.vocab_size,)))
