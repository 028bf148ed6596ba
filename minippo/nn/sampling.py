"""Drawing the next token from logits z: softmax(z/T), optionally truncated by top-k / top-p.

Read :func:`sample_reference` first: the textbook sampler in a dozen lines (the log-softmax, the
truncation, then the inverse CDF: the first token j whose cumulative probability F_j exceeds a
uniform draw u).  :class:`TokenSampler` computes the same tokens from the same draws, faster: it
never forms the whole log-softmax and finds u·F_V on two levels of cumulative sums (see ``_draw``).
"""
import math

import numpy as np

from minippo.nn.categorical import log_softmax
from minippo.nn.inputs import check_sampling
from minippo.nn.layers import row_sums
from minippo.parallel import map_shards, row_shards


def sample_reference(logits, temperature, top_k, top_p, rng):
    """Textbook twin of :meth:`TokenSampler.sample`: ``(token, log π_T(token))`` per row of logits (B, V).

    π_T = softmax(z/T) (T = 0: the argmax, with log π under T = 1); top-k keeps the k largest
    probabilities (ties kept), top-p the most likely tokens until the mass before them reaches p;
    the token is the first j with F_j > u·F_V for F = cumsum of the kept probabilities and
    u = ``rng.random(B)``, the draw :class:`TokenSampler` makes.  Whole arrays, a plain cumsum and
    ``np.searchsorted``; not used on the hot path.
    """
    rows = np.arange(len(logits))
    if temperature == 0.0:
        token = logits.argmax(axis=-1)
        return token, log_softmax(logits)[rows, token]
    log_probs = log_softmax(logits / temperature)  # log π_T, (B, V)
    probs = np.exp(log_probs)
    if top_k is not None:
        kth_largest = np.sort(probs, axis=-1)[:, -min(top_k, probs.shape[-1])]
        probs[probs < kth_largest[:, None]] = 0.0
    if top_p is not None:
        order = np.argsort(-probs, axis=-1)
        sorted_probs = np.take_along_axis(probs, order, axis=-1)
        mass_before = np.cumsum(sorted_probs, axis=-1) - sorted_probs
        sorted_probs[mass_before >= top_p * sorted_probs.sum(-1, keepdims=True)] = 0.0
        np.put_along_axis(probs, order, sorted_probs, axis=-1)
    cdf = np.cumsum(probs, axis=-1)  # F, (B, V)
    u = rng.random(len(logits))
    token = np.array([np.searchsorted(F, u_b * F[-1], side="right") for F, u_b in zip(cdf, u)])
    return token, log_probs[rows, token]


