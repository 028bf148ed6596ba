"""Reinforcement-learning pieces shared by PPO on control tasks and PPO on text.

- ``advantages``  generalised advantage estimation and advantage whitening
- ``losses``      clipped surrogate, clipped value loss, REINFORCE, with their gradients
- ``kl``          the KL-penalty coefficient controllers used in RLHF
- ``gaussian``    the diagonal Gaussian policy head for continuous actions
- ``actor_critic`` MLP policy and value networks for control tasks
- ``ppo``         PPO and REINFORCE on vectorized environments (CleanRL's recipe)
"""
