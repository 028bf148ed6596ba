"""Neural-network building blocks with hand-written gradients, and the models built from them.

- ``layers``      linear, LayerNorm, GELU, tanh, embedding: forward/backward pairs
- ``attention``   causal multi-head attention (all heads batched) with padding masks
- ``categorical`` log-softmax, token log-probabilities, entropy, fused cross-entropy
- ``module``      named parameters with accumulating gradient buffers
- ``gpt``         the GPT-2 transformer with KV-cache generation
- ``heads``       value head (critic) and score head (reward model)
- ``optim``       AdamW, gradient clipping, schedules
- ``checkpoint``  atomic one-file checkpoints
"""
from minippo.nn.categorical import cross_entropy
from minippo.nn.gpt import GPT, Generation, GPTConfig
from minippo.nn.heads import ScoreHead, ValueHead
from minippo.nn.optim import AdamW, clip_grad_norm, cosine_schedule

__all__ = ["GPT", "GPTConfig", "Generation", "ValueHead", "ScoreHead", "AdamW", "clip_grad_norm",
           "cosine_schedule", "cross_entropy"]
