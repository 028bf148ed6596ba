"""Reinforcement-learning pieces shared by PPO on control tasks and PPO on text.

- ``advantages``     generalised advantage estimation (time-major or batch-major), whitening, RLOO's and
                     GRPO's group advantages
- ``losses``         REINFORCE, the clipped surrogate, GRPO's loss, the clipped value loss, with their gradients;
                     the loss aggregations (grpo, dr_grpo, dapo)
- ``kl``             KL estimators (k1, k2, k3) and their derivatives, the KL-penalised per-token reward, the β
                     controllers
- ``gaussian``       the diagonal Gaussian policy head for continuous actions
- ``actor_critic``   MLP policy and value networks for control tasks
- ``ppo_config``     ``PPOConfig`` (every field with its help and check) and the named presets
- ``rollout_buffer`` the time-major buffers of one rollout and their GAE targets
- ``ppo``            PPO and REINFORCE on vectorized environments (CleanRL's recipe), checkpoints
- ``evaluation``     the return of a policy, unbiased toward short episodes and streamed in bounded chunks;
                     the best-checkpoint / stop-at tracking of ``--eval-every``

The names a user needs are importable from here: ``from minippo.rl import PPOConfig, Trainer, preset_for``.
"""
from minippo.rl.evaluation import evaluate_policy  # noqa: F401
from minippo.rl.ppo import Trainer, load_policy, make_env  # noqa: F401
from minippo.rl.ppo_config import PRESETS, PPOConfig, preset_for  # noqa: F401
