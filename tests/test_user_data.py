"""A user's own data on the command line: tokenizers, templates, JSON specs, long texts (issue 18)."""
import json
import shutil
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minippo
from minippo.cli import main
from minippo.commands.models import checkpoint_tokenizer, policy_template
from minippo.hf.config import read_config
from minippo.nn.checkpoint import save_checkpoint
from minippo.nn.gpt import GPT, GPTConfig
from minippo.pretrain import PretrainConfig
from minippo.rewards.reward_model import RewardModel, train_reward_model
from minippo.rlhf.config import RLHFConfig
from minippo.rlhf.pipeline import DemoConfig, run_demo
from minippo.rlhf.rollout import generate_rollout
from minippo.text.bpe import BPETokenizer
from minippo.text.corpus import format_prompt, load_corpus
from minippo.text.gpt2 import GPT2Tokenizer
from minippo.text.template import DEFAULT_TEMPLATE, Template, agreed_template
from minippo.text.tokenizer import ByteTokenizer


def test_an_mrp_spec_with_a_repeated_key_is_refused(tmp_path, capsys):
    path = tmp_path / "spec.json"
    path.write_text('{"gamma": 0.9, "rewards": {"a": 1}, "transitions": {"a": {}}, "gamma": 0.5}', encoding="utf-8")
    assert main(["mrp", "--file", str(path)]) == 2
    assert capsys.readouterr().err == f"minippo mrp: error: {path}: repeated key 'gamma'\n"
    path.write_text(json.dumps({"gamma": 0.9, "rewards": {"a": 1}, "transitions": {"a": {}}}), encoding="utf-8")
    assert main(["mrp", "--file", str(path)]) == 0


def test_a_3_mb_answer_is_cut_to_the_context_before_padding():
    policy = GPT(GPTConfig(vocab_size=258, block_size=16, n_layer=1, n_head=2, n_embd=16), seed=0)
    model = RewardModel.from_policy(policy, ByteTokenizer(), seed=0)
    huge = "x" * 3_000_000
    pairs = [{"prompt": f"q{i}", "chosen": huge if i == 0 else "Sure!", "rejected": "No."} for i in range(32)]
    tracemalloc.start()
    started = time.perf_counter()
    with pytest.warns(UserWarning, match="only their last 16 tokens are scored"):
        train_reward_model(model, pairs, steps=2, batch_size=32, seed=0, log=lambda line: None)
        scores = model([format_prompt("q")] * 32, [huge] + [" Sure!"] * 31)
    seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # Padded to 3 M tokens, the batch alone would be 64 rows × 3e6 × 8 bytes × 2 arrays = 3 GB.
    assert peak < 200e6 and seconds < 10, (peak, seconds)
    assert scores.shape == (32,) and np.isfinite(scores).all()


def test_a_huge_prompt_is_refused_before_it_is_padded():
    policy = GPT(GPTConfig(vocab_size=258, block_size=16, n_layer=1, n_head=2, n_embd=16), seed=0)
    tracemalloc.start()
    with pytest.raises(ValueError, match=r"prompt 1 \('x+'\) must be at most 12 tokens .* it has 3000000"):
        generate_rollout(policy, ByteTokenizer(), ["Q: hi A:", "x" * 3_000_000] * 16, 4, 1.0,
                         np.random.default_rng(0))
    assert tracemalloc.get_traced_memory()[1] < 200e6
    tracemalloc.stop()


def test_templates_lay_out_prompt_and_response():
    default = Template()
    assert default == Template("Q: {prompt} A:") == Template(DEFAULT_TEMPLATE)
    assert default.prompt_text("Where?") == format_prompt("Where?") and default.response_text("Here.") == " Here."
    chinese = Template("问：{prompt}\n答：{response}")
    assert chinese.prompt_text("你好吗？") + chinese.response_text("很好。") == "问：你好吗？\n答：很好。"
    assert Template("{prompt}").prompt_text("Q: {x} A:") == "Q: {x} A:"  # verbatim; other braces are kept
    for bad in ("no field", "{prompt} {prompt}", "{response} {prompt}", "{prompt} {response} {response}"):
        with pytest.raises(ValueError, match="template must hold {prompt} once"):
            Template(bad)
    assert agreed_template([(None, "a"), (None, "b")]) == default
    assert agreed_template([(None, "--template"), (chinese, "p.npz"), (chinese, "rm.npz")]) == chinese
    with pytest.raises(ValueError, match=r"^p.npz uses the prompt template 'Q: \{prompt\} A: \{response\}' but "
                                         r"rm.npz uses '问：\{prompt\}\\n答：\{response\}'; give them the same"):
        agreed_template([(default, "p.npz"), (chinese, "rm.npz")])


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out == f"minippo {minippo.__version__}\n"


TINY = ["--steps", "3", "--batch-size", "4", "--n-layer", "1", "--n-embd", "16", "--n-head", "2", "--block-size", "48",
        "--samples", "0"]


