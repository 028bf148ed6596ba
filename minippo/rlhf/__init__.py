"""RLHF: PPO (and REINFORCE, RLOO, GRPO) on a language model against a judge of its text.

- ``rollout``   prompts → sampled responses, their tokens, masks and log-probabilities
- ``config``    ``RLHFConfig``: every setting of the trainer with its help and its check
- ``trainer``   the RLHF trainer: per-token KL reward, critic, GAE, group advantages, PPO/REINFORCE/RLOO/GRPO updates
- ``diagnostics`` what every iteration logs, the progress line, the CSV log and the sample completions
- ``evaluation`` held-out mean reward and KL to the reference (``evaluate_rlhf``), ``rlhf --eval-every``
- ``value``     the Monte Carlo value of a prompt, E_π[R]
- ``pipeline``  the whole demo: pretrain → reward model → PPO → before/after evaluation
"""
