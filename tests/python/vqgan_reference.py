#!/usr/bin/env python3
"""Independent float64 reference of LWM's VQGAN (spec lwm-reference §3.2-§3.7).

Usage: vqgan_reference.py MODEL_DIR FRAMES_F32 CODES_I32 OUT_JSON

MODEL_DIR holds vqgan.safetensors (the §3.7 names joined by '.') and config.json with the VQGAN
config under "vqgan" (absent fields take LWM's defaults). FRAMES_F32 is raw little-endian float32
frames [B, R, R, C] in [-1, 1]; CODES_I32 raw little-endian int32 codes [B', grid*grid] to decode.
Writes {"codes": [...], "gaps": [...], "decoded": [...]} to OUT_JSON: the encoder's codes for the
frames, for each the distance gap between the best and second-best codebook entry (to tell real
disagreements from near ties), and the decoded frames of CODES_I32, flattened.
Written from the spec, not from the C++ engine, so the two can check each other.
"""
import json
import os
import sys

import numpy as np
from safetensors.numpy import load_file

DEFAULTS = dict(resolution=256, num_channels=3, hidden_channels=128, channel_mult=[1, 2, 2, 4, 6],
                num_res_blocks=2, z_channels=64, num_embeddings=8192, quantized_embed_dim=64,
                num_groups=32, eps=1e-6)


class Vqgan:
    def __init__(self, model_dir):
        with open(os.path.join(model_dir, "config.json")) as f:
            cfg = dict(DEFAULTS)
            cfg.update(json.load(f).get("vqgan", {}))
        self.cfg = cfg
        raw = load_file(os.path.join(model_dir, "vqgan.safetensors"))
        self.w = {k: v.astype(np.float64) for k, v in raw.items()}
        self.used = set()

    def p(self, name):
        self.used.add(name)
        return self.w[name]

    # --- building blocks (§3.3) ---
    def conv(self, name, x, stride=1, padding="same"):
        kernel = self.p(name + ".kernel")  # [kh, kw, in, out]
        bias = self.p(name + ".bias")
        kh, kw = kernel.shape[:2]
        if padding == "same":
            ph, pw = kh // 2, kw // 2
            x = np.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
        b, h, w, _ = x.shape
        oh = (h - kh) // stride + 1
        ow = (w - kw) // stride + 1
        out = np.zeros((b, oh, ow, kernel.shape[3]))
        for i in range(kh):
            for j in range(kw):
                patch = x[:, i:i + stride * (oh - 1) + 1:stride, j:j + stride * (ow - 1) + 1:stride, :]
                out += np.einsum("bhwc,co->bhwo", patch, kernel[i, j])
        return out + bias

    def group_norm(self, name, x):
        g = self.cfg["num_groups"]
        b, h, w, c = x.shape
        xg = x.reshape(b, h, w, g, c // g)
        mean = xg.mean(axis=(1, 2, 4), keepdims=True)
        var = np.maximum((xg * xg).mean(axis=(1, 2, 4), keepdims=True) - mean * mean, 0.0)
        y = ((xg - mean) / np.sqrt(var + self.cfg["eps"])).reshape(b, h, w, c)
        return y * self.p(name + ".scale") + self.p(name + ".bias")

    @staticmethod
    def silu(x):
        return x / (1.0 + np.exp(-x))

    def resnet(self, name, x, out_channels):
        h = self.silu(self.group_norm(name + ".GroupNorm_0", x))
        h = self.conv(name + ".Conv_0", h)
        h = self.silu(self.group_norm(name + ".GroupNorm_1", h))
        h = self.conv(name + ".Conv_1", h)
        skip = x if x.shape[-1] == out_channels else self.conv(name + ".Conv_2", x)
        return skip + h

    def downsample(self, name, x):
        x = np.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)))  # bottom and right only
        return self.conv(name, x, stride=2, padding="valid")

    def upsample(self, name, x):
        x = np.repeat(np.repeat(x, 2, axis=1), 2, axis=2)
        return self.conv(name, x)

    # --- §3.4, §3.5 ---
    def encode(self, frames):
        cfg = self.cfg
        mult = cfg["channel_mult"]
        levels = len(mult)
        x = self.conv("encoder.Conv_0", frames)
        for level in range(levels):
            out = cfg["hidden_channels"] * mult[level]
            prefix = "encoder.DownsamplingBlock_%d" % level
            for k in range(cfg["num_res_blocks"]):
                x = self.resnet("%s.ResnetBlock_%d" % (prefix, k), x, out)
            if level != levels - 1:
                x = self.downsample(prefix + ".Downsample_0.Conv_0", x)
        top = x.shape[-1]
        x = self.resnet("encoder.MidBlock_0.ResnetBlock_0", x, top)
        x = self.resnet("encoder.MidBlock_0.ResnetBlock_1", x, top)
        x = self.silu(self.group_norm("encoder.GroupNorm_0", x))
        x = self.conv("encoder.Conv_1", x)
        z = self.conv("quant_conv", x).reshape(-1, cfg["quantized_embed_dim"])
        table = self.p("quantize.embeddings")
        d = (z * z).sum(1)[:, None] + (table * table).sum(1)[None, :] - 2.0 * z @ table.T
        codes = np.argmin(d, axis=1)
        ordered = np.sort(d, axis=1)
        gaps = ordered[:, 1] - ordered[:, 0] if d.shape[1] > 1 else np.full(len(z), np.inf)
        return codes, gaps

    # --- §3.6 ---
    def decode(self, codes):
        cfg = self.cfg
        mult = cfg["channel_mult"]
        levels = len(mult)
        grid = cfg["resolution"] // 2 ** (levels - 1)
        z = self.p("quantize.embeddings")[codes].reshape(-1, grid, grid, cfg["quantized_embed_dim"])
        x = self.conv("post_quant_conv", z)
        x = self.conv("decoder.Conv_0", x)
        top = x.shape[-1]
        x = self.resnet("decoder.MidBlock_0.ResnetBlock_0", x, top)
        x = self.resnet("decoder.MidBlock_0.ResnetBlock_1", x, top)
        for k, level in enumerate(reversed(range(levels))):
            out = cfg["hidden_channels"] * mult[level]
            prefix = "decoder.UpsamplingBlock_%d" % k
            for j in range(cfg["num_res_blocks"] + 1):
                x = self.resnet("%s.ResnetBlock_%d" % (prefix, j), x, out)
            if level != 0:
                x = self.upsample(prefix + ".Upsample_0.Conv_0", x)
        x = self.silu(self.group_norm("decoder.GroupNorm_0", x))
        x = self.conv("decoder.Conv_1", x)
        return np.clip(x, -1.0, 1.0)


def main():
    model_dir, frames_path, codes_path, out_path = sys.argv[1:5]
    model = Vqgan(model_dir)
    cfg = model.cfg
    r, c = cfg["resolution"], cfg["num_channels"]
    frames = np.fromfile(frames_path, dtype="<f4").astype(np.float64).reshape(-1, r, r, c)
    grid = r // 2 ** (len(cfg["channel_mult"]) - 1)
    codes_in = np.fromfile(codes_path, dtype="<i4").reshape(-1, grid * grid)
    codes, gaps = model.encode(frames)
    decoded = model.decode(codes_in)
    unused = sorted(set(model.w) - model.used)
    if unused:
        sys.exit("tensors in the file that the network never used: %s" % unused)
    with open(out_path, "w") as f:
        json.dump({"codes": codes.tolist(), "gaps": gaps.tolist(),
                   "decoded": decoded.reshape(-1).tolist()}, f)


if __name__ == "__main__":
    main()
