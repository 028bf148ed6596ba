"""The GPT as a whole: gradients of every parameter against finite differences, heads, dtype,
left padding, KV-cache generation and sampling, input errors and Hugging Face state dicts."""
import json
import types
import warnings

import numpy as np
import pytest

from minippo.nn import GPT, GPTConfig, ScoreHead, ValueHead, cross_entropy
from minippo.nn.categorical import log_softmax
from minippo.nn.sampling import TokenSampler, first_above
from tests.gradcheck import check_gradients

VOCAB, BLOCK = 13, 8


def make_config(dtype=np.float64, n_layer=2, **overrides):
    values = dict(vocab_size=VOCAB, block_size=BLOCK, n_layer=n_layer, n_head=2, n_embd=8, dtype=dtype)
    values.update(overrides)
    return GPTConfig(**values)


def perturb(module, seed, scale=0.3, embedding_scale=0.5):
    """Move every parameter off its initial value: LayerNorm gains off 1, biases off 0, weights O(scale)
    so that the output distributions are far from uniform and every term of a gradient matters."""
    rng = np.random.default_rng(seed)
    for name, value in module.params.items():
        noise = rng.standard_normal(value.shape)
        if name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")):
            value[...] = 1.0 + scale * noise
        elif name.endswith(("wte.weight", "wpe.weight")):
            value[...] = embedding_scale * noise
        else:
            value[...] = scale * noise
    return module


def make_model(dtype=np.float64, n_layer=2, seed=3, **overrides):
    return perturb(GPT(make_config(dtype, n_layer, **overrides), seed=seed), seed + 100)


# a batch with repeated token ids (embedding rows accumulate) and left padding of 0, 3 and 5
IDX = np.array([
    [1, 5, 5, 2, 1, 1, 7, 12],
    [0, 0, 0, 3, 3, 9, 1, 3],
    [0, 0, 0, 0, 0, 4, 4, 11],
])
MASK = np.array([
    [1, 1, 1, 1, 1, 1, 1, 1],
    [0, 0, 0, 1, 1, 1, 1, 1],
    [0, 0, 0, 0, 0, 1, 1, 1],
])


def lm_targets(idx, mask=None, ignore_index=-1):
    """Next-token targets; the last position and every pad position are ignored."""
    targets = np.full(idx.shape, ignore_index)
    targets[:, :-1] = idx[:, 1:]
    if mask is not None:
        targets[mask == 0] = ignore_index
    return targets


# ----------------------------------------------------------------------------------------------
# whole-model gradients
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("use_mask", [False, True], ids=["no_mask", "left_padding"])
def test_gpt_gradient_all_parameters(use_mask):
    model = make_model()
    mask = MASK if use_mask else None
    targets = lm_targets(IDX, mask)

    def loss():
        return cross_entropy(model.forward(IDX, attention_mask=mask), targets)[0]

    model.zero_grad()
    logits = model.forward(IDX, attention_mask=mask)
    value, dlogits = cross_entropy(logits, targets)
    returned = model.backward(dlogits)
    assert returned is model.grads
    analytic = {name: g.copy() for name, g in model.grads.items()}
    assert value > 0.5  # a real, non-trivial loss
    errors = check_gradients(loss, model.params, analytic)
    assert set(errors) == set(model.params)


def test_gpt_gradient_error_falls_as_h_squared_then_rises_with_round_off():
    """The V-shaped error curve of a correct gradient, along one random direction d of all parameters.

    Central differences (F(θ + h d) − F(θ − h d)) / 2h = ∇F·d + O(h²) + O(ε/h): while h is large the
    error against the analytic ∇F·d falls 100× per decade of h, down to float64 round-off, then grows
    again as h shrinks further.  A gradient that is wrong by any relative amount δ would stop falling
    at δ instead: this sees errors far below the 1e-6 tolerance of the per-entry checks.
    """
    model = make_model()
    targets = lm_targets(IDX, MASK)
    model.zero_grad()
    _, dlogits = cross_entropy(model.forward(IDX, attention_mask=MASK), targets)
    model.backward(dlogits)
    rng = np.random.default_rng(0)
    direction = {name: rng.standard_normal(value.shape) for name, value in model.params.items()}
    analytic = sum(float(np.sum(model.grads[name] * d)) for name, d in direction.items())
    original = {name: value.copy() for name, value in model.params.items()}

    def loss_at(h):
        for name, value in model.params.items():
            value[...] = original[name] + h * direction[name]
        return cross_entropy(model.forward(IDX, attention_mask=MASK), targets)[0]

    errors = {k: abs((loss_at(10.0 ** -k) - loss_at(-(10.0 ** -k))) / (2 * 10.0 ** -k) - analytic) / abs(analytic)
              for k in range(2, 12)}  # h = 1e-2 ... 1e-11
    for k in (2, 3, 4):  # the truncation side: h² falls 100x per decade
        assert 30 < errors[k] / errors[k + 1] < 300, errors
    smallest = min(errors.values())
    assert smallest < 1e-9, errors
    assert errors[11] > 100 * smallest, errors  # the round-off side of the V


