"""The critic of PPO for a language model: V(s_t) for every response position, read by a value head from
the final hidden state of a trunk -- the policy's own (``critic="shared"``) or a copy of it."""
import copy

import numpy as np

from minippo.nn.heads import ValueHead


class Critic:
    """V(s_t) for every response position: a value head on a trunk (the policy's own, or a copy)."""

    def __init__(self, trunk, shared, value_head):
        self.trunk, self.shared, self.head = trunk, shared, value_head

    def values(self, rollout, run_trunk=True):
        """(B, T_response) values of the states before each response token."""
        if run_trunk:
            self.trunk.forward(rollout.tokens, rollout.attention_mask, compute_logits=False)
        values = self.head.forward(self.trunk.hidden)  # (B, T)
        return values[:, rollout.prompt_length - 1:-1]

    def hidden_gradient(self, dvalues, rollout):
        """dL/dhidden (B, T, C) from dL/dV over the response positions."""
        B, T = rollout.tokens.shape
        dfull = np.zeros((B, T), dtype=dvalues.dtype)
        dfull[:, rollout.prompt_length - 1:-1] = dvalues
        return self.head.backward(dfull)


def critic_from_reward_model(reward_model):
    """(trunk, value head) copies of a reward model, to start the critic from what it knows of the reward:
    its score head read at every position is an initial V(s_t)."""
    head = ValueHead(reward_model.trunk.config.n_embd, reward_model.trunk.config.dtype)
    head.load_state_dict(reward_model.head.state_dict())
    return copy.deepcopy(reward_model.trunk), head
