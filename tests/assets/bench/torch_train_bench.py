#!/usr/bin/env python3
"""PyTorch baseline for `edgetune bench train`: the same llama shape, batch and steps, on the same CPU threads.

The model is written out here (no transformers or peft needed): RMSNorm, rotate_half rope, GQA attention via
PyTorch's scaled_dot_product_attention when present (1.13 lacks it, so an explicit causal softmax is used),
SwiGLU, untied head; LoRA as PEFT computes it (y = x·Wᵀ + scale·(x·Aᵀ)·Bᵀ, base frozen) on q k v o gate up down;
AdamW over the trainable parameters. A step = forward + mean token cross-entropy + backward + AdamW, timed after
warm-up, as EdgeTune's benchmark times it.

A fair baseline: the causal mask (when scaled_dot_product_attention is missing) and the rope tables are built once,
not per step; on CUDA every step ends with a synchronize. --shape takes the same built-in shapes as
`edgetune bench train --shape` (random weights). With --peft, and transformers and peft installed, the model is
transformers' LlamaForCausalLM with PEFT's LoRA (what users run) instead of the hand-written one.

Run: /usr/bin/python3 tests/assets/bench/torch_train_bench.py --threads 2 --method lora
     python3 tests/assets/bench/torch_train_bench.py --device cuda --shape qwen2.5-0.5b --seq 512 --batch 1 --peft
"""
import argparse
import json
import math
import os
import sys
import threading
import time

# The BLAS PyTorch's CPU matmuls call (Debian's torch uses the system libblas.so.3) takes its thread count from the
# environment at load: the same threads as --threads, set before torch is imported.
for i, arg in enumerate(sys.argv):
    if arg == "--threads" and i + 1 < len(sys.argv):
        os.environ.setdefault("OPENBLAS_NUM_THREADS", sys.argv[i + 1])
        os.environ.setdefault("OMP_NUM_THREADS", sys.argv[i + 1])

import torch  # noqa: E402


def blas_library():
    """The BLAS library mapped into this process after a matmul: Debian's torch uses whatever libblas.so.3 the system
    alternatives select, and the netlib reference BLAS (the default without OpenBLAS) is single-threaded and ~10x slower."""
    torch.ones(64, 64) @ torch.ones(64, 64)
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "blas" in line or "mkl" in line}
    except OSError:
        return "unknown"
    named = sorted(p for p in paths if p.startswith("/"))
    return ", ".join(os.path.realpath(p) for p in named) or "none mapped (MKL-DNN or built-in kernels)"


