"""Will it fit?  The memory a command needs, estimated from its settings before anything is allocated.

A command that is told to build a model of 100,000 layers, or to hold a billion rollouts, should say so
in a second, not die with an allocation traceback (or be killed by the kernel) minutes later.  Each
``*_memory`` function below adds up the arrays that dominate a command's memory, from the same sizes
the command will use; ``check_memory`` compares the total with the memory the system has available
and refuses with one line naming the option to blame:

    --n-layer 100000: needs ~2.2 TB of memory (model and AdamW state 2.2 TB, activations 4.4 GB); 21.9 GB available

The estimates count only the large arrays, so they are a little below the true peak: a refusal is
certain not to fit, and a run that is accepted may still come close to the limit.

The sizes of a GPT (B sequences of T tokens, L layers of width C with H heads, vocabulary V, context
T_max, k bytes per float):

    parameters   P = V·C + T_max·C + L·(12·C² + 13·C) + 2·C     (GPT-2, LM head tied to the embedding)
    training     4·P·k          parameters, gradients, AdamW's two moments
    activations  B·T·(L·(14·C + H·T) + 2·V)·k                   kept for backward, logits and their gradient
    KV cache     2·L·B·T·C·k                                    while sampling
"""
import math
import os
from functools import partial

GPT_TRAINING_COPIES = 4  # parameters, gradients, AdamW's first and second moments
ACTIVATION_WIDTHS = 14  # floats per token and layer kept for backward, in units of C (plus H·T of attention)
FLOAT64_BYTES = 8
ROLLOUT_SCALARS = 11  # per rollout step: log-prob, value, reward, two done flags, final value, advantage, return,
#                     and the end of an episode: a flag, its return and its length
UNITS = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")


def available_memory():
    """Bytes the system can give this process now: MemAvailable from /proc/meminfo (Linux), else the free
    physical pages (``os.sysconf``); None when neither is known (then nothing is refused)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as file:
            for line in file:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # the file counts kibibytes
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def format_bytes(count):
    """A byte count in decimal units with three significant figures at most: 950 B, 21.9 GB, 1.1 TB."""
    value = float(count)
    for unit in UNITS:
        if value < 999.5 or unit == UNITS[-1]:
            break
        value /= 1000
    return f"{value:.0f} {unit}" if unit == "B" or value >= 99.5 else f"{value:.3g} {unit}"


# --------------------------------------------------------------------- the parts every estimate is made of
def gpt_parameters(vocab_size, block_size, n_layer, n_embd):
    """P = V·C + T_max·C + L·(12·C² + 13·C) + 2·C: embeddings, L blocks (attention 4·C² + 4·C, MLP 8·C² + 5·C,
    two LayerNorms 4·C), the final LayerNorm."""
    return vocab_size * n_embd + block_size * n_embd + n_layer * (12 * n_embd**2 + 13 * n_embd) + 2 * n_embd


def gpt_activations(rows, tokens, n_layer, n_embd, n_head, vocab_size):
    """Floats one forward/backward of ``rows`` sequences of ``tokens`` holds: B·T·(L·(14·C + H·T) + 2·V)."""
    return rows * tokens * (n_layer * (ACTIVATION_WIDTHS * n_embd + n_head * tokens) + 2 * vocab_size)


def kv_cache(rows, tokens, n_layer, n_embd):
    """Floats of the keys and values cached while ``rows`` sequences grow to ``tokens``: 2·L·B·T·C."""
    return 2 * n_layer * rows * tokens * n_embd


# --------------------------------------------------------------------- the commands' estimates
def pretrain_memory(vocab_size, block_size, n_layer, n_head, n_embd, batch_size, tokens, itemsize):
    """``minippo pretrain``: the model in training, and one batch of ``min(tokens, block_size)``-token documents."""
    tokens = min(tokens, block_size)
    return {
        "model and AdamW state": GPT_TRAINING_COPIES * gpt_parameters(vocab_size, block_size, n_layer, n_embd)
        * itemsize,
        "activations": gpt_activations(batch_size, tokens, n_layer, n_embd, n_head, vocab_size) * itemsize,
    }


def rlhf_memory(model, batch_size, minibatch_size, max_new_tokens, prompt_tokens, frozen_parameters,
                separate_critic=False):
    """``minippo rlhf`` (and the RL stage of ``minippo grpo``): the policy in training (and a separate critic),
    its frozen reference and reward model (``frozen_parameters``), the KV cache of sampling ``batch_size``
    responses, and the activations of one minibatch."""
    tokens = min(prompt_tokens + max_new_tokens, model["block_size"])
    P = gpt_parameters(model["vocab_size"], model["block_size"], model["n_layer"], model["n_embd"])
    k = model["itemsize"]
    return {
        "policy and AdamW state": GPT_TRAINING_COPIES * P * (2 if separate_critic else 1) * k,
        "reference and reward models": frozen_parameters * k,
        "sampling (KV cache)": kv_cache(batch_size, tokens, model["n_layer"], model["n_embd"]) * k,
        "activations": gpt_activations(minibatch_size, tokens, model["n_layer"], model["n_embd"], model["n_head"],
                                       model["vocab_size"]) * k,
    }


def grpo_memory(model, n_layer, n_embd, prompts_per_iteration, num_generations, max_new_tokens, pretrain_batch):
    """``minippo grpo``: pretraining a GPT of ``n_layer`` blocks of width ``n_embd`` on batches of
    ``pretrain_batch`` problems, then RL on ``prompts_per_iteration`` · ``num_generations`` responses in one
    minibatch, with a frozen reference (the larger of the two stages)."""
    model = {**model, "n_layer": n_layer, "n_embd": n_embd}
    responses = prompts_per_iteration * num_generations
    rl = rlhf_memory(model, responses, responses, max_new_tokens, model["block_size"],
                     gpt_parameters(model["vocab_size"], model["block_size"], n_layer, n_embd))
    pretraining = pretrain_memory(**{name: model[name] for name in ("vocab_size", "block_size", "n_head", "itemsize")},
                                  n_layer=n_layer, n_embd=n_embd, batch_size=pretrain_batch,
                                  tokens=model["block_size"])
    return rl if sum(rl.values()) >= sum(pretraining.values()) else pretraining


def pair_memory(model, batch_size, tokens, reference):
    """``minippo reward-model`` and ``minippo dpo``: a GPT trunk in training scoring the chosen and the rejected
    text of ``batch_size`` pairs of ``tokens`` tokens each, plus a frozen copy for DPO's ``reference``."""
    tokens = min(tokens, model["block_size"])
    P = gpt_parameters(model["vocab_size"], model["block_size"], model["n_layer"], model["n_embd"])
    k = model["itemsize"]
    return {
        "model and AdamW state": (GPT_TRAINING_COPIES + reference) * P * k,
        "activations": gpt_activations(2 * batch_size, tokens, model["n_layer"], model["n_embd"], model["n_head"],
                                       model["vocab_size"]) * k,
    }


