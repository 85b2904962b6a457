#!/usr/bin/env python3
"""Golden fixtures for EdgeTune's ReferenceModel: an independent PyTorch implementation of the Hugging Face
llama / qwen2 forward (transformers' modeling_llama.py and modeling_qwen2.py semantics: RMSNorm, rotate_half
rope with llama-3 frequency scaling, GQA via repeat_kv, causal softmax attention, SwiGLU MLP, q/k/v biases,
tied embeddings), written without transformers so that our C# reading and llama.cpp cannot share a mistake.

For each model it writes tests/assets/golden/<name>/: config.json, model.safetensors (float32 weights from a
fixed torch seed) and expected.json (prompt token ids and the float64-computed logits of every position).

Run with Debian's python3-torch (1.13): /usr/bin/python3 tests/assets/golden/hf_forward.py
CI does not run this; the fixtures are committed.
"""
import json
import math
import os
import struct

import torch

HERE = os.path.dirname(os.path.abspath(__file__))

MODELS = {
    # llama, GQA 4/2, untied, llama-3 rope scaling with a small original context so the scaled band matters.
    "llama-gqa-llama3rope": dict(model_type="llama", vocab_size=96, hidden_size=32, intermediate_size=64,
                                 num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                 rms_norm_eps=1e-5, rope_theta=500000.0, tie_word_embeddings=False,
                                 rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                                                   high_freq_factor=4.0, original_max_position_embeddings=16)),
    # qwen2, plain MHA, tied embeddings, q/k/v biases.
    "qwen2-mha-tied": dict(model_type="qwen2", vocab_size=96, hidden_size=32, intermediate_size=48,
                           num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                           rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=True, rope_scaling=None),
}


def weights(cfg, seed):
    g = torch.Generator().manual_seed(seed)
    h, f, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    d = h // cfg["num_attention_heads"]
    q, kv = cfg["num_attention_heads"] * d, cfg["num_key_value_heads"] * d
    bias = cfg["model_type"] == "qwen2"

    def mat(o, i):
        return torch.randn(o, i, generator=g) / math.sqrt(i)

    w = {"model.embed_tokens.weight": torch.randn(v, h, generator=g)}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = 1 + 0.1 * torch.randn(h, generator=g)
        w[p + "self_attn.q_proj.weight"] = mat(q, h)
        w[p + "self_attn.k_proj.weight"] = mat(kv, h)
        w[p + "self_attn.v_proj.weight"] = mat(kv, h)
        if bias:
            w[p + "self_attn.q_proj.bias"] = 0.1 * torch.randn(q, generator=g)
            w[p + "self_attn.k_proj.bias"] = 0.1 * torch.randn(kv, generator=g)
            w[p + "self_attn.v_proj.bias"] = 0.1 * torch.randn(kv, generator=g)
        w[p + "self_attn.o_proj.weight"] = mat(h, q)
        w[p + "post_attention_layernorm.weight"] = 1 + 0.1 * torch.randn(h, generator=g)
        w[p + "mlp.gate_proj.weight"] = mat(f, h)
        w[p + "mlp.up_proj.weight"] = mat(f, h)
        w[p + "mlp.down_proj.weight"] = mat(h, f)
    w["model.norm.weight"] = 1 + 0.1 * torch.randn(h, generator=g)
    if not cfg["tie_word_embeddings"]:
        w["lm_head.weight"] = mat(v, h)
    return {k: t.float().contiguous() for k, t in w.items()}