# Dimensions from each model's config.json, as src/EdgeTune.Models/Architectures/KnownShapes.cs lists them.
SHAPES = {
    "qwen2.5-0.5b": dict(dim=896, layers=24, heads=14, kv_heads=2, ffn=4864, vocab=151936, tied=True),
    "qwen2.5-1.5b": dict(dim=1536, layers=28, heads=12, kv_heads=2, ffn=8960, vocab=151936, tied=True),
    "llama-3.2-1b": dict(dim=2048, layers=16, heads=32, kv_heads=8, ffn=8192, vocab=128256, tied=True),
    "tinyllama-1.1b": dict(dim=2048, layers=22, heads=32, kv_heads=4, ffn=5632, vocab=32000, tied=False),
    "smollm2-1.7b": dict(dim=2048, layers=24, heads=32, kv_heads=32, ffn=8192, vocab=49152, tied=True),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", choices=sorted(SHAPES), help="a real model's dimensions (overrides --dim ... --vocab)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--peft", action="store_true", help="transformers LlamaForCausalLM + PEFT LoRA when both are installed")
    ap.add_argument("--tied", action="store_true")
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
    ap.add_argument("--json", action="store_true", help="print one JSON object (tokens/s, step times, peak resident memory) instead of the line")
    a = ap.parse_args()
    if a.shape:
        for k, v in SHAPES[a.shape].items():
            setattr(a, k, v)
    torch.set_num_threads(a.threads)
    a.blas = blas_library()
    if "/blas/libblas" in a.blas:
        print(f"warning: PyTorch calls the reference BLAS ({a.blas}), single-threaded and far slower than an optimised one: "
              "install libopenblas0-pthread (Debian) for a fair baseline", file=sys.stderr)
    dev = torch.device(a.device)
    if a.peft:
        return run_peft(a, dev)
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
    cos, sin = torch.cat([ang.cos(), ang.cos()], -1).to(dev), torch.cat([ang.sin(), ang.sin()], -1).to(dev)
    causal = torch.ones(a.seq, a.seq, dtype=torch.bool, device=dev).triu(1)  # once, not per step

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
                s = s.masked_fill(causal[:T, :T], float("-inf"))
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
            self.head = self.emb if a.tied else param(a.vocab, a.dim)

        def forward(self, tokens):
            x = self.emb[tokens]
            for b in self.blocks:
                x = b(x)
            return rms(x, self.norm) @ self.head.t()

    model = Model().to(dev)
    params = [p for p in model.parameters() if p.requires_grad]
    time_steps(a, dev, model, params, lambda tokens: model(tokens))


class AnonymousMemoryWatch:
    """Peak anonymous memory (RssAnon of /proc/self/status) sampled every 2 ms on a thread, as `edgetune bench train`
    measures its own: PyTorch's weights, grads and activations are anonymous; libtorch's code pages are not counted."""

    def __init__(self):
        self.peak = 0
        self.stop = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    @staticmethod
    def now():
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("RssAnon:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def run(self):
        while not self.stop:
            self.peak = max(self.peak, self.now())
            time.sleep(0.002)

    def close(self):
        self.stop = True
        self.thread.join()
        return max(self.peak, self.now())


def time_steps(a, dev, model, params, logits_of):
    watch = AnonymousMemoryWatch()
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)
    tokens = torch.randint(0, a.vocab, (a.batch, a.seq), device=dev)
    targets = torch.cat([tokens[:, 1:], torch.full((a.batch, 1), -100, device=dev)], 1)
    times = []
    for step in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        logits = logits_of(tokens)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, a.vocab), targets.view(-1), ignore_index=-100)
        loss.backward()
        opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        ms = (time.perf_counter() - t0) * 1000
        if step >= a.warmup:
            times.append(ms)
    mean = sum(times) / len(times)
    n = a.batch * a.seq
    peak = watch.close()
    if a.json:
        print(json.dumps(dict(torch=torch.__version__, blas=a.blas, method=a.method, shape=a.shape, device=str(dev), threads=a.threads, seq=a.seq, batch=a.batch,
                              trainable_parameters=sum(p.numel() for p in params), step_ms=times, mean_step_ms=mean,
                              tokens_per_second=n / (mean / 1000), peak_anonymous_bytes=peak)))
        return
    print(f"torch {torch.__version__} {a.method}{' (' + a.shape + ')' if a.shape else ''} on {dev}: {a.threads} threads, {sum(p.numel() for p in params):,} trainable params, "
          f"BLAS {a.blas}; step {mean:.0f} ms, {n / (mean / 1000):.1f} tokens/s, peak anonymous memory {peak / 2**20:.0f} MiB (steps: {', '.join(f'{t:.0f}' for t in times)})")


def run_peft(a, dev):
    """transformers' LlamaForCausalLM (random weights at the shape) with PEFT's LoRA on the seven projections, float32."""
    try:
        import peft
        import transformers
    except ImportError as e:
        raise SystemExit(f"--peft needs transformers and peft installed ({e})")
    config = transformers.LlamaConfig(hidden_size=a.dim, intermediate_size=a.ffn, num_hidden_layers=a.layers, num_attention_heads=a.heads,
                                      num_key_value_heads=a.kv_heads, vocab_size=a.vocab, tie_word_embeddings=a.tied, max_position_embeddings=a.seq)
    model = transformers.LlamaForCausalLM(config).to(dev)
    if a.method == "lora":
        lora = peft.LoraConfig(r=a.rank, lora_alpha=2 * a.rank, lora_dropout=0.0,
                               target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
        model = peft.get_peft_model(model, lora)
    params = [p for p in model.parameters() if p.requires_grad]
    print(f"transformers {transformers.__version__}, peft {peft.__version__}")
    time_steps(a, dev, model, params, lambda tokens: model(input_ids=tokens).logits)


if __name__ == "__main__":
    main()
