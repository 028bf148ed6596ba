"""RLHF: PPO (and REINFORCE, RLOO) on a language model against a judge of its text.

- ``rollout``   prompts → sampled responses, their tokens, masks and log-probabilities
- ``trainer``   the RLHF trainer: per-token KL reward, critic, GAE, PPO/REINFORCE/RLOO updates
- ``value``     the Monte Carlo value of a prompt, E_π[R]
- ``pipeline``  the whole demo: pretrain → reward model → PPO → before/after evaluation
"""