def test_gpt_gradient_with_value_and_score_heads():
    """dlogits, a ValueHead's and a ScoreHead's dhidden at once: the tied wte gets LM-head and embedding
    contributions, every head parameter is checked too."""
    model = make_model()
    value_head = perturb(ValueHead(8, dtype=np.float64, init_std=0.5, seed=1), 11)
    score_head = perturb(ScoreHead(8, dtype=np.float64, init_std=0.5, seed=2), 12)
    rng = np.random.default_rng(3)
    value_weights = rng.standard_normal(IDX.shape) * MASK  # pad rows carry no weight
    score_weights = rng.standard_normal(IDX.shape[0])
    targets = lm_targets(IDX, MASK)

    def loss():
        logits = model.forward(IDX, attention_mask=MASK)
        values = value_head.forward(model.hidden)
        scores = score_head.forward(model.hidden, attention_mask=MASK)
        return (cross_entropy(logits, targets)[0] + np.sum(value_weights * values)
                + np.sum(score_weights * scores))

    for module in (model, value_head, score_head):
        module.zero_grad()
    logits = model.forward(IDX, attention_mask=MASK)
    values = value_head.forward(model.hidden)
    scores = score_head.forward(model.hidden, attention_mask=MASK)
    assert values.shape == IDX.shape and scores.shape == (3,)
    np.testing.assert_array_equal(scores, ValueHead.forward(score_head, model.hidden)[:, -1])  # last real = T-1
    _, dlogits = cross_entropy(logits, targets)
    dhidden = value_head.backward(value_weights) + score_head.backward(score_weights)
    model.backward(dlogits, dhidden=dhidden)

    arrays = {f"model.{k}": v for k, v in model.params.items()}
    arrays.update({f"value.{k}": v for k, v in value_head.params.items()})
    arrays.update({f"score.{k}": v for k, v in score_head.params.items()})
    analytic = {f"model.{k}": v.copy() for k, v in model.grads.items()}
    analytic.update({f"value.{k}": v.copy() for k, v in value_head.grads.items()})
    analytic.update({f"score.{k}": v.copy() for k, v in score_head.grads.items()})
    check_gradients(loss, arrays, analytic)


def test_score_head_reads_last_real_token_with_right_padding():
    model = make_model(n_layer=1)
    head = perturb(ScoreHead(8, dtype=np.float64, init_std=0.5, seed=2), 12)
    mask = np.array([[1, 1, 1, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1, 1, 1]])
    idx = IDX[:2]
    model.forward(idx, attention_mask=mask)
    scores = head.forward(model.hidden, attention_mask=mask)
    values = ValueHead.forward(head, model.hidden)
    np.testing.assert_array_equal(scores, [values[0, 2], values[1, 7]])
    head.zero_grad()
    dhidden = head.backward(np.array([2.0, -1.0]))
    nonzero = np.argwhere(np.any(dhidden != 0, axis=-1))
    np.testing.assert_array_equal(nonzero, [[0, 2], [1, 7]])
    np.testing.assert_allclose(dhidden[0, 2], 2.0 * head.params["weight"][:, 0], rtol=1e-15)


def test_head_input_errors_leave_the_head_unchanged():
    """Wrong shapes or dtypes raise (nothing is silently cast), and a failed forward keeps the state of
    the last good one, so a following backward is still right."""
    rng = np.random.default_rng(5)
    head = ScoreHead(8, dtype=np.float64, init_std=0.5, seed=3)
    hidden, mask = rng.standard_normal((2, 4, 8)), np.array([[1, 1, 0, 0], [1, 1, 1, 1]])
    head.forward(hidden, attention_mask=mask)
    with pytest.raises(ValueError, match="needs at least one real token"):
        head.forward(rng.standard_normal((2, 4, 8)), attention_mask=np.array([[0, 0, 0, 0], [1, 1, 1, 1]]))
    with pytest.raises(TypeError, match="hidden must have dtype float64"):
        head.forward(hidden.astype(np.float32))
    dhidden = head.backward(np.array([1.0, 1.0]))
    np.testing.assert_array_equal(np.argwhere(np.any(dhidden != 0, axis=-1)), [[0, 1], [1, 3]])
    np.testing.assert_array_equal(head.grads["weight"][:, 0], hidden[0, 1] + hidden[1, 3])
    for bad, error, match in [(np.ones(3), ValueError, r"dscores must have shape \(2,\)"),
                              (np.ones(2, np.float32), TypeError, "dscores must have dtype float64")]:
        with pytest.raises(error, match=match):
            head.backward(bad)
    values = ValueHead(8, dtype=np.float64)
    values.forward(hidden)
    for bad, error, match in [(np.ones((4, 2)), ValueError, r"dvalues must have shape \(2, 4\)"),
                              (np.ones(8), ValueError, r"dvalues must have shape \(2, 4\)"),
                              (np.ones((2, 4), np.float32), TypeError, "dvalues must have dtype float64")]:
        with pytest.raises(error, match=match):
            values.backward(bad)