def rollout_memory(num_envs, num_steps, env):
    """``minippo train-ppo``: the rollout buffers of ``num_envs`` copies of ``env`` (a vector environment) for
    ``num_steps`` steps, float64 numbers for the observation, the action and ROLLOUT_SCALARS more per step."""
    floats_per_step = (math.prod(env.single_observation_space.shape) + math.prod(env.single_action_space.shape)
                       + ROLLOUT_SCALARS)
    return {"rollout buffers": num_envs * num_steps * floats_per_step * FLOAT64_BYTES}


def samples_memory(num_samples, prompts, max_new_tokens):
    """``minippo generate``: the samples it keeps until it prints them, ~4 bytes a token plus ~200 bytes each."""
    return {"samples kept until written": num_samples * prompts * (4 * max_new_tokens + 200)}


def lu_memory(n_states):
    """``minippo mrp --methods direct`` on a P that is not grid-like: the LU factors of I − γP may fill in
    completely, n² entries of 8 bytes and a 4-byte index each."""
    return {"LU factors if they fill in": 12 * n_states**2}


def gpt_sizes(config):
    """The fields of a :class:`~minippo.nn.gpt.GPTConfig` the estimates use, as a dict (``itemsize`` in bytes)."""
    return {"vocab_size": config.vocab_size, "block_size": config.block_size, "n_layer": config.n_layer,
            "n_head": config.n_head, "n_embd": config.n_embd, "itemsize": config.dtype.itemsize}


def model_parameters(model):
    """Parameters of a GPT, of a reward model's trunk, or 0 for a rule reward (which has none)."""
    if hasattr(model, "trunk"):
        return model.trunk.num_parameters()
    return model.num_parameters() if hasattr(model, "num_parameters") else 0


def longest_in_tokens(tokenizer, texts, candidates=8):
    """The token count of the longest of ``texts``, found by encoding only the ``candidates`` longest in
    characters (cheap for any number of texts; exact unless a shorter text has more tokens per character)."""
    longest = sorted(texts, key=len)[-candidates:]
    return max((len(tokenizer.encode(text)) for text in longest), default=0)


def longest_pair_tokens(tokenizer, pairs, template_tokens=8):
    """Tokens of the longest prompt + response of preference pairs ({"prompt", "chosen", "rejected"}), with
    ``template_tokens`` for the words the prompt is formatted with ("Q: ... A:")."""
    texts = [f"{pair['prompt']} {max(pair['chosen'], pair['rejected'], key=len)}" for pair in pairs]
    return longest_in_tokens(tokenizer, texts) + template_tokens


# --------------------------------------------------------------------- the check
def check_memory(estimate, options, fixed, available=None):
    """Refuse a run that cannot fit: a ValueError naming the option to blame, the estimate and what is available.

    ``estimate(**values)`` returns the bytes each part needs ({part: bytes}); ``options`` maps each size
    option as the user writes it (``"--n-layer"``) to its value, passed to ``estimate`` under the option's
    name as a keyword (``n_layer``); ``fixed`` are the other keyword arguments (an option overrides them).
    The option to blame is the one whose value, set to 1, shrinks the estimate most.  ``available``
    defaults to :func:`available_memory`; nothing is refused when it is unknown.  Returns the estimate
    in bytes.
    """
    keywords = {option: option.lstrip("-").replace("-", "_") for option in options}
    values = {keywords[option]: value for option, value in options.items()}
    need = partial(estimate, **fixed)
    parts = need(**values)
    total = sum(parts.values())
    available = available_memory() if available is None else available
    if available is None or total <= available:
        return total
    shrunk = {option: sum(need(**{**values, keywords[option]: 1}).values()) for option in options}
    blame = min(shrunk, key=shrunk.get, default=None)
    named = f"{blame} {options[blame]}: " if blame is not None and shrunk[blame] < total else ""
    breakdown = ", ".join(f"{part} {format_bytes(size)}" for part, size in parts.items() if size >= total / 100)
    raise ValueError(f"{named}needs ~{format_bytes(total)} of memory ({breakdown}); "
                     f"{format_bytes(available)} available")
