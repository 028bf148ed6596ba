"""minippo's RLOO and GRPO iterations against Hugging Face TRL's ``RLOOTrainer`` and ``GRPOTrainer``
(PyTorch, CPU), at the demo's shapes, paired -- the ``--against-trl`` part of ``bench_rlhf.py``.

Both libraries get the same model (a random GPT 2x96, n_head 4, block 96, written by minippo as a
Hugging Face GPT-2 directory that ``transformers`` loads), the same byte tokenizer (ids 0..255 the bytes,
256 ``<pad>``, 257 ``<eos>``), the same 16 prompts of the shipped corpus with 4 responses each, 40 new
tokens at temperature 1, one pass of 4 minibatches of 16 (TRL: ``per_device_train_batch_size=16``,
``steps_per_generation=4``, ``num_iterations=1``), β 0.2 and the same rule reward.  TRL runs inside its
own ``Trainer.train()`` loop, as a user runs it; a callback at the end of every second TRL iteration
pauses, runs two minippo iterations (the first untimed) and pauses again, so each repeat pairs one TRL
iteration with one minippo iteration, both after an untimed one.  TRL's split is taken by timing its
``_generate`` (generation), ``_calculate_rewards`` (the reward) and its no-grad log-probability passes
(scoring forwards); the rest of the iteration is training.

TRL is optional: ``pip install trl==1.16.0`` (or ``pip install -e .[bench-trl]``).
"""
import os
import statistics
import tempfile
import time
import warnings

from minippo.nn.gpt import GPT, GPTConfig
from minippo.rewards.rules import KeywordReward
from minippo.rlhf.trainer import RLHFConfig, RLHFTrainer
from minippo.text.corpus import format_prompt, generate_corpus
from minippo.text.tokenizer import ByteTokenizer

PAUSE = 0.15  # s, on switching library: let the other library's spinning worker threads sleep
PHASES = ("generate", "score", "forward", "train")
MODEL = dict(vocab_size=258, block_size=96, n_layer=2, n_head=4, n_embd=96)
PROMPTS, GENERATIONS, NEW_TOKENS, MINIBATCH, BETA, LEARNING_RATE = 16, 4, 40, 16, 0.2, 1e-5


def prompts():
    """The first 16 training prompts of the shipped corpus, formatted as the demo formats them."""
    return [format_prompt(prompt) for prompt in generate_corpus(0).prompts["train"][:PROMPTS]]


RULE = KeywordReward(list("aeiost"), level="char")  # the fraction of these letters in the response


def trl_reward(prompts, completions, **_):
    """The rule as a TRL reward function (a list of floats)."""
    return [float(score) for score in RULE(list(prompts), list(completions))]


def minippo_trainer(algo, seed):
    """``RLHFTrainer`` on the model of seed ``seed`` (the one written for TRL too) and its prompts."""
    config = RLHFConfig(algo=algo, batch_size=PROMPTS * GENERATIONS, num_generations=GENERATIONS,
                        minibatch_size=MINIBATCH, max_new_tokens=NEW_TOKENS, temperature=1.0, update_epochs=1,
                        init_kl_coef=BETA, kl_target=None, learning_rate=LEARNING_RATE, seed=seed)
    return RLHFTrainer(GPT(GPTConfig(**MODEL), seed=seed), RULE, ByteTokenizer(), config)


class PhaseTimer:
    """Wraps a trainer's methods to add the seconds they take to ``self.seconds[phase]``."""

    def __init__(self, trainer, torch):
        self.seconds = dict.fromkeys(PHASES, 0.0)
        for method, phase in (("_generate", "generate"), ("_calculate_rewards", "score")):
            setattr(trainer, method, self.timed(getattr(trainer, method), phase))
        logps = trainer._get_per_token_logps_and_entropies
        scoring = self.timed(logps, "forward")
        trainer._get_per_token_logps_and_entropies = (  # no-grad passes are the scoring forwards
            lambda *args, **kwargs: logps(*args, **kwargs) if torch.is_grad_enabled() else scoring(*args, **kwargs))

    def timed(self, method, phase):
        def run(*args, **kwargs):
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.seconds[phase] += time.perf_counter() - started
        return run

    def take(self, total):
        """This iteration's split (train = the rest of ``total``), and start the next one at 0."""
        split = {**self.seconds, "train": total - sum(self.seconds.values())}
        self.seconds = dict.fromkeys(PHASES, 0.0)
        return split


