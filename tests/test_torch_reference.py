"""minippo's GPT against an independent GPT-2 written in PyTorch (float64, autograd): same weights from
our state_dict (Conv1D layout, y = x @ w + b), same logits, same gradient for every parameter, and the same
losses and weights over several steps of training with torch's AdamW."""
import math

import numpy as np
import pytest

from minippo.nn import GPT, AdamW, GPTConfig, cross_entropy
from minippo.nn.optim import clip_grad_norm, cosine_schedule, decay_groups
from tests.test_gpt import IDX, MASK, lm_targets, perturb

torch = pytest.importorskip("torch")
F = torch.nn.functional


def torch_gpt2_logits(weights, idx, config, attention_mask=None):
    """GPT-2 forward in torch from Hugging Face-named tensors; pad keys masked, HF position ids."""
    B, T = idx.shape
    C, nh = config.n_embd, config.n_head
    hs = C // nh
    idx = torch.as_tensor(idx)
    if attention_mask is None:
        mask = torch.ones(B, T, dtype=torch.long)
    else:
        mask = torch.as_tensor(attention_mask, dtype=torch.long)
    positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
    x = weights["transformer.wte.weight"][idx] + weights["transformer.wpe.weight"][positions]
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    allowed = causal[None, None] & mask.bool()[:, None, None, :]  # (B, 1, T, T)
    for layer in range(config.n_layer):
        w = {k[len(f"transformer.h.{layer}."):]: v for k, v in weights.items()
             if k.startswith(f"transformer.h.{layer}.")}
        h = F.layer_norm(x, (C,), w["ln_1.weight"], w["ln_1.bias"], eps=1e-5)
        q, k, v = (h @ w["attn.c_attn.weight"] + w["attn.c_attn.bias"]).split(C, dim=-1)
        q, k, v = (t.view(B, T, nh, hs).transpose(1, 2) for t in (q, k, v))
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(hs)
        # HF style: the most negative finite number (a pad query's all-masked row stays finite)
        scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
        y = (scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(B, T, C)
        x = x + y @ w["attn.c_proj.weight"] + w["attn.c_proj.bias"]
        h = F.layer_norm(x, (C,), w["ln_2.weight"], w["ln_2.bias"], eps=1e-5)
        h = F.gelu(h @ w["mlp.c_fc.weight"] + w["mlp.c_fc.bias"], approximate="tanh")
        x = x + h @ w["mlp.c_proj.weight"] + w["mlp.c_proj.bias"]
    x = F.layer_norm(x, (C,), weights["transformer.ln_f.weight"], weights["transformer.ln_f.bias"], eps=1e-5)
    return x @ weights["transformer.wte.weight"].T  # tied LM head


def make_pair(n_layer=2):
    config = GPTConfig(vocab_size=13, block_size=8, n_layer=n_layer, n_head=2, n_embd=8, dtype=np.float64)
    model = perturb(GPT(config, seed=0), 7)
    weights = {name: torch.tensor(value, dtype=torch.float64, requires_grad=True)
               for name, value in model.state_dict().items()}
    return config, model, weights


def relative_error(a, b):
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a), np.linalg.norm(b), 1e-300))


@pytest.mark.parametrize("use_mask", [False, True], ids=["no_mask", "left_padding"])
def test_logits_and_gradients_match_torch(use_mask):
    config, model, weights = make_pair()
    mask = MASK if use_mask else None
    targets = lm_targets(IDX, mask)

    logits = model.forward(IDX, attention_mask=mask)
    loss, dlogits = cross_entropy(logits, targets)
    model.zero_grad()
    model.backward(dlogits)

    torch_logits = torch_gpt2_logits(weights, IDX, config, mask)
    torch_loss = F.cross_entropy(torch_logits.reshape(-1, config.vocab_size),
                                 torch.as_tensor(targets).reshape(-1), ignore_index=-1)
    torch_loss.backward()

    real = np.ones(IDX.shape, bool) if mask is None else mask == 1
    np.testing.assert_allclose(logits[real], torch_logits.detach().numpy()[real], rtol=0, atol=1e-10)
    assert loss == pytest.approx(torch_loss.item(), rel=1e-12)
    assert loss > 0.5
    for name, grad in model.grads.items():
        reference = weights[name].grad.numpy()
        assert np.linalg.norm(reference) > 1e-6, name
        assert relative_error(grad, reference) < 1e-8, (name, relative_error(grad, reference))


