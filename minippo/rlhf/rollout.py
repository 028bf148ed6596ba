"""RL on text: a rollout is a batch of prompts and the responses the policy sampled for them.

Agent = the policy transformer; state s_t = prompt + response tokens so far; action a_t = the next
token, drawn from π_T(·|s_t) = softmax(z(s_t) / T); the episode ends at EOS or at the length limit.

A rollout is stored as one token array (B, T_prompt + T_response): left-padded prompts followed by
the responses (padding after EOS), with ``attention_mask`` marking real tokens and ``response_mask``
(B, T_response) marking the tokens that are actions.  Temperature divides the logits in *every*
forward pass -- sampling, the old policy, the reference model and training -- so all log-probabilities
are of the same distribution π_T.
"""
from dataclasses import dataclass

import numpy as np

from minippo.checks import integer_at_least
from minippo.nn.categorical import token_logprobs_backward, token_logprobs_forward


@dataclass
class Rollout:
    prompts: list           # the prompt texts
    responses: list         # the decoded response texts
    tokens: np.ndarray      # (B, T) prompt (left-padded) + response (padded after EOS)
    attention_mask: np.ndarray  # (B, T) 1 for real tokens
    response_mask: np.ndarray   # (B, T_response) True for action tokens (up to and including EOS)
    sampled_logprobs: np.ndarray  # (B, T_response) log π_T(a_t|s_t) reported by the sampler
    prompt_length: int      # T_prompt: the response starts at this column

    def __len__(self):
        return len(self.prompts)

    def rows(self, index):
        """The sub-rollout of rows ``index`` (an index array)."""
        return Rollout([self.prompts[i] for i in index], [self.responses[i] for i in index],
                       self.tokens[index], self.attention_mask[index], self.response_mask[index],
                       self.sampled_logprobs[index], self.prompt_length)

    def ended_with(self, token_id):
        """(B,) True where a row's last action token is ``token_id`` (e.g. the response ended with EOS)."""
        actions = self.tokens[:, self.prompt_length:]
        return actions[np.arange(len(self)), self.last_token_index] == token_id

    @property
    def last_token_index(self):
        """Index into the response of each row's last action token (B,)."""
        return self.response_mask.sum(axis=1) - 1


def concatenate_rollouts(rollouts, pad_id):
    """One Rollout of the rows of ``rollouts``, in order: prompts left-padded and responses right-padded
    with ``pad_id`` to the longest of each (attention and response masks 0 there), so every row's tokens,
    positions and log-probabilities are unchanged."""
    prompt_length = max(r.prompt_length for r in rollouts)
    response_length = max(r.response_mask.shape[1] for r in rollouts)

    def padded(array, rollout, value, prompt=True):
        """``array`` (B, T_prompt + T_response) or, with ``prompt=False``, (B, T_response), widened."""
        left = prompt_length - rollout.prompt_length if prompt else 0
        right = response_length - (array.shape[1] - (rollout.prompt_length if prompt else 0))
        return np.pad(array, ((0, 0), (left, right)), constant_values=value)

    return Rollout([p for r in rollouts for p in r.prompts], [t for r in rollouts for t in r.responses],
                   np.concatenate([padded(r.tokens, r, pad_id) for r in rollouts]),
                   np.concatenate([padded(r.attention_mask, r, 0) for r in rollouts]),
                   np.concatenate([padded(r.response_mask, r, False, prompt=False) for r in rollouts]),
                   np.concatenate([padded(r.sampled_logprobs, r, 0.0, prompt=False) for r in rollouts]),
                   prompt_length)


def check_response_room(max_new_tokens, block_size, prefix=""):
    """``max_new_tokens``, checked to leave a prompt at least one token of the policy's ``block_size``."""
    max_new_tokens = integer_at_least(max_new_tokens, prefix + "max_new_tokens", 1)
    if max_new_tokens >= block_size:
        raise ValueError(f"{prefix}max_new_tokens ({max_new_tokens}) must be less than the policy's block_size "
                         f"({block_size}), to leave room for a prompt")
    return max_new_tokens


