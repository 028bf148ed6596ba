"""Neural-network building blocks with hand-written gradients, and the models built from them.

Each optimised kernel has a textbook twin beside it, named ``<kernel>_reference``: read the twin
first (the equation as code), then the fast version (same result, less work).

- ``layers``        linear, LayerNorm, GELU, tanh, embedding: forward/backward pairs
- ``attention``     causal multi-head attention (all heads batched) with padding masks
- ``categorical``   log-softmax, token log-probabilities, entropy, fused cross-entropy
- ``lm_head``       the LM head and cross-entropy fused over chunks of rows (``GPT.loss``)
- ``module``        named parameters with accumulating gradient buffers
- ``gpt``           the GPT-2 transformer: config, parameters, forward, backward
- ``inputs``        the checks of the GPT's forward, backward and generate arguments
- ``data_parallel`` the GPT's serial passes run on shards of batch rows in threads
- ``generation``    sampling text with a KV cache (``GPT.generate``)
- ``sampling``      the token sampler: softmax(z/T), top-k, top-p, inverse CDF
- ``heads``         value head (critic) and score head (reward model)
- ``mlp``           the tanh MLP of control-task PPO
- ``optim``         AdamW, gradient clipping, schedules
- ``checkpoint``    atomic one-file checkpoints
"""
from minippo.nn.categorical import cross_entropy
from minippo.nn.generation import Generation
from minippo.nn.gpt import GPT, GPTConfig
from minippo.nn.heads import ScoreHead, ValueHead
from minippo.nn.optim import AdamW, clip_grad_norm, cosine_schedule

__all__ = ["GPT", "GPTConfig", "Generation", "ValueHead", "ScoreHead", "AdamW", "clip_grad_norm",
           "cosine_schedule", "cross_entropy"]