@pytest.mark.parametrize("head_type", [ValueHead, ScoreHead])
def test_heads_keep_their_dtype_whatever_the_type_of_init_std(head_type):
    head = head_type(8, dtype=np.float32, init_std=np.float64(0.5), seed=0)  # e.g. 1/np.sqrt(C)
    assert {value.dtype for value in [*head.params.values(), *head.grads.values()]} == {np.dtype(np.float32)}
    np.testing.assert_array_equal(head.params["weight"],
                                  head_type(8, dtype=np.float32, init_std=0.5, seed=0).params["weight"])
    for bad, error in [(-0.1, ValueError), (float("nan"), ValueError), ("0.1", TypeError)]:
        with pytest.raises(error, match="init_std must be a finite number"):
            head_type(8, init_std=bad)
    with pytest.raises(ValueError, match="n_embd must be an integer >= 1"):
        head_type(0)


def test_value_head_only_with_compute_logits_false():
    model = make_model(n_layer=1)
    head = perturb(ValueHead(8, dtype=np.float64, init_std=0.5, seed=1), 11)
    weights = np.random.default_rng(4).standard_normal(IDX.shape) * MASK
    assert model.forward(IDX, attention_mask=MASK, compute_logits=False) is None

    def loss():
        model.forward(IDX, attention_mask=MASK, compute_logits=False)
        return np.sum(weights * head.forward(model.hidden))

    model.zero_grad()
    head.zero_grad()
    model.forward(IDX, attention_mask=MASK, compute_logits=False)
    head.forward(model.hidden)
    model.backward(dhidden=head.backward(weights))
    with pytest.raises(ValueError, match="compute_logits=False"):
        model.backward(dlogits=np.zeros((3, 8, VOCAB)))
    arrays = {f"model.{k}": v for k, v in model.params.items()}
    arrays.update({f"value.{k}": v for k, v in head.params.items()})
    analytic = {f"model.{k}": v.copy() for k, v in model.grads.items()}
    analytic.update({f"value.{k}": v.copy() for k, v in head.grads.items()})
    check_gradients(loss, arrays, analytic)


def test_backward_accumulates_and_zero_grad_resets():
    model = make_model(n_layer=1)
    targets = lm_targets(IDX, MASK)
    _, dlogits = cross_entropy(model.forward(IDX, attention_mask=MASK), targets)
    model.zero_grad()
    model.backward(dlogits)
    once = {name: g.copy() for name, g in model.grads.items()}
    model.backward(dlogits)
    for name, g in model.grads.items():
        assert np.abs(once[name]).max() > 0, name
        np.testing.assert_allclose(g, 2.0 * once[name], rtol=1e-14, atol=0, err_msg=name)
    model.zero_grad()
    assert all(np.all(g == 0.0) for g in model.grads.values())


# ----------------------------------------------------------------------------------------------
# dtype: no silent upcast
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_is_preserved_everywhere(dtype):
    model = make_model(dtype=dtype)
    head = ValueHead(8, dtype=dtype, init_std=0.1, seed=0)
    assert all(p.dtype == dtype for p in model.params.values())
    assert all(g.dtype == dtype for g in model.grads.values())
    logits = model.forward(IDX, attention_mask=MASK)
    assert logits.dtype == dtype and model.hidden.dtype == dtype
    values = head.forward(model.hidden)
    assert values.dtype == dtype
    _, dlogits = cross_entropy(logits, lm_targets(IDX, MASK))
    assert dlogits.dtype == dtype
    dhidden = head.backward(np.ones(IDX.shape, dtype=dtype))
    assert dhidden.dtype == dtype
    model.backward(dlogits, dhidden=dhidden)
    assert all(g.dtype == dtype for g in model.grads.values())
    assert all(p.dtype == dtype for p in model.params.values())
    generation = model.generate(IDX[:, 3:], 3, attention_mask=MASK[:, 3:], rng=0)
    assert generation.logprobs.dtype == dtype
    greedy = model.generate(IDX[:, 3:], 3, temperature=0, attention_mask=MASK[:, 3:])
    assert greedy.logprobs.dtype == dtype
    assert np.issubdtype(generation.tokens.dtype, np.integer) and generation.mask.dtype == bool


