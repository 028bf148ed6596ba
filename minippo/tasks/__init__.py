"""Tasks whose answers a rule can check exactly, for RL with verifiable rewards.

- ``arithmetic``  two-digit addition and subtraction (``"Q: 37+48= A: 85"``): problems generated
  from a seed, a held-out split, and a pretraining mix that leaves a model partly right.
  Its reward is :class:`minippo.rewards.arithmetic.ArithmeticReward`.
- ``pipeline``    the task end to end, what ``minippo grpo`` runs: pretrain, RL on the exact answer,
  held-out accuracy before and after.
"""
