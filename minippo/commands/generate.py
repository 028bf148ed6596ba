"""``minippo generate``: look at what a model writes.

    minippo generate --policy runs/demo/policy.npz --prompt "Q: Where is the bank? A:" --num-samples 3
    minippo generate --policy my-gpt2/ --prompts prompts.txt --out samples.jsonl --top-p 0.9

``--policy`` is a minippo checkpoint or a Hugging Face GPT-2 directory (with its tokenizer).  With
``--prompt`` the samples are printed; with ``--prompts FILE`` (one prompt per line) each sample is one
JSON line ``{"prompt", "sample", "response", "logprob"}`` on stdout, or in ``--out FILE``.

A policy that records its prompt template (one from ``rlhf``, ``dpo`` or ``demo``) is given each raw
prompt laid out by it (``Where is the bank?`` -> ``Q: Where is the bank? A:``), as ``rlhf`` and ``value``
do; ``--template`` names the template of a policy that records none (and must agree with a recorded
one).  A policy that records none (a pretrained checkpoint, a model directory) without ``--template``
is given the prompts verbatim.
"""
import json
import sys

import numpy as np

from minippo.atomic import atomic_write
from minippo.commands import integer_option
from minippo.commands.models import add_template_option, command_template, load_policy_and_tokenizer, policy_template
from minippo.commands.rlhf import read_prompts
from minippo.runs import check_output_file
from minippo.sizes import check_memory, samples_memory

BATCH_SIZE = 64  # prompts sampled together


def register(subparsers):
    parser = subparsers.add_parser(
        "generate",
        help="sample responses from a checkpoint or a Hugging Face GPT-2 directory",
        description="Sample --num-samples responses to each prompt from a policy (a minippo checkpoint or a "
        "Hugging Face GPT-2 directory, which brings its tokenizer) and print them, or write JSON lines.",
    )
    parser.add_argument("--policy", default="runs/demo/policy.npz",
                        help="policy checkpoint or model directory (default: runs/demo/policy.npz)")
    prompts = parser.add_mutually_exclusive_group(required=True)
    prompts.add_argument("--prompt", help="one prompt, laid out by the template if there is one (e.g. 'Where is "
                         "the bank?'), else used verbatim (e.g. 'Q: Where is the bank? A:')")
    prompts.add_argument("--prompts", metavar="FILE", help="a file of prompts, one per line: writes JSON lines")
    add_template_option(parser, "without one, the one the policy records, else none: prompts used verbatim")
    parser.add_argument("--out", metavar="FILE", help="with --prompts: write the JSON lines here (default: stdout)")
    parser.add_argument("--num-samples", type=integer_option(1), default=1, help="samples per prompt (default: 1)")
    parser.add_argument("--max-new-tokens", type=integer_option(1), default=40,
                        help="response length limit (default: 40)")
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature; 0 is greedy (default: 1)")
    parser.add_argument("--top-k", type=integer_option(1), help="sample among the k most likely tokens")
    parser.add_argument("--top-p", type=float, help="sample among the most likely tokens of total probability p")
    parser.add_argument("--seed", type=integer_option(0), default=0, help="seed (default: 0)")
    parser.set_defaults(func=run)


def sample_responses(policy, tokenizer, prompts, max_new_tokens, rng, **sampling):
    """``(responses, logprobs)``: one sampled response per prompt and its log-probability Σ log π_T."""
    ids, mask = tokenizer.encode_batch(prompts)
    empty = np.flatnonzero(mask.sum(axis=1) == 0)
    if len(empty):
        raise ValueError(f"prompt {empty[0]} is empty; a prompt needs at least one token")
    if ids.shape[1] + max_new_tokens > policy.config.block_size:
        raise ValueError(f"--max-new-tokens {max_new_tokens} does not fit: the longest prompt has {ids.shape[1]} "
                         f"tokens and the model's context is {policy.config.block_size}")
    out = policy.generate(ids, max_new_tokens, attention_mask=mask, eos_token_id=tokenizer.eos_id,
                          pad_token_id=tokenizer.pad_id, rng=rng, **sampling)
    responses = [tokenizer.decode(row[real]) for row, real in zip(out.tokens[:, ids.shape[1]:], out.mask)]
    return responses, out.logprobs.sum(axis=1, dtype=np.float64)


def run(args):
    if args.out is not None:
        if args.prompts is None:
            raise ValueError("--out goes with --prompts")
        check_output_file(args.out, "--out")
    policy, tokenizer = load_policy_and_tokenizer(args.policy)
    recorded = policy_template(args.policy)
    template = None if args.template is None and recorded is None else \
        command_template(args.template, [(recorded, args.policy)])
    raw = [args.prompt] if args.prompts is None else read_prompts(args.prompts)
    prompts = raw if template is None else [template.prompt_text(prompt) for prompt in raw]
    check_memory(samples_memory, {"--num-samples": args.num_samples},
                 {"prompts": len(prompts), "max_new_tokens": min(args.max_new_tokens, policy.config.block_size)})
    rng = np.random.default_rng(args.seed)
    sampling = {"temperature": args.temperature, "top_k": args.top_k, "top_p": args.top_p}
    records = []
    repeated = [(prompt, text, sample) for prompt, text in zip(raw, prompts) for sample in range(args.num_samples)]
    for start in range(0, len(repeated), BATCH_SIZE):
        batch = repeated[start:start + BATCH_SIZE]
        responses, logprobs = sample_responses(policy, tokenizer, [text for _, text, _ in batch],
                                               args.max_new_tokens, rng, **sampling)
        records += [{"prompt": prompt, "sample": sample, "response": response, "logprob": float(logprob)}
                    for (prompt, _, sample), response, logprob in zip(batch, responses, logprobs)]
    if args.prompts is None:
        print(prompts[0])
        for record in records:
            print(f"  [{record['sample']}] log P = {record['logprob']:8.2f}  {record['response']!r}")
        return 0
    lines = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
    if args.out is None:
        sys.stdout.write(lines)
    else:
        with atomic_write(args.out, "w", encoding="utf-8") as file:
            file.write(lines)
    return 0
