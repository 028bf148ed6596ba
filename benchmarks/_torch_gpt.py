"""The PyTorch peers of ``bench_gpt.py``: a compact GPT-2 in eager PyTorch (plain matmul attention or
``scaled_dot_product_attention``) and Hugging Face's ``GPT2LMHeadModel``, both loaded with minippo's
weights.  Imported only when torch is installed (``bench_gpt.py`` decides)."""
import numpy as np
import torch
import torch.nn.functional as F


def build_torch_gpt(cfg, block_size, sdpa):
    nn = torch.nn
    V, C, L, nh, T = cfg["vocab_size"], cfg["n_embd"], cfg["n_layer"], cfg["n_head"], block_size
    hs = C // nh

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1 = nn.LayerNorm(C)
            self.c_attn = nn.Linear(C, 3 * C)
            self.attn_proj = nn.Linear(C, C)
            self.ln_2 = nn.LayerNorm(C)
            self.c_fc = nn.Linear(C, 4 * C)
            self.mlp_proj = nn.Linear(4 * C, C)
            self.register_buffer("causal", torch.ones(T, T, dtype=torch.bool).triu(1), persistent=False)

        def forward(self, x, kv=None, start=0):
            B, Tq, _ = x.shape
            q, k, v = self.c_attn(self.ln_1(x)).view(B, Tq, 3, nh, hs).permute(2, 0, 3, 1, 4)
            if kv is not None:  # write the new keys/values, attend over every cached position
                keys, values = kv
                keys[:, :, start:start + Tq] = k
                values[:, :, start:start + Tq] = v
                k, v = keys[:, :, :start + Tq], values[:, :, :start + Tq]
            causal = Tq > 1  # a single decoding query may see every cached key
            if sdpa:
                y = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
            else:
                att = (q @ k.transpose(-2, -1)) * (1.0 / hs ** 0.5)
                if causal:
                    att = att.masked_fill(self.causal[:Tq, :Tq], float("-inf"))
                y = att.softmax(dim=-1) @ v
            x = x + self.attn_proj(y.transpose(1, 2).reshape(B, Tq, C))
            return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))

    class TorchGPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = nn.Embedding(V, C)
            self.wpe = nn.Embedding(T, C)
            self.h = nn.ModuleList(Block() for _ in range(L))
            self.ln_f = nn.LayerNorm(C)

        def hidden(self, idx, start=0, kv_caches=None):
            pos = torch.arange(start, start + idx.shape[1])
            x = self.wte(idx) + self.wpe(pos)
            for layer, block in enumerate(self.h):
                x = block(x, None if kv_caches is None else kv_caches[layer], start)
            return self.ln_f(x)

        def forward(self, idx):
            return self.hidden(idx) @ self.wte.weight.T  # tied LM head

    return TorchGPT()


def load_minippo_weights(model, params):
    """Copy minippo's parameters (HF GPT-2 names, Conv1D (in, out) weights) into the torch model."""
    def put(tensor, array, transpose=False):
        tensor.copy_(torch.from_numpy(np.ascontiguousarray(array.T if transpose else array)))

    with torch.no_grad():
        put(model.wte.weight, params["transformer.wte.weight"])
        put(model.wpe.weight, params["transformer.wpe.weight"])
        for i, block in enumerate(model.h):
            pre = f"transformer.h.{i}."
            for module, name, linear in ((block.ln_1, "ln_1", False), (block.c_attn, "attn.c_attn", True),
                                         (block.attn_proj, "attn.c_proj", True), (block.ln_2, "ln_2", False),
                                         (block.c_fc, "mlp.c_fc", True), (block.mlp_proj, "mlp.c_proj", True)):
                put(module.weight, params[pre + name + ".weight"], transpose=linear)
                put(module.bias, params[pre + name + ".bias"])
        put(model.ln_f.weight, params["transformer.ln_f.weight"])
        put(model.ln_f.bias, params["transformer.ln_f.bias"])


