"""minippo: reinforcement learning from human feedback, from scratch in NumPy.

The package is organised by concept:

- ``minippo.mrp``      Markov reward processes and MDPs: V(s) = R(s) + γ Σ P(s'|s) V(s').
- ``minippo.nn``       forward/backward building blocks, the GPT, its heads and the optimiser.
- ``minippo.text``     tokenizers and the shipped corpus.
- ``minippo.envs``     vectorized environments.

Only NumPy and SciPy are imported at module load.
"""
__version__ = "0.1.0"  # the one place the version is written: setup.cfg reads it (attr:), and minippo --version

from minippo.mrp import MDP, MRP, MonteCarloEstimate  # noqa: E402,F401
