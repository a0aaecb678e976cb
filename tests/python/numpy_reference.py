#!/usr/bin/env python3
"""Independent float64 reference of the LWM text model (spec lwm-reference §1.2, §1.3, §1.6).

Usage: numpy_reference.py MODEL_DIR TOKEN,TOKEN,... OUT_JSON

Reads MODEL_DIR/config.json and its safetensors weights (model.safetensors, or the shards named by
model.safetensors.index.json; float32 or float16 storage, since numpy has no bfloat16), runs the
tokens at positions 0..n-1 with causal attention and writes {"logits": [[...], ...]} to OUT_JSON.
Both weight conventions are read in their own terms: JAX kernels [in, out] with interleaved RoPE
pairs, Hugging Face weights [out, in] with rotate-half pairs. Written from the spec, not from the
C++ engine, so the two can check each other.
"""
import json
import os
import sys

import numpy as np
from safetensors.numpy import load_file


def load_weights(model_dir):
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    weights = {}
    for name in files:
        weights.update(load_file(os.path.join(model_dir, name)))
    return {k: v.astype(np.float64) for k, v in weights.items()}


def field(config, *names, default=None):
    for name in names:
        if name in config:
            return config[name]
    if default is None:
        raise KeyError(names[0])
    return default


def rope_tables(n, head_dim, theta):
    # §1.3: inverse frequencies in float32, angle t * inv_freq formed exactly and rounded once to
    # float32, cos/sin of that float32 angle (here in float64).
    exponent = np.arange(0, head_dim, 2, dtype=np.float32) / np.float32(head_dim)
    power = np.power(np.float64(np.float32(theta)), exponent.astype(np.float64)).astype(np.float32)
    inv_freq = np.float32(1.0) / power
    angle = (np.arange(n, dtype=np.float64)[:, None] * inv_freq.astype(np.float64)[None, :]).astype(np.float32)
    angle = angle.astype(np.float64)
    return np.cos(angle), np.sin(angle)  # [n, head_dim/2]


def rotate(x, cos, sin, interleaved):
    # x: [n, heads, d]
    d = x.shape[-1]
    if interleaved:
        a, b = x[..., 0::2], x[..., 1::2]
    else:
        a, b = x[..., : d // 2], x[..., d // 2 :]
    c, s = cos[:, None, :], sin[:, None, :]
    ra, rb = a * c - b * s, a * s + b * c
    out = np.empty_like(x)
    if interleaved:
        out[..., 0::2], out[..., 1::2] = ra, rb
    else:
        out[..., : d // 2], out[..., d // 2 :] = ra, rb
    return out


def rms_norm(x, weight, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * weight


def main():
    model_dir, token_text, out_path = sys.argv[1], sys.argv[2], sys.argv[3]
    tokens = [int(t) for t in token_text.split(",")]
    with open(os.path.join(model_dir, "config.json")) as f:
        config = json.load(f)
    w = load_weights(model_dir)

    hidden = field(config, "hidden_size")
    layers = field(config, "num_hidden_layers", "num_layers")
    heads = field(config, "num_attention_heads", "num_heads")
    kv_heads = field(config, "num_key_value_heads", "num_kv_heads", default=heads)
    eps = field(config, "rms_norm_eps")
    theta = field(config, "rope_theta", "theta")
    hf = config.get("lwm_weight_convention", "hf" if "model.embed_tokens.weight" in w else "jax") == "hf"
    d = hidden // heads
    group = heads // kv_heads

    # Every matrix as y = x @ M with M [in, out].
    if hf:
        emb = w["model.embed_tokens.weight"]
        final_norm = w["model.norm.weight"]
        head = w["lm_head.weight"].T if "lm_head.weight" in w else emb.T

        def layer(i, what):
            names = {
                "q": "self_attn.q_proj.weight", "k": "self_attn.k_proj.weight",
                "v": "self_attn.v_proj.weight", "o": "self_attn.o_proj.weight",
                "gate": "mlp.gate_proj.weight", "up": "mlp.up_proj.weight", "down": "mlp.down_proj.weight",
                "attn_norm": "input_layernorm.weight", "ffn_norm": "post_attention_layernorm.weight",
            }
            t = w["model.layers.%d.%s" % (i, names[what])]
            return t if t.ndim == 1 else t.T
    else:
        emb = w["transformer.wte.embedding"]
        final_norm = w["transformer.ln_f.kernel"]
        head = w["lm_head.kernel"] if "lm_head.kernel" in w else emb.T

        def layer(i, what):
            leaf = {
                "q": "attention.wq.kernel", "k": "attention.wk.kernel", "v": "attention.wv.kernel",
                "o": "attention.wo.kernel", "gate": "feed_forward.w1.kernel", "up": "feed_forward.w3.kernel",
                "down": "feed_forward.w2.kernel", "attn_norm": "attention_norm.kernel", "ffn_norm": "ffn_norm.kernel",
            }[what]
            name = "transformer.h.%d.%s" % (i, leaf)
            return w[name] if name in w else w["transformer.h.scan_decoder." + leaf][i]

    n = len(tokens)
    cos, sin = rope_tables(n, d, theta)
    causal = np.tril(np.ones((n, n), dtype=bool))
    h = emb[np.array(tokens)]
    for i in range(layers):
        a = rms_norm(h, layer(i, "attn_norm"), eps)
        q = rotate((a @ layer(i, "q")).reshape(n, heads, d), cos, sin, interleaved=not hf)
        k = rotate((a @ layer(i, "k")).reshape(n, kv_heads, d), cos, sin, interleaved=not hf)
        v = (a @ layer(i, "v")).reshape(n, kv_heads, d)
        k = np.repeat(k, group, axis=1)  # query head j uses kv head j // group
        v = np.repeat(v, group, axis=1)
        scores = np.einsum("qhd,khd->hqk", q, k) / np.sqrt(d)
        scores = np.where(causal[None], scores, -np.inf)
        scores -= scores.max(axis=-1, keepdims=True)
        p = np.exp(scores)
        p /= p.sum(axis=-1, keepdims=True)
        attended = np.einsum("hqk,khd->qhd", p, v).reshape(n, heads * d)
        h = h + attended @ layer(i, "o")
        f = rms_norm(h, layer(i, "ffn_norm"), eps)
        gate, up = f @ layer(i, "gate"), f @ layer(i, "up")
        h = h + (gate / (1.0 + np.exp(-gate)) * up) @ layer(i, "down")
    logits = rms_norm(h, final_norm, eps) @ head
    with open(out_path, "w") as f:
        json.dump({"logits": logits.tolist()}, f)


if __name__ == "__main__":
    main()
