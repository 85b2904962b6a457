#!/usr/bin/env python3
"""Golden training fixtures for EdgeTune's TrainableLlama (LoRA), in the manner of llm.c's test_gpt2.c.

For each golden model folder written by hf_forward.py (llama-gqa-llama3rope, qwen2-mha-tied) it reads the
committed config.json and model.safetensors, puts LoRA on all seven linear layers of every block and writes
tests/assets/golden/<name>/expected_lora.json with:
  - the LoRA setup: rank 4, alpha 8 (scale alpha/r = 2), no dropout; y = x·Wᵀ (+ bias) + scale·(x·Aᵀ)·Bᵀ with
    A [r, in] and B [out, r]; base weights frozen;
  - "lora_init": the initial A and B (A ~ N(0, 1/in), B ~ N(0, 0.02²) from a fixed torch seed, rounded to float32
    so that the engine starts from exactly these values; B ≠ 0 so every gradient is nonzero), by GGUF name
    ("blk.0.attn_q.weight.lora_a" [r, in], "blk.0.attn_q.weight.lora_b" [out, r]) with rows in Hugging Face
    order (no Q/K permutation: the C# side loads the HF folder with rotate_half rope);
  - a batch of 2 sequences of 12 tokens (fixed seed), targets = next token, -1 at the first 3 positions of each
    sequence (the "prompt") and at the last position;
  - "logits": (2, 12, V) at the initial LoRA values; "loss": Σ −log p(target) over the 16 targeted positions / 16;
  - "lora_grad": ∂loss/∂A and ∂loss/∂B of every adapter tensor;
  - "losses": 10 steps of torch.optim.AdamW (lr 1e-2 constant, betas (0.9, 0.999), eps 1e-8, weight_decay 0,
    no clipping) on the same batch, the loss recorded before each step (losses[0] == loss).
Everything is computed in float64 (the float32 weights are widened), using hf_forward.forward with its adapter
hook, so the forward is the same independent implementation the inference fixtures were checked against.
Values are written with 9 significant digits (exact for the float32 initial values), losses with 17.

Run with Debian's python3-torch (1.13): /usr/bin/python3 tests/assets/golden/hf_lora_train.py
CI does not run this; the fixtures are committed. tests/EdgeTune.Training.Tests/GoldenTrainingTests.cs reads them.
"""
import json
import math
import os
import struct
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import hf_forward  # noqa: E402

RANK, ALPHA = 4, 8.0
SCALE = ALPHA / RANK
BATCH, SEQ_LEN, PROMPT = 2, 12, 3
STEPS, LR, BETAS, EPS = 10, 1e-2, (0.9, 0.999), 1e-8
# HF module → GGUF stem, in the order the engine lays them out.
TARGETS = [("self_attn.q_proj", "attn_q"), ("self_attn.k_proj", "attn_k"), ("self_attn.v_proj", "attn_v"),
           ("self_attn.o_proj", "attn_output"), ("mlp.gate_proj", "ffn_gate"), ("mlp.up_proj", "ffn_up"),
           ("mlp.down_proj", "ffn_down")]


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", (name, info["dtype"])
        a, b = info["data_offsets"]
        out[name] = torch.frombuffer(bytearray(data[a:b]), dtype=torch.float32).reshape(info["shape"])
    return out


def dims(cfg, module):
    h, f = cfg["hidden_size"], cfg["intermediate_size"]
    d = h // cfg["num_attention_heads"]
    q, kv = cfg["num_attention_heads"] * d, cfg["num_key_value_heads"] * d
    return {"self_attn.q_proj": (h, q), "self_attn.k_proj": (h, kv), "self_attn.v_proj": (h, kv),
            "self_attn.o_proj": (q, h), "mlp.gate_proj": (h, f), "mlp.up_proj": (h, f), "mlp.down_proj": (f, h)}[module]