def trl_trainer(algo, directory, repeats, callback_factory, threads):
    """A TRL trainer of ``algo`` on the GPT-2 directory, for 2 × (repeats + 1) iterations."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer

    torch.set_num_threads(threads)
    iterations = 2 * (repeats + 1)
    Config, Trainer = (RLOOConfig, RLOOTrainer) if algo == "rloo" else (GRPOConfig, GRPOTrainer)
    extra = dict(normalize_advantages=False) if algo == "rloo" else dict(loss_type="grpo", scale_rewards="group")
    args = Config(output_dir=os.path.join(directory, "trl"), use_cpu=True, bf16=False, fp16=False,
                  per_device_train_batch_size=MINIBATCH, gradient_accumulation_steps=1,
                  steps_per_generation=PROMPTS * GENERATIONS // MINIBATCH, num_generations=GENERATIONS,
                  num_iterations=1, max_completion_length=NEW_TOKENS, temperature=1.0, top_p=1.0, top_k=0,
                  beta=BETA, learning_rate=LEARNING_RATE, max_steps=iterations * PROMPTS * GENERATIONS // MINIBATCH,
                  logging_steps=10**6, save_strategy="no", report_to="none", disable_tqdm=True,
                  dataloader_num_workers=0, seed=0, **extra)
    dataset = Dataset.from_dict({"prompt": prompts() * iterations})
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    trainer = Trainer(model=model, reward_funcs=trl_reward, args=args, train_dataset=dataset,
                      processing_class=tokenizer)
    trainer.add_callback(callback_factory(trainer))
    return trainer


def check_same_tokens(directory):
    """The Hugging Face tokenizer written for TRL gives minippo's byte ids."""
    from transformers import AutoTokenizer

    hf, mine = AutoTokenizer.from_pretrained(directory), ByteTokenizer()
    for text in prompts():
        if hf(text)["input_ids"] != mine.encode(text):
            raise RuntimeError(f"the tokenizer written for TRL gives other ids than minippo's for {text!r}")


def measure(algo, repeats, threads):
    """{library: {"total": [...], phase: [...]}} of ``repeats`` paired iterations."""
    import torch
    from transformers import TrainerCallback

    seed = 0
    mine = minippo_trainer(algo, seed)
    times = {library: {name: [] for name in ("total", *PHASES)} for library in ("minippo", "trl")}
    batch = prompts()

    class Pairing(TrainerCallback):
        def __init__(self, trainer):
            self.trainer, self.steps = trainer, trainer.args.steps_per_generation
            self.phases = PhaseTimer(trainer, torch)
            self.started = None

        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step % self.steps == 0 and self.started is None:
                self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step % self.steps:
                return
            total = time.perf_counter() - self.started
            split = self.phases.take(total)
            self.started = None
            iteration = state.global_step // self.steps
            if iteration % 2:  # the first iteration after a pause is not timed
                return
            if iteration > 2:  # the first pair is the warm-up
                times["trl"]["total"].append(total)
                for phase in PHASES:
                    times["trl"][phase].append(split[phase])
            time.sleep(PAUSE)
            mine.iteration(batch)  # back from the pause: not timed
            started = time.perf_counter()
            stats = mine.iteration(batch)
            if iteration > 2:
                times["minippo"]["total"].append(time.perf_counter() - started)
                for phase in PHASES:
                    times["minippo"][phase].append(stats[f"time/{phase}"])
            time.sleep(PAUSE)

    with tempfile.TemporaryDirectory() as directory:
        GPT(GPTConfig(**MODEL), seed=seed).save_pretrained(directory, ByteTokenizer())
        check_same_tokens(directory)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer = trl_trainer(algo, directory, repeats, Pairing, threads)
            trainer.train()
    return times


def quartiles(values):
    lower, median, upper = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else values * 3
    return lower, median, upper


def report(algo, times):
    """Print each library's median seconds per phase and the paired speed-up with quartiles."""
    print(f"\n{algo.upper()} iteration, the demo's shapes: GPT 2x96 (vocab 258), {PROMPTS} prompts x "
          f"{GENERATIONS} samples, {NEW_TOKENS} new tokens, {PROMPTS * GENERATIONS // MINIBATCH} minibatches of "
          f"{MINIBATCH}, beta {BETA}; {len(times['minippo']['total'])} paired repeats")
    print(f"  {'phase':10s}{'minippo s':>11s}{'TRL s':>9s}{'TRL/minippo':>13s}   (medians; [quartiles] of the "
          f"paired ratios)")
    for phase in ("total", *PHASES):
        ratios = [trl / mine for trl, mine in zip(times["trl"][phase], times["minippo"][phase]) if mine > 0]
        lower, median, upper = quartiles(ratios) if ratios else (float("nan"),) * 3
        print(f"  {phase:10s}{statistics.median(times['minippo'][phase]):11.3f}"
              f"{statistics.median(times['trl'][phase]):9.3f}{median:9.2f}x [{lower:.2f}-{upper:.2f}]")
    print("  seconds per repeat, minippo / TRL: " + "  ".join(
        f"{mine:.3f}/{trl:.3f}" for mine, trl in zip(times["minippo"]["total"], times["trl"]["total"])))


def run(algos, repeats, threads):
    try:
        import trl  # noqa: F401
    except ImportError:
        print("\nTRL is not installed: `pip install trl==1.16.0` (or the bench-trl extra) to compare with it")
        return
    for algo in algos:
        report(algo, measure(algo, repeats, threads))