class TokenSampler:
    """Draws the next token from logits z (B, V): softmax(z/T), optionally truncated by top-k / top-p.

    Returns the token and its log-probability under the untruncated softmax(z/T) (T = 1 for greedy).
    The same tokens as :func:`sample_reference` for the same ``rng``, without its full-size passes.
    """

    def __init__(self, temperature, top_k, top_p, vocab_size, rng):
        check_sampling(temperature, top_k, top_p)
        self.temperature = float(temperature)
        self.top_k = None if top_k is None or top_k >= vocab_size else int(top_k)
        self.top_p = top_p
        self.rng = rng

    def sample(self, logits):
        """One token per row of ``logits`` (B, V) and its log-probability log π_T(token).

        With shifted logits s = (z − max z)/T (T = 1 when greedy), log π_T(a) = s_a − log Σ_j exp s_j:
        only the sampled entry is needed, so the full log-softmax is never formed.  The uniform draws
        are made first, one per row, and shards of rows are then sampled in parallel threads.
        """
        draws = None if self.temperature == 0.0 else self.rng.random(len(logits))  # u, (B,)
        shards = map_shards(lambda _, rows: self._sample_rows(logits[rows], None if draws is None else draws[rows]),
                            row_shards(len(logits)))
        token, token_shifted, normalizer = (np.concatenate(parts) for parts in zip(*shards))
        if not np.isfinite(normalizer).all():  # a NaN or infinite logit makes the whole row NaN
            rows = np.flatnonzero(~np.isfinite(normalizer)).tolist()
            raise FloatingPointError(f"logits of rows {rows} contain NaN or inf; cannot sample a token")
        return token, token_shifted - np.log(normalizer)

    def _sample_rows(self, logits, draws):
        """``(token, s_token, Σ_j exp s_j)`` for some rows of logits, given their uniform ``draws``."""
        with np.errstate(invalid="ignore"):  # inf − inf = NaN in a row with an infinite logit: refused below
            shifted = logits - logits.max(axis=-1, keepdims=True)  # (B, V): every s_j ≤ 0, max 0
        if self.temperature not in (0.0, 1.0):
            with np.errstate(over="ignore"):  # s_j ≤ 0 may become −inf at tiny T: p_j = 0, as it should
                shifted *= 1.0 / self.temperature
        if self.temperature == 0.0:
            token = shifted.argmax(axis=-1)
            normalizer = row_sums(np.exp(shifted))
        else:
            token, normalizer = self._draw(shifted, draws)
        return token, shifted[np.arange(len(token)), token], normalizer

    def _draw(self, shifted, draws):
        """Inverse-CDF sampling of one token per row from p ∝ exp(shifted), after top-k/top-p truncation.

        Returns ``(token, Σ_j exp shifted_j)``, the sum over the untruncated row (the softmax's normaliser).
        With u ~ U[0, 1) (``draws``, one per row) and the cumulative sums F_j = p_1 + … + p_j, the token is
        the first j with F_j > u·F_V.  A cumulative sum is a sequential loop (about 4 ns an entry), so it runs on two
        levels: the sums of blocks of about √V entries (one matrix-vector product) and their cumulative
        sum find the block where u·F_V falls; then only that block is summed entry by entry.
        """
        B, V = shifted.shape
        block = math.isqrt(V - 1) + 1  # ⌈√V⌉ entries per block
        block_count = -(-V // block)
        padded = np.empty((B, block_count * block))  # p in float64 (sums of many terms); zeros pad the last block
        padded[:, V:] = 0.0
        probs = np.exp(shifted, out=padded[:, :V])  # (B, V)
        truncated = self.top_k is not None or self.top_p is not None
        if truncated:
            normalizer = row_sums(probs)
        if self.top_k is not None:
            kth_largest = np.partition(probs, -self.top_k, axis=-1)[:, -self.top_k][:, None]
            probs[probs < kth_largest] = 0.0
        if self.top_p is not None:
            order = np.argsort(-probs, axis=-1)
            sorted_probs = np.take_along_axis(probs, order, axis=-1)
            mass_before = np.cumsum(sorted_probs, axis=-1) - sorted_probs
            sorted_probs[mass_before >= self.top_p * sorted_probs.sum(-1, keepdims=True)] = 0.0
            np.put_along_axis(probs, order, sorted_probs, axis=-1)
        blocks = padded.reshape(B, block_count, block)
        block_sums = row_sums(blocks)  # (B, block_count)
        block_starts = np.zeros((B, block_count + 1))  # F before each block, and the total F_V
        np.cumsum(block_sums, axis=1, out=block_starts[:, 1:])
        if not truncated:
            normalizer = block_starts[:, -1]
        threshold = draws * block_starts[:, -1]  # u·F_V
        rows = np.arange(B)
        chosen = first_above(block_starts[:, 1:], threshold, block_sums)  # (B,)
        within = blocks[rows, chosen]  # (B, block)
        threshold -= block_starts[rows, chosen]  # what remains after the earlier blocks
        return chosen * block + first_above(np.cumsum(within, axis=1), threshold, within), normalizer


def first_above(cumulative, threshold, mass):
    """Per row, the first index j with ``cumulative[j] > threshold``, where cumulative = cumsum(mass).

    That entry has mass > 0 (the sum grew past the threshold there).  If rounding leaves no entry
    above the threshold, the last entry with mass > 0: a token of probability 0 is never drawn.
    """
    first = (cumulative <= threshold[:, None]).sum(axis=1)
    if first.max() < mass.shape[1]:  # cumulative[first] > cumulative[first − 1]: mass[first] > 0
        return first
    last_with_mass = mass.shape[1] - 1 - np.argmax(mass[:, ::-1] > 0, axis=1)
    return np.minimum(first, last_with_mass)