def lora_init(cfg, seed):
    """{hf prefix: (gguf name, A [r, in], B [out, r])}, float64 leaves holding float32-representable values."""
    g = torch.Generator().manual_seed(seed)
    lora = {}
    for i in range(cfg["num_hidden_layers"]):
        for module, stem in TARGETS:
            i_dim, o_dim = dims(cfg, module)
            a = (torch.randn(RANK, i_dim, generator=g) / math.sqrt(i_dim)).float().double().requires_grad_()
            b = (0.02 * torch.randn(o_dim, RANK, generator=g)).float().double().requires_grad_()
            lora[f"model.layers.{i}.{module}"] = (f"blk.{i}.{stem}.weight", a, b)
    return lora


def batch(cfg, seed):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(3, cfg["vocab_size"], (BATCH, SEQ_LEN), generator=g)
    targets = torch.full_like(tokens, -1)
    targets[:, :-1] = tokens[:, 1:]
    targets[:, :PROMPT] = -1
    return tokens, targets


def loss_and_logits(cfg, w, lora, tokens, targets):
    def adapter(name, x):
        _, a, b = lora[name]
        return SCALE * ((x @ a.T) @ b.T)

    logits = torch.stack([hf_forward.forward(cfg, w, seq.tolist(), adapter) for seq in tokens])  # (B, T, V)
    mask = targets >= 0
    logp = torch.log_softmax(logits, dim=-1)[mask]                          # (count, V)
    nll = -logp.gather(1, targets[mask].unsqueeze(1)).squeeze(1)
    return nll.sum() / mask.sum(), logits


def nine(t):
    return [float(f"{x:.9g}") for x in t.detach().flatten().tolist()]


def main():
    for seed, name in enumerate(hf_forward.MODELS, start=1):
        folder = os.path.join(HERE, name)
        with open(os.path.join(folder, "config.json")) as f:
            cfg = json.load(f)
        w = read_safetensors(os.path.join(folder, "model.safetensors"))
        lora = lora_init(cfg, 200 + seed)
        tokens, targets = batch(cfg, 300 + seed)
        params = [t for _, a, b in lora.values() for t in (a, b)]

        loss, logits = loss_and_logits(cfg, w, lora, tokens, targets)
        loss.backward()
        init = {}
        grad = {}
        for gguf, a, b in lora.values():
            for suffix, t in (("lora_a", a), ("lora_b", b)):
                init[f"{gguf}.{suffix}"] = {"shape": list(t.shape), "values": nine(t)}
                grad[f"{gguf}.{suffix}"] = {"shape": list(t.shape), "values": nine(t.grad)}
                assert (t.grad != 0).all(), f"{gguf}.{suffix} has zero gradients"

        opt = torch.optim.AdamW(params, lr=LR, betas=BETAS, eps=EPS, weight_decay=0.0)
        losses = []
        for step in range(STEPS):
            opt.zero_grad()
            l, _ = loss_and_logits(cfg, w, lora, tokens, targets)
            l.backward()
            opt.step()
            losses.append(l.item())
        assert losses[0] == loss.item()

        out = {
            "source": f"tests/assets/golden/hf_lora_train.py, torch {torch.__version__}, float64 computation over the float32 weights",
            "rank": RANK, "alpha": ALPHA, "scale": SCALE, "dropout": 0.0,
            "targets": [stem for _, stem in TARGETS],
            "optimizer": {"name": "AdamW", "lr": LR, "beta1": BETAS[0], "beta2": BETAS[1], "eps": EPS, "weight_decay": 0.0, "steps": STEPS},
            "batch": BATCH, "seq_len": SEQ_LEN,
            "tokens": tokens.flatten().tolist(), "targets": targets.flatten().tolist(),
            "count": int((targets >= 0).sum()),
            "logits_shape": list(logits.shape), "logits": nine(logits),
            "loss": loss.item(),
            "losses": losses,
            "lora_init": init,
            "lora_grad": grad,
        }
        with open(os.path.join(folder, "expected_lora.json"), "w") as f:
            json.dump(out, f)
        gmax = max(t.grad.abs().max().item() for t in params)
        print(f"{name}: loss {loss.item():.6f} → {losses[-1]:.6f} after {STEPS - 1} steps, {len(params)} adapter tensors, max |grad| {gmax:.3e}")


if __name__ == "__main__":
    main()