def inv_frequencies(cfg, d):
    # transformers _compute_default_rope_parameters and _compute_llama3_parameters
    inv_freq = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, d, 2, dtype=torch.int64).double() / d))
    rs = cfg["rope_scaling"]
    if rs is None:
        return inv_freq
    factor, low, high, old = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"], rs["original_max_position_embeddings"]
    low_wavelen, high_wavelen = old / low, old / high
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)
    smooth = (old / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    is_medium = ~(wavelen < high_wavelen) * ~(wavelen > low_wavelen)
    return torch.where(is_medium, smoothed, scaled)


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def forward(cfg, w, tokens, adapter=None):
    """Logits (T, V) in float64. adapter, when given, is called as adapter(name, x) for every linear layer
    (name = the HF prefix, e.g. "model.layers.0.self_attn.q_proj") and its result is added to that layer's output
    (hf_lora_train.py passes LoRA's scale·(x·Aᵀ)·Bᵀ this way)."""
    w = {k: t.double() for k, t in w.items()}
    hN, H, KV = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    D = hN // H
    T = len(tokens)
    eps = cfg["rms_norm_eps"]

    def rms(x, weight):
        return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))

    def linear(x, name):
        y = x @ w[name + ".weight"].T
        y = y + w[name + ".bias"] if name + ".bias" in w else y
        return y if adapter is None else y + adapter(name, x)

    freqs = torch.outer(torch.arange(T, dtype=torch.float64), inv_frequencies(cfg, D))
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos(), emb.sin()  # (T, D)
    mask = torch.full((T, T), float("-inf"), dtype=torch.float64).triu(1)

    x = w["model.embed_tokens.weight"][torch.tensor(tokens)]  # (T, C)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = rms(x, w[p + "input_layernorm.weight"])
        q = linear(h, p + "self_attn.q_proj").view(T, H, D).transpose(0, 1)   # (H, T, D)
        k = linear(h, p + "self_attn.k_proj").view(T, KV, D).transpose(0, 1)  # (KV, T, D)
        v = linear(h, p + "self_attn.v_proj").view(T, KV, D).transpose(0, 1)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(H // KV, dim=0)  # repeat_kv
        v = v.repeat_interleave(H // KV, dim=0)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(D) + mask, dim=-1) @ v  # (H, T, D)
        x = x + linear(att.transpose(0, 1).reshape(T, H * D), p + "self_attn.o_proj")
        h = rms(x, w[p + "post_attention_layernorm.weight"])
        gate, up = linear(h, p + "mlp.gate_proj"), linear(h, p + "mlp.up_proj")
        x = x + linear(torch.nn.functional.silu(gate) * up, p + "mlp.down_proj")
    x = rms(x, w["model.norm.weight"])
    head = w["model.embed_tokens.weight"] if cfg["tie_word_embeddings"] else w["lm_head.weight"]
    return x @ head.T  # (T, V)


def write_safetensors(path, tensors):
    header, offset, blobs = {"__metadata__": {"format": "pt"}}, 0, []
    for name in sorted(tensors):
        data = tensors[name].numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensors[name].shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * ((8 - len(head) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(head)) + head + b"".join(blobs))


def main():
    for seed, (name, cfg) in enumerate(MODELS.items(), start=1):
        out = os.path.join(HERE, name)
        os.makedirs(out, exist_ok=True)
        config = dict(cfg, architectures=["Qwen2ForCausalLM" if cfg["model_type"] == "qwen2" else "LlamaForCausalLM"],
                      hidden_act="silu", max_position_embeddings=128, bos_token_id=1, eos_token_id=2)
        with open(os.path.join(out, "config.json"), "w") as f:
            json.dump(config, f, indent=2, sort_keys=True)
        w = weights(cfg, seed)
        write_safetensors(os.path.join(out, "model.safetensors"), w)
        g = torch.Generator().manual_seed(100 + seed)
        tokens = [1] + torch.randint(3, cfg["vocab_size"], (39,), generator=g).tolist()
        logits = forward(cfg, w, tokens)
        with open(os.path.join(out, "expected.json"), "w") as f:
            json.dump({"source": f"tests/assets/golden/hf_forward.py, torch {torch.__version__}, float64 forward of float32 weights",
                       "tokens": tokens, "shape": list(logits.shape),
                       "logits": [float(f"{x:.9g}") for x in logits.flatten().tolist()]}, f)
        print(name, tuple(logits.shape), f"|logits| = {logits.norm().item():.3f}")


if __name__ == "__main__":
    main()
