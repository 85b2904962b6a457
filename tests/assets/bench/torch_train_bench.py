#!/usr/bin/env python3
"""PyTorch baseline for `edgetune bench train`: the same llama shape, batch and steps, on the same CPU threads.

The model is written out here (no transformers or peft needed): RMSNorm, rotate_half rope, GQA attention via
PyTorch's scaled_dot_product_attention when present (1.13 lacks it, so an explicit causal softmax is used),
SwiGLU, untied head; LoRA as PEFT computes it (y = x·Wᵀ + scale·(x·Aᵀ)·Bᵀ, base frozen) on q k v o gate up down;
AdamW over the trainable parameters. A step = forward + mean token cross-entropy + backward + AdamW, timed after
warm-up, as EdgeTune's benchmark times it.

Run: /usr/bin/python3 tests/assets/bench/torch_train_bench.py --threads 2 --method lora
"""
import argparse
import math
import time

import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--method", choices=["lora", "full"], default="lora")
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--kv-heads", type=int, default=4)
    ap.add_argument("--ffn", type=int, default=688)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    d = a.dim // a.heads
    full = a.method == "full"

    def param(*shape, scale=0.02, train=full):
        return torch.nn.Parameter(torch.randn(*shape) * scale, requires_grad=train)

    class Linear(torch.nn.Module):
        def __init__(self, i, o):
            super().__init__()
            self.w = param(o, i)
            if not full:
                self.a = torch.nn.Parameter(torch.empty(a.rank, i).uniform_(-1 / math.sqrt(i), 1 / math.sqrt(i)))
                self.b = torch.nn.Parameter(torch.zeros(o, a.rank))
                self.scale = 2.0

        def forward(self, x):
            y = x @ self.w.t()
            if not full:
                y = y + ((x @ self.a.t()) * self.scale) @ self.b.t()
            return y

    def rms(x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * w

    inv = 1.0 / (10000 ** (torch.arange(0, d, 2).float() / d))
    ang = torch.arange(a.seq).float()[:, None] * inv[None, :]
    cos, sin = torch.cat([ang.cos(), ang.cos()], -1), torch.cat([ang.sin(), ang.sin()], -1)

    def rope(x):
        x1, x2 = x[..., : d // 2], x[..., d // 2:]
        return x * cos + torch.cat([-x2, x1], -1) * sin

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.n1, self.n2 = param(a.dim, scale=0) , param(a.dim, scale=0)
            with torch.no_grad():
                self.n1.fill_(1), self.n2.fill_(1)
            self.q, self.k, self.v = Linear(a.dim, a.heads * d), Linear(a.dim, a.kv_heads * d), Linear(a.dim, a.kv_heads * d)
            self.o = Linear(a.heads * d, a.dim)
            self.g, self.u, self.dn = Linear(a.dim, a.ffn), Linear(a.dim, a.ffn), Linear(a.ffn, a.dim)

        def forward(self, x):
            B, T, _ = x.shape
            h = rms(x, self.n1)
            q = rope(self.q(h).view(B, T, a.heads, d).transpose(1, 2))
            k = rope(self.k(h).view(B, T, a.kv_heads, d).transpose(1, 2))
            v = self.v(h).view(B, T, a.kv_heads, d).transpose(1, 2)
            rep = a.heads // a.kv_heads
            k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
            if hasattr(torch.nn.functional, "scaled_dot_product_attention"):
                att = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
            else:
                s = (q @ k.transpose(-1, -2)) / math.sqrt(d)
                s = s.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
                att = s.softmax(-1) @ v
            x = x + self.o(att.transpose(1, 2).reshape(B, T, -1))
            h = rms(x, self.n2)
            return x + self.dn(torch.nn.functional.silu(self.g(h)) * self.u(h))

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = param(a.vocab, a.dim)
            self.blocks = torch.nn.ModuleList(Block() for _ in range(a.layers))
            self.norm = param(a.dim, scale=0)
            with torch.no_grad():
                self.norm.fill_(1)
            self.head = param(a.vocab, a.dim)

        def forward(self, tokens):
            x = self.emb[tokens]
            for b in self.blocks:
                x = b(x)
            return rms(x, self.norm) @ self.head.t()

    model = Model()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)
    tokens = torch.randint(0, a.vocab, (a.batch, a.seq))
    targets = torch.cat([tokens[:, 1:], torch.full((a.batch, 1), -100)], 1)
    times = []
    for step in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        logits = model(tokens)
        loss = torch.nn.functional.cross_entropy(logits.view(-1, a.vocab), targets.view(-1), ignore_index=-100)
        loss.backward()
        opt.step()
        ms = (time.perf_counter() - t0) * 1000
        if step >= a.warmup:
            times.append(ms)
    mean = sum(times) / len(times)
    n = a.batch * a.seq
    print(f"torch {torch.__version__} {a.method}: {a.threads} threads, {sum(p.numel() for p in params):,} trainable params, "
          f"step {mean:.0f} ms, {n / (mean / 1000):.0f} tokens/s (steps: {', '.join(f'{t:.0f}' for t in times)})")


if __name__ == "__main__":
    main()