def encode_prompts(policy, tokenizer, prompt_texts, max_new_tokens):
    """``(prompt_ids, prompt_mask)`` of the left-padded prompts, each checked to be at least one token long
    and to leave room for ``max_new_tokens`` in the policy's context; the error names the first that does not."""
    max_new_tokens = check_response_room(max_new_tokens, policy.config.block_size)
    room = policy.config.block_size - max_new_tokens
    rows = []
    for index, text in enumerate(prompt_texts):  # each checked as it is encoded: a huge prompt costs only itself
        rows.append(tokenizer.encode(text))
        if len(rows[-1]) == 0 or len(rows[-1]) > room:
            need = "at least one token" if len(rows[-1]) == 0 else f"at most {room} tokens (block_size " \
                f"{policy.config.block_size} - max_new_tokens {max_new_tokens}), it has {len(rows[-1])}"
            raise ValueError(f"prompt {index} ({text[:60]!r}) must be {need}")
    return tokenizer.pad_batch(rows)


def generate_rollout(policy, tokenizer, prompt_texts, max_new_tokens, temperature, rng):
    """Sample one response per prompt with the KV-cache generator and package it as a Rollout (the prompts
    are checked by :func:`encode_prompts`)."""
    prompt_ids, prompt_mask = encode_prompts(policy, tokenizer, prompt_texts, max_new_tokens)
    generation = policy.generate(prompt_ids, max_new_tokens, temperature=temperature,
                                 eos_token_id=tokenizer.eos_id, pad_token_id=tokenizer.pad_id,
                                 attention_mask=prompt_mask, rng=rng)
    prompt_length = prompt_ids.shape[1]
    attention_mask = np.concatenate([prompt_mask, generation.mask.astype(prompt_mask.dtype)], axis=1)
    responses = [tokenizer.decode(row[mask]) for row, mask in
                 zip(generation.tokens[:, prompt_length:], generation.mask)]
    return Rollout(list(prompt_texts), responses, generation.tokens, attention_mask, generation.mask,
                   generation.logprobs, prompt_length)


def response_logprobs(model, rollout, temperature):
    """log π_T(a_t|s_t) for every response position (B, T_response), via one full forward pass.

    Logits at column t predict the token at column t + 1, so the response tokens are scored by the
    logits at columns T_prompt − 1 .. T − 2.  Returns ``(logprobs, log_probs_all)``; the full
    log-softmax (B, T_response, V) is what :func:`response_logprobs_backward` and the entropy need.
    """
    logits = model.forward(rollout.tokens, rollout.attention_mask)  # (B, T, V)
    response_logits = logits[:, rollout.prompt_length - 1:-1]  # (B, T_response, V)
    if temperature != 1.0:  # z / 1 is z: no pass over the logits for it
        response_logits = response_logits / temperature
    actions = rollout.tokens[:, rollout.prompt_length:]
    return token_logprobs_forward(response_logits, actions)


def response_logits_gradient(dresponse_logits, rollout, temperature, vocab_size):
    """Place dL/d(z/T) of the response positions into a full dL/dz (B, T, V) for ``model.backward``."""
    B, T = rollout.tokens.shape
    dlogits = np.empty((B, T, vocab_size), dtype=dresponse_logits.dtype)
    dlogits[:, :rollout.prompt_length - 1] = 0.0  # the logits of the prompt and of the last token score nothing
    dlogits[:, -1] = 0.0
    np.multiply(dresponse_logits, 1.0 / temperature, out=dlogits[:, rollout.prompt_length - 1:-1])
    return dlogits


def response_logprobs_backward(dlogprobs, rollout, log_probs_all, temperature):
    """dL/dz (B, T, V) from dL/dlog π (B, T_response)."""
    actions = rollout.tokens[:, rollout.prompt_length:]
    dresponse_logits = token_logprobs_backward(dlogprobs, actions, log_probs_all)
    return response_logits_gradient(dresponse_logits, rollout, temperature, log_probs_all.shape[-1])
