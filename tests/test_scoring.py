"""minippo.nn.scoring: a frozen model's log-probabilities of continuations, without backward caches."""
import numpy as np
import pytest

from minippo.nn import scoring
from minippo.nn.categorical import token_logprobs_forward
from minippo.nn.gpt import GPT, GPTConfig
from minippo.nn.scoring import continuation_logprobs
from minippo.parallel import get_num_threads, set_num_threads


def model(dtype=np.float64):
    return GPT(GPTConfig(vocab_size=11, block_size=12, n_layer=2, n_head=2, n_embd=8, dtype=dtype), seed=3)


def by_forward(gpt, idx, mask, start, temperature):
    """The textbook path: the full forward's logits, sliced, divided by T, log-softmax."""
    logits = gpt.forward(idx, mask)[:, start - 1:-1] / temperature
    return token_logprobs_forward(logits, idx[:, start:])[0]


@pytest.mark.parametrize("chunk_positions", [2048, 20, 5])  # one chunk; 2 rows of 9; 1 row (T > the budget)
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("padded, temperature", [(False, 1.0), (True, 1.0), (True, 0.7)])
def test_continuation_logprobs_equal_the_full_forwards(padded, temperature, threads, chunk_positions, monkeypatch):
    monkeypatch.setattr(scoring, "CHUNK_POSITIONS", chunk_positions)
    gpt, rng = model(), np.random.default_rng(0)
    idx = rng.integers(0, 11, (5, 9))
    mask = None
    if padded:  # left padding of 0..3 tokens
        mask = (np.arange(9)[None, :] >= rng.integers(0, 4, 5)[:, None]).astype(np.int64)
    before = get_num_threads()
    set_num_threads(threads)
    try:
        scored = continuation_logprobs(gpt, idx, mask, 4, temperature)
    finally:
        set_num_threads(before)
    assert scored.shape == (5, 5) and scored.dtype == np.float64
    np.testing.assert_allclose(scored, by_forward(gpt, idx, mask, 4, temperature), rtol=0, atol=1e-12)


def test_continuation_logprobs_keep_the_dtype_and_leave_the_last_forward_for_backward():
    gpt, rng = model(np.float32), np.random.default_rng(1)
    idx = rng.integers(0, 11, (3, 7))
    logits = gpt.forward(idx)
    hidden = gpt.hidden
    scored = continuation_logprobs(gpt, idx, start=2)
    assert scored.dtype == np.float32 and gpt.hidden is hidden  # the kept forward is untouched
    np.testing.assert_allclose(scored, by_forward(gpt, idx, None, 2, 1.0), rtol=0, atol=2e-5)
    gpt.zero_grad()
    gpt.backward(np.ones_like(logits))  # still the backward of the forward above
    assert np.isfinite(gpt.grads["transformer.wte.weight"]).all()


def test_continuation_logprobs_check_start():
    gpt = model()
    idx = np.zeros((2, 5), dtype=np.int64)
    for start in (0, 5):
        with pytest.raises(ValueError, match=rf"^start must be in \[1, 5\) .*got {start}$"):
            continuation_logprobs(gpt, idx, start=start)