@pytest.mark.filterwarnings("ignore:RewardModel. some prompt . response texts are longer")  # sampled + EOS
def test_a_users_tokenizer_and_template_flow_through_every_stage(tmp_path, capsys):
    text = tmp_path / "chat.txt"
    text.write_text("\ufeff" + "\n".join(f"问：第{i}个问题？\n答：不知道{i}。" for i in range(40)), encoding="utf-8")
    assert main(["tokenizer", "train", "--data", str(text), "--vocab-size", "300",
                 "--out", str(tmp_path / "bpe.json")]) == 0
    assert "wrote" in capsys.readouterr().out
    bpe = BPETokenizer.load(tmp_path / "bpe.json")
    assert bpe.vocab_size == 300
    assert main(["pretrain", "--data", str(text), "--tokenizer", f"bpe:{tmp_path / 'bpe.json'}",
                 "--out", str(tmp_path / "bpe_policy"), *TINY]) == 0
    policy = str(tmp_path / "bpe_policy" / "model.npz")
    assert checkpoint_tokenizer(policy).encode("问：好") == bpe.encode("问：好")

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("\n".join(json.dumps({"prompt": f"第{i}个问题？", "chosen": f"是{i}。", "rejected": "不知道。"},
                                          ensure_ascii=False) for i in range(12)), encoding="utf-8")
    template = "问：{prompt}\\n答：{response}"  # as typed in a shell: \n is a newline
    reward_path = str(tmp_path / "rm.npz")
    assert main(["reward-model", "--policy", policy, "--data", str(pairs), "--template", template, "--steps", "2",
                 "--batch-size", "4", "--normalize-samples", "8", "--out", reward_path]) == 0
    assert "normalised on 8 responses" in capsys.readouterr().out
    reward_model = RewardModel.load(reward_path)
    assert reward_model.template == Template("问：{prompt}\n答：{response}") and reward_model.gain != 1.0

    # rlhf formats the raw prompts with the reward model's template, and records it in the policy it writes
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("第1个问题？\n", encoding="utf-8")
    out = tmp_path / "rlhf"
    assert main(["rlhf", "--policy", policy, "--reward", reward_path, "--prompts", str(prompts), "--iterations", "1",
                 "--batch-size", "4", "--minibatch-size", "4", "--max-new-tokens", "4", "--out", str(out)]) == 0
    assert policy_template(str(out / "policy.npz")) == reward_model.template
    capsys.readouterr()
    assert main(["value", "--policy", policy, "--reward", reward_path, "--prompt", "x", "--template",
                 "Q: {prompt} A:", "--samples", "2"]) == 2
    assert capsys.readouterr().err == (
        f"minippo value: error: --template uses the prompt template 'Q: {{prompt}} A: {{response}}' but {reward_path} "
        "uses '问：{prompt}\\n答：{response}'; give them the same --template\n")

    # a reward model trained from a byte-level policy cannot score the BPE policy's text
    assert main(["pretrain", "--data", str(text), "--out", str(tmp_path / "byte_policy"), *TINY]) == 0
    byte_reward = str(tmp_path / "byte_rm.npz")
    assert main(["reward-model", "--policy", str(tmp_path / "byte_policy" / "model.npz"), "--data", str(pairs),
                 "--steps", "1", "--batch-size", "2", "--normalize-samples", "0", "--out", byte_reward]) == 0
    capsys.readouterr()
    assert main(["rlhf", "--policy", policy, "--reward", byte_reward, "--out", str(out), "--overwrite"]) == 2
    assert capsys.readouterr().err == (
        f"minippo rlhf: error: the policy {policy} and the reward model {byte_reward} use different tokenizers "
        f"(GPT2Tokenizer of 300 tokens and byte); train the reward model from this policy "
        f"(minippo reward-model --policy {policy})\n")