def torch_adamw(named_parameters, adamw):
    """AdamW with minippo's parameter groups: matrices decayed, embeddings, biases and gains not;
    ``adamw`` holds lr, betas, eps and weight_decay."""
    decay, no_decay = [], []
    for name, param in named_parameters:
        embedding = "wte" in name or "wpe" in name
        (decay if param.ndim >= 2 and not embedding else no_decay).append(param)
    return torch.optim.AdamW([{"params": decay, "weight_decay": adamw["weight_decay"]},
                              {"params": no_decay, "weight_decay": 0.0}],
                             lr=adamw["lr"], betas=adamw["betas"], eps=adamw["eps"])


class TorchRunner:
    """The compact GPT-2 above, trained with ``torch.optim.AdamW(**adamw)``, sampling with a lean
    KV-cache loop."""

    def __init__(self, cfg, block_size, initial_params, adamw, sdpa):
        self.name = "torch-sdpa" if sdpa else "torch-matmul"
        self.cfg, self.adamw = cfg, adamw
        self.model = build_torch_gpt(cfg, block_size, sdpa)
        load_minippo_weights(self.model, initial_params)
        self.optimizer = None
        self.generator = torch.Generator().manual_seed(1)

    def logits(self, x):
        return self.model(x)

    def loss(self, x, y):
        with torch.no_grad():
            logits = self.logits(torch.from_numpy(x))
            return F.cross_entropy(logits.view(-1, logits.shape[-1]), torch.from_numpy(y).view(-1)).item()

    def train_step(self, x, y):
        if self.optimizer is None:
            self.optimizer = torch_adamw(self.model.named_parameters(), self.adamw)
        self.optimizer.zero_grad(set_to_none=True)
        logits = self.logits(torch.from_numpy(x))
        loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), torch.from_numpy(y).view(-1))
        loss.backward()
        self.optimizer.step()
        return loss.item()

    def generate(self, prompt, max_new, temperature=1.0):
        with torch.inference_mode():
            return self._generate(torch.from_numpy(prompt), max_new, temperature)

    def _generate(self, prompt, max_new, temperature):
        model, cfg = self.model, self.cfg
        B, P = prompt.shape
        total, nh = P + max_new, cfg["n_head"]
        hs = cfg["n_embd"] // nh
        kv_caches = [(torch.empty(B, nh, total, hs), torch.empty(B, nh, total, hs)) for _ in model.h]
        tokens = torch.empty(B, total, dtype=torch.long)
        tokens[:, :P] = prompt
        logprobs = torch.empty(B, max_new)
        wte = model.wte.weight
        hidden = model.hidden(prompt, 0, kv_caches)
        for step in range(max_new):
            log_probs = torch.log_softmax((hidden[:, -1] @ wte.T) / temperature, dim=-1)  # (B, V)
            token = torch.multinomial(log_probs.exp(), 1, generator=self.generator)  # (B, 1)
            tokens[:, P + step] = token[:, 0]
            logprobs[:, step] = log_probs.gather(1, token)[:, 0]
            if step == max_new - 1:
                break
            hidden = model.hidden(token, P + step, kv_caches)
        return tokens


class HFRunner(TorchRunner):
    """Hugging Face ``GPT2LMHeadModel`` (default attention), trained as a user would, sampling with
    ``generate`` (its KV cache); dropout off."""

    def __init__(self, cfg, block_size, initial_params, adamw):
        import transformers

        transformers.logging.set_verbosity_error()
        self.name, self.cfg, self.adamw = "hf", cfg, adamw
        config = transformers.GPT2Config(
            vocab_size=cfg["vocab_size"], n_positions=block_size, n_embd=cfg["n_embd"], n_layer=cfg["n_layer"],
            n_head=cfg["n_head"], resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
        self.model = transformers.GPT2LMHeadModel(config)
        state = {name: torch.from_numpy(value) for name, value in initial_params.items()}
        missing, unexpected = self.model.load_state_dict(state, strict=False)
        assert not unexpected and all(name == "lm_head.weight" or ".attn.bias" in name for name in missing)
        self.model.tie_weights()
        self.optimizer = None
        torch.manual_seed(1)

    def logits(self, x):
        return self.model(x).logits

    def generate(self, prompt, max_new, temperature=1.0):
        prompt = torch.from_numpy(prompt)
        return self.model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=True,
                                   temperature=temperature, top_k=0, max_new_tokens=max_new,
                                   min_new_tokens=max_new, pad_token_id=0)