def test_torch_reference_detects_a_wrong_weight_layout():
    """The comparison is sensitive: a transposed (nn.Linear-style) weight would not match."""
    config, model, weights = make_pair(n_layer=1)
    logits = model.forward(IDX)
    name = "transformer.h.0.attn.c_proj.weight"
    with torch.no_grad():
        weights[name].copy_(weights[name].T.clone())
    assert np.abs(logits - torch_gpt2_logits(weights, IDX, config).detach().numpy()).max() > 1e-3


def test_generation_logprobs_match_torch_forward():
    config, model, weights = make_pair()
    prompt, prompt_mask = IDX[:, :5], MASK[:, 3:]
    prompt = np.where(prompt_mask == 1, prompt, 0)
    generation = model.generate(prompt, 3, temperature=0.8, attention_mask=prompt_mask, rng=0)
    full_mask = np.concatenate([prompt_mask, np.ones((3, 3), dtype=int)], axis=1)
    with torch.no_grad():
        logits = torch_gpt2_logits(weights, generation.tokens, config, full_mask)
    log_probs = torch.log_softmax(logits[:, 4:-1] / 0.8, dim=-1).numpy()
    expected = np.take_along_axis(log_probs, generation.tokens[:, 5:, None], axis=-1)[..., 0]
    np.testing.assert_allclose(generation.logprobs, expected, rtol=0, atol=1e-10)


def test_training_steps_match_torch_adamw():
    """Six steps of training -- loss, backward, clipping to a global norm, AdamW with weight decay on the
    matrices only, a warmup + cosine learning rate -- give the same losses and weights as torch.optim.AdamW
    with the same two groups and torch.nn.utils.clip_grad_norm_ on the same model."""
    config, model, weights = make_pair()
    decay, _ = decay_groups(model.params)
    optimizer = AdamW(model.params, model.grads, lr=1.0, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    torch_optimizer = torch.optim.AdamW(
        [{"params": [weights[name] for name in weights if name in decay], "weight_decay": 0.1},
         {"params": [weights[name] for name in weights if name not in decay], "weight_decay": 0.0}],
        lr=1.0, betas=(0.9, 0.95), eps=1e-8)
    targets = lm_targets(IDX, MASK)
    losses, torch_losses, clipped = [], [], []
    for step in range(6):
        lr = cosine_schedule(step, 3e-2, warmup_steps=2, total_steps=6)
        loss, dlogits = cross_entropy(model.forward(IDX, attention_mask=MASK), targets)
        model.zero_grad()
        model.backward(dlogits)
        clipped.append(clip_grad_norm(model.grads, 1.0) > 1.0)
        optimizer.step(lr)
        losses.append(loss)

        torch_optimizer.zero_grad()
        torch_loss = F.cross_entropy(torch_gpt2_logits(weights, IDX, config, MASK).reshape(-1, config.vocab_size),
                                     torch.as_tensor(targets).reshape(-1), ignore_index=-1)
        torch_loss.backward()
        torch.nn.utils.clip_grad_norm_(list(weights.values()), 1.0)
        for group in torch_optimizer.param_groups:
            group["lr"] = lr
        torch_optimizer.step()
        torch_losses.append(torch_loss.item())
    np.testing.assert_allclose(losses, torch_losses, rtol=1e-10, atol=0)
    assert losses[-1] < losses[0] - 0.05 and any(clipped)  # it trained, and clipping was exercised
    for name, value in model.params.items():
        reference = weights[name].detach().numpy()
        assert relative_error(value, reference) < 1e-9, (name, relative_error(value, reference))