def test_bad_tokenizer_options_are_named(tmp_path, capsys):
    assert main(["pretrain", "--tokenizer", "bpe:missing.json", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err == "minippo pretrain: error: --tokenizer bpe:missing.json: no such file " \
                                      "'missing.json'\n"
    assert main(["pretrain", "--tokenizer", "sentencepiece", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err == ("minippo pretrain: error: --tokenizer must be byte, bpe:FILE or a Hugging Face "
                                       "tokenizer directory, got 'sentencepiece'\n")
    assert main(["demo", "--tokenizer", "sentencepiece", "--out", str(tmp_path)]) == 2
    assert "minippo demo: error: --tokenizer must be byte, bpe:FILE or" in capsys.readouterr().err
    assert main(["pretrain", "--tokenizer", "byte", "--init", "x.npz", "--out", str(tmp_path)]) == 2
    assert "--tokenizer cannot be used with --init: x.npz brings its own tokenizer" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["tokenizer", "train", "--data", "x.txt", "--vocab-size", "10", "--out", "t.json"])
    assert "argument --vocab-size: expected an integer >= 258, got '10'" in capsys.readouterr().err


def test_a_byte_order_mark_is_dropped_from_tokenizer_files(tmp_path):
    bpe = BPETokenizer.train("the cat sat on the mat " * 20, 270)
    bpe.save(tmp_path / "bpe.json")
    (tmp_path / "bom.json").write_bytes(b"\xef\xbb\xbf" + (tmp_path / "bpe.json").read_bytes())
    assert BPETokenizer.load(tmp_path / "bom.json") == bpe
    bpe.save_pretrained(tmp_path / "gpt2")
    for name in ("vocab.json", "merges.txt"):
        path = tmp_path / "gpt2" / name
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert GPT2Tokenizer.from_pretrained(tmp_path / "gpt2").encode("the cat") == bpe.encode("the cat")


def test_a_model_directory_config_with_a_repeated_key_or_a_byte_order_mark(tmp_path):
    fixture = Path(__file__).parent / "fixtures" / "gpt2_tiny"
    shutil.copytree(fixture, tmp_path / "model")
    config = tmp_path / "model" / "config.json"
    text = config.read_text(encoding="utf-8")
    config.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    assert read_config(tmp_path / "model") == json.loads(text)
    config.write_text(text.replace("{", '{"n_layer": 7, ', 1), encoding="utf-8")
    with pytest.raises(ValueError, match=r"config.json: repeated key 'n_layer'$"):
        read_config(tmp_path / "model")


def test_the_demo_takes_a_tokenizer_and_records_it(tmp_path):
    bpe = BPETokenizer.train("\n".join(load_corpus()[:2000]), 300)
    config = DemoConfig(n_layer=1, n_embd=16, n_head=2, pretrain=PretrainConfig(steps=2, batch_size=4),
                        reward_steps=2, iterations=1, eval_samples=4,
                        rlhf=RLHFConfig(batch_size=4, minibatch_size=4, max_new_tokens=8))
    run_demo(config, out_dir=str(tmp_path), log=lambda line: None, tokenizer=bpe)
    for name in ("policy.npz", "base_policy.npz"):
        assert checkpoint_tokenizer(str(tmp_path / name)).encode("Q: Hi? A: Sure!") == bpe.encode("Q: Hi? A: Sure!")
        assert policy_template(str(tmp_path / name)) == Template()
    reward_model = RewardModel.load(tmp_path / "reward_model.npz")
    assert reward_model.tokenizer.encode("Sure!") == bpe.encode("Sure!") and reward_model.template == Template()


BPE = BPETokenizer.train("\n".join(load_corpus()[:500]) + " 今天天气晴朗。", 400)


@settings(max_examples=150, deadline=None)
@given(text=st.text(st.sampled_from("ab 今天,.!\n\t'sQ:A9") | st.characters(blacklist_categories=("Cs",))),
       max_tokens=st.integers(1, 12), add_eos=st.booleans())
def test_encode_end_is_the_end_of_encode(text, max_tokens, add_eos):
    for tokenizer in (ByteTokenizer(), BPE):
        assert tokenizer.encode_end(text, max_tokens, add_eos) == tokenizer.encode(text, add_eos)[-max_tokens:]


def test_a_3_mb_answer_costs_a_bpe_reward_model_its_last_tokens_only():
    policy = GPT(GPTConfig(vocab_size=BPE.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16), seed=0)
    model = RewardModel.from_policy(policy, BPE, seed=0)
    huge = " Sure! It opens at 9 am." * 125_000  # 3 MB
    started = time.perf_counter()
    with pytest.warns(UserWarning, match="only their last 16 tokens are scored"):
        ids, mask = model.encode(["Q: When? A:"] * 2, [huge, " Sure!"])
    assert time.perf_counter() - started < 5  # the whole text through BPE took 4 s on its own
    assert ids.shape == (2, 16) and ids[0].tolist() == BPE.encode(huge[-200:], add_eos=True)[-16:]


def test_generate_lays_out_raw_prompts_with_the_template_the_policy_records(tmp_path, capsys):
    policy = GPT(GPTConfig(vocab_size=258, block_size=32, n_layer=1, n_head=2, n_embd=16), seed=0)
    recorded, bare = str(tmp_path / "recorded.npz"), str(tmp_path / "bare.npz")
    save_checkpoint(recorded, policy.params, policy.config.to_dict(), extra={"template": "<<{prompt}>>"}, kind="gpt")
    save_checkpoint(bare, policy.params, policy.config.to_dict(), kind="gpt")

    def generate(*argv):
        assert main(["generate", "--max-new-tokens", "6", "--num-samples", "2", *argv]) == 0
        return capsys.readouterr().out

    verbatim = generate("--policy", bare, "--prompt", "<<Hi?>>")  # no template recorded: as given
    assert verbatim.startswith("<<Hi?>>\n")
    assert generate("--policy", recorded, "--prompt", "Hi?") == verbatim
    assert generate("--policy", bare, "--prompt", "Hi?", "--template", "<<{prompt}>>") == verbatim
    assert main(["generate", "--policy", recorded, "--prompt", "Hi?", "--template", "[{prompt}]"]) == 2
    assert capsys.readouterr().err == (
        f"minippo generate: error: --template uses the prompt template '[{{prompt}}] {{response}}' but {recorded} "
        "uses '<<{prompt}>> {response}'; give them the same --template\n")
