"""``minippo value``: Monte Carlo estimate of a prompt's value E_π[R] under a policy and a reward."""
from minippo.commands import integer_option
from minippo.commands.models import (
    add_template_option,
    command_template,
    load_policy_and_reward,
    policy_template,
    reward_template,
)
from minippo.progress import Progress
from minippo.rlhf.value import estimate_value

PROGRESS_INTERVAL = 10.0  # seconds between progress lines


def register(subparsers):
    parser = subparsers.add_parser(
        "value",
        help="estimate a prompt's value E_π[R] by sampling responses",
        description="Sample --samples responses to --prompt from the policy, score each with the reward, and "
        "print the mean (the Monte Carlo value V_π(prompt) = Σ_τ R(τ) P_π(τ)) with its standard error.",
    )
    parser.add_argument("--prompt", required=True,
                        help="the raw prompt, formatted by the template (e.g. 'Where is the bank?')")
    add_template_option(parser)
    parser.add_argument("--samples", type=integer_option(2), default=64,
                        help="number of sampled responses, at least 2 (default: 64)")
    parser.add_argument("--policy", default="runs/demo/policy.npz",
                        help="policy checkpoint or Hugging Face GPT-2 directory (default: runs/demo/policy.npz)")
    parser.add_argument("--reward", default="runs/demo/reward_model.npz",
                        help="reward-model checkpoint or directory, or rule spec (default: runs/demo/reward_model.npz)")
    parser.add_argument("--max-new-tokens", type=integer_option(1), default=40,
                        help="response length limit (default: 40)")
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default: 1)")
    parser.add_argument("--seed", type=integer_option(0), default=0, help="seed (default: 0)")
    parser.add_argument("--show", type=integer_option(0), default=5, help="sampled responses to print (default: 5)")
    parser.set_defaults(func=run)


def run(args):
    policy, tokenizer, reward = load_policy_and_reward(args.policy, args.reward)
    template = command_template(args.template, [(policy_template(args.policy), args.policy),
                                                reward_template(reward, args.reward)])
    progress = Progress(args.samples, "samples", interval=PROGRESS_INTERVAL)
    result = estimate_value(policy, template.prompt_text(args.prompt), reward, args.samples, tokenizer,
                            max_new_tokens=args.max_new_tokens, temperature=args.temperature, seed=args.seed,
                            keep=args.show, watch=progress.update)
    for response, reward, logprob in zip(result.responses, result.rewards, result.logprobs):
        print(f"  R = {reward:+.3f}  log P = {logprob:8.2f}  {response}")
    print(f"V(prompt) ≈ {result.mean:+.4f} ± {result.stderr:.4f} (standard error, {args.samples} samples)")