def test_float32_matches_float64():
    model64 = make_model(np.float64)
    model32 = GPT(make_config(np.float32), seed=0)
    model32.load_state_dict(model64.state_dict())
    logits64 = model64.forward(IDX, attention_mask=MASK)
    logits32 = model32.forward(IDX, attention_mask=MASK)
    real = MASK == 1
    np.testing.assert_allclose(logits32[real], logits64[real], rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------------------------
# left padding
# ----------------------------------------------------------------------------------------------
def test_left_padding_gives_the_same_logits_as_each_row_alone():
    model = make_model()
    rng = np.random.default_rng(0)
    idx = IDX.copy()
    idx[MASK == 0] = rng.integers(0, VOCAB, int((MASK == 0).sum()))  # pad ids must not matter
    logits = model.forward(idx, attention_mask=MASK)
    hidden = model.hidden.copy()
    for b in range(3):
        real = MASK[b] == 1
        alone = model.forward(idx[b:b + 1, real])
        np.testing.assert_allclose(logits[b, real], alone[0], rtol=0, atol=1e-10)
        np.testing.assert_allclose(hidden[b, real], model.hidden[0], rtol=0, atol=1e-10)
    # an all-ones mask is the same as no mask
    np.testing.assert_allclose(model.forward(idx, np.ones_like(MASK)), model.forward(idx), rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------------------------
# generation
# ----------------------------------------------------------------------------------------------
PROMPT = np.array([[3, 1, 4, 1], [0, 0, 5, 9], [0, 2, 6, 5]])
PROMPT_MASK = np.array([[1, 1, 1, 1], [0, 0, 1, 1], [0, 1, 1, 1]])


def full_forward_logprobs(model, generation, prompt_mask, temperature=1.0):
    """log π(token) of every generated token from one no-cache forward over the finished sequence."""
    T0 = prompt_mask.shape[1]
    n = generation.logprobs.shape[1]
    mask = np.concatenate([prompt_mask, np.ones((len(prompt_mask), n), dtype=int)], axis=1)
    logits = model.forward(generation.tokens, attention_mask=mask)
    log_probs = log_softmax(logits[:, T0 - 1:-1].astype(np.float64) / temperature)
    return np.take_along_axis(log_probs, generation.tokens[:, T0:, None], axis=-1)[..., 0]


@pytest.mark.parametrize("dtype, tolerance", [(np.float64, 1e-10), (np.float32, 1e-4)])
@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_generate_logprobs_equal_full_forward(dtype, tolerance, padded, temperature):
    model = make_model(dtype=dtype)
    mask = PROMPT_MASK if padded else None
    generation = model.generate(PROMPT, 4, temperature=temperature, attention_mask=mask, rng=5)
    assert generation.tokens.shape == (3, 8) and generation.logprobs.shape == (3, 4)
    np.testing.assert_array_equal(generation.tokens[:, :4], PROMPT)
    assert generation.mask.all()
    full = full_forward_logprobs(model, generation, PROMPT_MASK if padded else np.ones_like(PROMPT),
                                 temperature)
    np.testing.assert_allclose(generation.logprobs, full, rtol=0, atol=tolerance)
    assert np.all(generation.logprobs < 0)


@pytest.mark.parametrize("truncation", [dict(top_k=3), dict(top_p=0.5), dict(top_k=3, top_p=0.5)])
def test_truncated_sampling_reports_untruncated_logprobs(truncation):
    """top-k/top-p change which tokens can be drawn, not the reported log π_T (the full softmax)."""
    model = make_model()
    generation = model.generate(PROMPT, 4, temperature=0.8, attention_mask=PROMPT_MASK, rng=3, **truncation)
    full = full_forward_logprobs(model, generation, PROMPT_MASK, 0.8)
    np.testing.assert_allclose(generation.logprobs, full, rtol=0, atol=1e-10)


def no_cache_greedy(model, prompt, prompt_mask, steps):
    tokens, mask = prompt.copy(), prompt_mask.copy()
    logprobs = []
    for _ in range(steps):
        logits = model.forward(tokens, attention_mask=mask)[:, -1]
        nxt = logits.argmax(-1)
        logprobs.append(log_softmax(logits)[np.arange(len(nxt)), nxt])
        tokens = np.concatenate([tokens, nxt[:, None]], axis=1)
        mask = np.concatenate([mask, np.ones((len(nxt), 1), dtype=int)], axis=1)
    return tokens, np.stack(logprobs, axis=1)


@pytest.mark.parametrize("padded", [False, True])
def test_greedy_kv_cache_equals_no_cache(padded):
    model = make_model()
    mask = PROMPT_MASK if padded else np.ones_like(PROMPT)
    generation = model.generate(PROMPT, 4, temperature=0, attention_mask=mask)
    tokens, logprobs = no_cache_greedy(model, PROMPT, mask, 4)
    np.testing.assert_array_equal(generation.tokens, tokens)
    np.testing.assert_allclose(generation.logprobs, logprobs, rtol=0, atol=1e-10)
    assert len(np.unique(generation.tokens[:, 4:])) > 1  # a non-degenerate continuation


def test_sampling_kv_cache_equals_no_cache_sampler():
    """The same sampler and seed driven by full no-cache forwards gives the same tokens."""
    model = make_model()
    generation = model.generate(PROMPT, 4, temperature=0.9, top_k=5, attention_mask=PROMPT_MASK, rng=7)
    sampler = TokenSampler(0.9, 5, None, VOCAB, np.random.default_rng(7))
    tokens, mask = PROMPT.copy(), PROMPT_MASK.copy()
    for _ in range(4):
        token, _ = sampler.sample(model.forward(tokens, attention_mask=mask)[:, -1])
        tokens = np.concatenate([tokens, token[:, None]], axis=1)
        mask = np.concatenate([mask, np.ones((3, 1), dtype=int)], axis=1)
    np.testing.assert_array_equal(generation.tokens, tokens)


def test_eos_handling():
    model = make_model()
    plain = model.generate(PROMPT, 4, temperature=0, attention_mask=PROMPT_MASK)
    eos = int(plain.tokens[0, 5])  # row 0 emits it at step 1 (maybe earlier, maybe in other rows)
    pad = 12 if eos != 12 else 11
    stopped = model.generate(PROMPT, 4, temperature=0, attention_mask=PROMPT_MASK, eos_token_id=eos,
                             pad_token_id=pad)
    generated = plain.tokens[:, 4:]
    stopped_somewhere = False
    for b in range(3):
        hits = np.flatnonzero(generated[b] == eos)
        end = hits[0] + 1 if len(hits) else 4  # sampled tokens up to and including EOS
        stopped_somewhere |= end < 4
        np.testing.assert_array_equal(stopped.mask[b], np.arange(4) < end)
        np.testing.assert_array_equal(stopped.tokens[b, 4:4 + end], generated[b, :end])
        assert np.all(stopped.tokens[b, 4 + end:] == pad)
        np.testing.assert_allclose(stopped.logprobs[b, :end], plain.logprobs[b, :end], rtol=0, atol=1e-12)
        assert np.all(stopped.logprobs[b, end:] == 0.0)
    assert stopped_somewhere
    assert not stopped.mask.all(axis=1).all() and stopped.mask.all(axis=1).any()  # some rows stop, some not
    assert len(set(stopped.mask.sum(axis=1))) >= 2
    # default pad id is the EOS id
    default = model.generate(PROMPT, 4, temperature=0, attention_mask=PROMPT_MASK, eos_token_id=eos)
    assert np.all(default.tokens[:, 4:][~default.mask] == eos)


def test_eos_in_every_row_stops_early():
    model = make_model()
    first = model.generate(PROMPT[:1], 1, temperature=0)
    eos = int(first.tokens[0, -1])
    stopped = model.generate(PROMPT[:1], 4, temperature=0, eos_token_id=eos, pad_token_id=0)
    np.testing.assert_array_equal(stopped.mask, [[True, False, False, False]])
    np.testing.assert_array_equal(stopped.tokens[0, 4:], [eos, 0, 0, 0])
    np.testing.assert_array_equal(stopped.logprobs[0, 1:], 0.0)


def test_sampled_eos_logprobs_match_full_forward_on_masked_positions():
    model = make_model()
    generation = model.generate(PROMPT, 4, attention_mask=PROMPT_MASK, rng=3)
    eos = int(generation.tokens[1, 5])
    stopped = model.generate(PROMPT, 4, attention_mask=PROMPT_MASK, rng=3, eos_token_id=eos, pad_token_id=0)
    assert not stopped.mask.all()
    full = full_forward_logprobs(model, stopped, PROMPT_MASK)
    np.testing.assert_allclose(stopped.logprobs[stopped.mask], full[stopped.mask], rtol=0, atol=1e-10)


def test_a_tiny_temperature_samples_the_argmax_without_warnings():
    """At T just above MIN_TEMPERATURE, (z − max z)/T overflows to −inf for every other token: p = 0 there."""
    sampler = TokenSampler(3e-39, None, None, 4, np.random.default_rng(0))
    logits = np.array([[0.5, 2.0, -1.0, 1.0], [3.0, 0.0, 0.0, 1.0]], dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        token, logprob = sampler.sample(logits)
    np.testing.assert_array_equal(token, [1, 0])
    np.testing.assert_array_equal(logprob, [0.0, 0.0])


@pytest.mark.parametrize("temperature", [1.0, 0.7, 1.5])
def test_top_k_1_and_tiny_top_p_equal_greedy(temperature):
    model = make_model()
    greedy = model.generate(PROMPT, 4, temperature=0, attention_mask=PROMPT_MASK)
    for kwargs in (dict(top_k=1), dict(top_p=1e-6)):
        for seed in range(3):
            sampled = model.generate(PROMPT, 4, temperature=temperature, attention_mask=PROMPT_MASK,
                                     rng=seed, **kwargs)
            np.testing.assert_array_equal(sampled.tokens, greedy.tokens, err_msg=str(kwargs))
            # logprobs are under the full temperature-scaled softmax, not the truncated one
            full = full_forward_logprobs(model, sampled, PROMPT_MASK, temperature)
            np.testing.assert_allclose(sampled.logprobs, full, rtol=0, atol=1e-10)


def test_same_seed_same_tokens():
    model = make_model()
    a = model.generate(PROMPT, 4, attention_mask=PROMPT_MASK, rng=42)
    b = model.generate(PROMPT, 4, attention_mask=PROMPT_MASK, rng=np.random.default_rng(42))
    np.testing.assert_array_equal(a.tokens, b.tokens)
    np.testing.assert_array_equal(a.logprobs, b.logprobs)
    others = [model.generate(PROMPT, 4, attention_mask=PROMPT_MASK, rng=s).tokens for s in range(5)]
    assert any(not np.array_equal(a.tokens, o) for o in others)


def test_sampling_frequencies():
    """Inverse-CDF sampling draws tokens with the model's probabilities; top_k=2 keeps only the two most
    likely tokens, renormalised."""
    model = make_model()
    n = 4000
    prompt = np.repeat(PROMPT[:1], n, axis=0)
    logits = model.forward(PROMPT[:1])[0, -1]
    probs = np.exp(log_softmax(logits))

    counts = np.bincount(model.generate(prompt, 1, rng=0).tokens[:, -1], minlength=VOCAB)
    sigma = np.sqrt(n * probs * (1 - probs))
    assert np.all(np.abs(counts - n * probs) < 5 * sigma + 1), (counts, n * probs)

    top2 = np.argsort(-probs)[:2]
    tokens = model.generate(prompt, 1, top_k=2, rng=1).tokens[:, -1]
    assert set(np.unique(tokens)) == set(top2)
    p = probs[top2[0]] / probs[top2].sum()
    frequency = np.mean(tokens == top2[0])
    assert abs(frequency - p) < 5 * np.sqrt(p * (1 - p) / n)

    # top_p: only the smallest set whose mass reaches p
    order = np.argsort(-probs)
    nucleus = order[:np.searchsorted(np.cumsum(probs[order]), 0.6) + 1]
    tokens = model.generate(prompt, 1, top_p=0.6, rng=2).tokens[:, -1]
    assert set(np.unique(tokens)) == set(nucleus)


@pytest.mark.parametrize("vocab", [13, 16, 257])
def test_two_level_draw_is_the_inverse_cdf(vocab):
    """The block-wise search finds the first j with F_j > u·F_V, as a search of the whole cumsum does."""
    rng = np.random.default_rng(vocab)
    probs = rng.dirichlet(np.full(vocab, 0.3), size=64)
    u = np.concatenate([rng.random(60), [0.0, 0.5, 0.999, 1.0 - 2.0**-53]])
    tokens = TokenSampler(1.0, None, None, vocab, rng=None)._draw(np.log(probs), u)[0]  # u: the uniform draws
    cumulative = np.cumsum(probs, axis=1)
    expected = [np.searchsorted(c, value * c[-1], side="right") for c, value in zip(cumulative, u)]
    np.testing.assert_array_equal(tokens, np.minimum(expected, vocab - 1))


@pytest.mark.parametrize("temperature", [0.0, 1.0])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_sampler_refuses_non_finite_logits(temperature, bad):
    logits = np.zeros((3, 8))
    logits[1, 5] = bad
    with pytest.raises(FloatingPointError, match=r"rows \[1\] contain NaN or inf"), np.errstate(invalid="ignore"):
        TokenSampler(temperature, None, None, 8, np.random.default_rng(0)).sample(logits)


def test_draw_never_picks_a_token_of_probability_zero():
    """Zero-probability tokens at block ends and at the end of the vocabulary are never drawn, even
    when u·F_V lands exactly on a boundary or rounding leaves nothing above it."""
    probs = np.zeros(16)  # blocks of 4: mass only at 1, 6 and 9
    probs[[1, 6, 9]] = [0.25, 0.5, 0.25]
    u = [0.0, 0.25, 0.5, 0.7499999, 0.75, 1.0 - 2.0**-53]
    with np.errstate(divide="ignore"):
        log_probs = np.tile(np.log(probs), (len(u), 1))
    tokens = TokenSampler(1.0, None, None, 16, rng=None)._draw(log_probs, np.asarray(u))[0]
    np.testing.assert_array_equal(tokens, [1, 6, 6, 6, 9, 9])
    # a threshold above every cumulative sum (rounding) falls back to the last entry with mass
    mass = np.array([[0.0, 2.0, 0.0, 0.0], [1.0, 0.0, 0.0, 1.0]])
    np.testing.assert_array_equal(first_above(np.cumsum(mass, axis=1), np.array([2.5, 2.5]), mass), [1, 3])


# ----------------------------------------------------------------------------------------------
# errors
# ----------------------------------------------------------------------------------------------
def test_forward_errors():
    model = make_model(n_layer=1)
    with pytest.raises(ValueError, match=r"token ids in \[0, 13\)"):
        model.forward(np.array([[1, 13]]))
    with pytest.raises(ValueError, match=r"token ids in \[0, 13\).*-1"):
        model.forward(np.array([[1, -1]]))
    with pytest.raises(TypeError, match="integer"):
        model.forward(np.array([[1.0, 2.0]]))
    with pytest.raises(ValueError, match="shape"):
        model.forward(np.array([1, 2]))
    with pytest.raises(ValueError, match="exceeds.*block_size 8"):
        model.forward(np.zeros((1, 9), dtype=int))
    with pytest.raises(ValueError, match="attention_mask must have the shape"):
        model.forward(IDX, attention_mask=MASK[:, :-1])
    with pytest.raises(ValueError, match="only 0"):
        model.forward(IDX, attention_mask=MASK * 2)


def test_backward_errors():
    model = make_model(n_layer=1)
    with pytest.raises(RuntimeError, match="before forward"):
        model.backward(np.zeros((3, 8, VOCAB)))
    model.forward(IDX)
    with pytest.raises(ValueError, match="dlogits must have shape"):
        model.backward(np.zeros((3, 7, VOCAB)))
    with pytest.raises(TypeError, match="dlogits must have dtype"):
        model.backward(np.zeros((3, 8, VOCAB), dtype=np.float32))
    with pytest.raises(ValueError, match="dhidden must have shape"):
        model.backward(dhidden=np.zeros((3, 8, 7)))
    with pytest.raises(ValueError, match="needs dlogits, dhidden or both"):
        model.backward()
    assert all(np.all(g == 0) for g in model.grads.values())  # failed calls added nothing
    head = ValueHead(8, dtype=np.float64)
    with pytest.raises(RuntimeError, match="before forward"):
        head.backward(np.zeros((3, 8)))
    with pytest.raises(ValueError, match="hidden must have shape"):
        head.forward(np.zeros((3, 8, 5)))


def test_config_errors():
    with pytest.raises(ValueError, match="divisible by n_head"):
        make_config(n_embd=10, n_head=3)
    with pytest.raises(ValueError, match="vocab_size must be an integer >= 1, got 0"):
        make_config(vocab_size=0)
    with pytest.raises(TypeError, match="n_layer must be an integer >= 1, got bool True"):
        make_config(n_layer=True)
    with pytest.raises(ValueError, match="float32 or float64"):
        make_config(dtype=np.float16)
    with pytest.raises(TypeError, match="GPTConfig"):
        GPT({"vocab_size": 13})
    config = make_config()
    assert GPTConfig.from_dict(config.to_dict()) == config
    from_numpy = make_config(vocab_size=np.int64(13))  # NumPy integers become ints, so to_dict is JSON
    assert type(from_numpy.vocab_size) is int and json.loads(json.dumps(from_numpy.to_dict())) == config.to_dict()
    for bad in ({k: v for k, v in config.to_dict().items() if k != "n_head"}, {**config.to_dict(), "bias": 1}):
        with pytest.raises(ValueError,
                           match=r"missing: \['n_head'\]; unknown: \[\]|missing: \[\]; unknown: \['bias'\]"):
            GPTConfig.from_dict(bad)
    assert GPTConfig.from_dict(types.MappingProxyType(config.to_dict())) == config


def test_generate_errors():
    model = make_model(n_layer=1)
    with pytest.raises(ValueError, match="left-padded"):
        model.generate(PROMPT, 2, attention_mask=np.array([[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 1]]))
    for bad in (-0.5, float("nan"), float("inf"), "1", 1e-39):  # 1e-39: 1/T overflows float32
        with pytest.raises(ValueError, match="temperature"):
            model.generate(PROMPT, 2, temperature=bad)
    near_greedy = model.generate(PROMPT, 2, temperature=1e-30, rng=0)
    np.testing.assert_array_equal(near_greedy.tokens, model.generate(PROMPT, 2, temperature=0).tokens)
    for bad in (0, -1, 2.5):
        with pytest.raises(ValueError, match="top_k"):
            model.generate(PROMPT, 2, top_k=bad)
    for bad in (0, 0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="top_p"):
            model.generate(PROMPT, 2, top_p=bad)
    with pytest.raises(ValueError, match="max_new_tokens"):
        model.generate(PROMPT, 0)
    with pytest.raises(ValueError, match="together with max_new_tokens"):
        model.generate(PROMPT, 5)  # 4 + 5 > block_size 8
    for bad in (13, 2.5, True, "a"):
        with pytest.raises(ValueError, match="eos_token_id must be None or an integer"):
            model.generate(PROMPT, 2, eos_token_id=bad)
    for bad in (-1, 2.5):
        with pytest.raises(ValueError, match="pad_token_id must be None or an integer"):
            model.generate(PROMPT, 2, pad_token_id=bad)
    with pytest.raises(ValueError, match="B >= 1"):
        model.generate(PROMPT[:0], 2)
    with pytest.raises(ValueError, match=r"token ids in \[0, 13\)"):
        model.generate(PROMPT + 10, 2)
    with pytest.raises(ValueError, match="attention_mask must have the shape"):
        model.generate(PROMPT, 2, attention_mask=PROMPT_MASK[:2])
    with pytest.raises(TypeError, match="seed"):
        model.generate(PROMPT, 2, rng="zero")
    with pytest.raises(ValueError, match="seed must be an integer >= 0, got -1"):  # NumPy's own message names nothing
        model.generate(PROMPT, 2, rng=-1)


# ----------------------------------------------------------------------------------------------
# state dicts (Hugging Face GPT-2 names)
# ----------------------------------------------------------------------------------------------
HF_KEYS_ONE_LAYER = [
    "transformer.wte.weight",
    "transformer.wpe.weight",
    "transformer.h.0.ln_1.weight",
    "transformer.h.0.ln_1.bias",
    "transformer.h.0.attn.c_attn.weight",
    "transformer.h.0.attn.c_attn.bias",
    "transformer.h.0.attn.c_proj.weight",
    "transformer.h.0.attn.c_proj.bias",
    "transformer.h.0.ln_2.weight",
    "transformer.h.0.ln_2.bias",
    "transformer.h.0.mlp.c_fc.weight",
    "transformer.h.0.mlp.c_fc.bias",
    "transformer.h.0.mlp.c_proj.weight",
    "transformer.h.0.mlp.c_proj.bias",
    "transformer.ln_f.weight",
    "transformer.ln_f.bias",
]


def test_state_dict_names_and_shapes_are_hugging_face_gpt2():
    model = GPT(make_config(n_layer=1))
    state = model.state_dict()
    assert list(state) == HF_KEYS_ONE_LAYER
    C = 8
    assert state["transformer.wte.weight"].shape == (VOCAB, C)
    assert state["transformer.wpe.weight"].shape == (BLOCK, C)
    assert state["transformer.h.0.attn.c_attn.weight"].shape == (C, 3 * C)  # Conv1D: x @ w
    assert state["transformer.h.0.attn.c_attn.bias"].shape == (3 * C,)
    assert state["transformer.h.0.mlp.c_fc.weight"].shape == (C, 4 * C)
    assert state["transformer.h.0.mlp.c_proj.weight"].shape == (4 * C, C)
    assert model.num_parameters() == sum(v.size for v in state.values())
    # GPT-2 init: gains 1, biases 0
    assert np.all(state["transformer.h.0.ln_1.weight"] == 1) and np.all(state["transformer.h.0.ln_1.bias"] == 0)


def test_state_dict_round_trip():
    source = make_model()
    target = GPT(make_config(), seed=99)
    state = source.state_dict()
    target.load_state_dict(state)
    for name in source.params:
        np.testing.assert_array_equal(target.params[name], source.params[name])
        assert not np.shares_memory(target.params[name], state[name])
    np.testing.assert_array_equal(target.forward(IDX, MASK), source.forward(IDX, MASK))
    state["transformer.wte.weight"][...] = 0.0  # a copy: the model is untouched
    assert np.any(source.params["transformer.wte.weight"] != 0)
    params_before = target.params["transformer.wte.weight"]
    target.load_state_dict(GPT(make_config(), seed=5).state_dict())
    assert target.params["transformer.wte.weight"] is params_before  # loaded in place (optimizer refs stay)


def test_load_state_dict_reports_every_problem_at_once():
    model = make_model(n_layer=1)
    before = model.state_dict()
    state = model.state_dict()
    del state["transformer.h.0.ln_2.bias"]
    del state["transformer.wpe.weight"]
    state["transformer.h.0.attn.c_attn.weight"] = np.zeros((8, 8))
    state["transformer.h.7.ln_1.weight"] = np.zeros(8)
    state["lm_head_extra"] = np.zeros(1)
    state["transformer.wte.weight"] = np.zeros((VOCAB, 8))  # valid, must not be loaded on failure
    with pytest.raises(ValueError) as error:
        model.load_state_dict(state)
    message = str(error.value)
    for fragment in ("missing", "transformer.h.0.ln_2.bias", "transformer.wpe.weight", "unexpected",
                     "transformer.h.7.ln_1.weight", "lm_head_extra", "transformer.h.0.attn.c_attn.weight",
                     "(8, 8)", "(8, 24)"):
        assert fragment in message, (fragment, message)
    for name, value in model.params.items():
        np.testing.assert_array_equal(value, before[name])  # nothing partially loaded
    state = model.state_dict()
    state["transformer.ln_f.bias"][0] = np.nan
    with pytest.raises(ValueError, match="transformer.ln_f.bias: contains NaN"):
        model.load_state_dict(state)
    small = make_model(n_layer=1, dtype=np.float32)
    state = {name: value.astype(np.float64) for name, value in small.state_dict().items()}
    state["transformer.ln_f.bias"][0] = 1e39  # finite in float64, inf once cast to float32
    with pytest.raises(ValueError, match=r"transformer.ln_f.bias: contains NaN or inf \(in float32\)"):
        small.load_state_dict(state)
    with pytest.raises(TypeError, match="dict"):
        model.load_state_dict([("transformer.wte.weight", np.zeros((VOCAB, 8)))])


def test_load_state_dict_accepts_hugging_face_extras():
    """A converted HF GPT-2 checkpoint carries lm_head.weight (tied: equal to wte) and the causal-mask
    buffers attn.bias / attn.masked_bias."""
    source = make_model(n_layer=1)
    state = source.state_dict()
    state["lm_head.weight"] = state["transformer.wte.weight"].copy()
    state["transformer.h.0.attn.bias"] = np.tril(np.ones((BLOCK, BLOCK)))[None, None]
    state["transformer.h.0.attn.masked_bias"] = np.array(-1e4)
    target = GPT(make_config(n_layer=1), seed=3)
    target.load_state_dict(state)
    for name in source.params:
        np.testing.assert_array_equal(target.params[name], source.params[name])
    assert "lm_head.weight" in state  # the caller's dict is not mutated
    state["lm_head.weight"] = state["lm_head.weight"] + 1.0
    with pytest.raises(ValueError, match="lm_head.weight must equal transformer.wte.weight"):
        target.load_state_dict(state)
