"""Writes LWM's checkpoint formats with the real Python libraries, for the converter tests.

tux   SRC OUT: the tensors of SRC (a safetensors file or a model directory of ours, JAX names) as
      a tux StreamingCheckpointer file (spec §4.1): msgpack.Packer().pack((key, to_bytes(leaf)))
      per leaf, flax's to_bytes layout (ext 1 ndarray, chunked map above --chunk bytes).
      --layout stacked|per_layer, --form records|trainstate|flax, --vision V adds vte/vision_head.
vqgan OUT REF: a random VQGAN parameter dict (spec §3.7 names) pickled with --protocol, as numpy
      arrays, a FrozenDict-shaped object or JAX-array-shaped objects (--variant); REF gets the same
      tensors as safetensors with '.'-joined names, for comparison.

flax and jax are not installed: the few functions of flax.serialization that matter are written
here from the spec; their output is what msgpack-python produces for the same objects.
"""

import argparse
import json
import os
import pickle
import struct
import sys
import types

import msgpack
import numpy as np
from safetensors.numpy import save_file

NUMPY_OF = {"F32": ("float32", np.float32), "F16": ("float16", np.float16), "BF16": ("bfloat16", np.uint16)}


def read_safetensors(path):
    """name -> (numpy dtype name, array); bf16 is kept as raw uint16 (numpy has no bfloat16)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype_name, np_type = NUMPY_OF[info["dtype"]]
        begin, end = info["data_offsets"]
        out[name] = (dtype_name, np.frombuffer(data[begin:end], dtype=np_type).reshape(info["shape"]))
    return out


def read_source(path):
    if os.path.isdir(path):
        tensors = {}
        for name in sorted(os.listdir(path)):
            if name.endswith(".safetensors"):
                tensors.update(read_safetensors(os.path.join(path, name)))
        return tensors
    return read_safetensors(path)


def ndarray_bytes(shape, dtype_name, raw):
    # flax _ndarray_to_bytes: packb((shape, dtype.name, tobytes('C')), use_bin_type=True)
    return msgpack.packb((tuple(shape), dtype_name, raw), use_bin_type=True)


def leaf_object(dtype_name, array, chunk):
    raw = array.tobytes("C")
    itemsize = array.dtype.itemsize
    if array.size * itemsize > chunk:  # flax _chunk_array_leaves_in_place / _chunk
        size = max(1, int(chunk / itemsize))
        flat = array.reshape(-1)
        pieces = [flat[i:i + size] for i in range(0, flat.size, size)]
        return {
            "__msgpack_chunked_array__": True,
            "shape": {str(i): d for i, d in enumerate(array.shape)},
            "chunks": {str(i): msgpack.ExtType(1, ndarray_bytes(p.shape, dtype_name, p.tobytes("C")))
                       for i, p in enumerate(pieces)},
        }
    return msgpack.ExtType(1, ndarray_bytes(array.shape, dtype_name, raw))


def jax_tree(tensors, layout):
    """'.'-joined names of ours -> {key tuple: (dtype name, array)} in the requested layout."""
    leaves = {}
    stacked = {}
    for name in sorted(tensors):
        parts = tuple(name.split("."))
        if layout == "stacked" and parts[:2] == ("transformer", "h"):
            stacked.setdefault(parts[3:], {})[int(parts[2])] = tensors[name]
        else:
            leaves[parts] = tensors[name]
    for rest, layers in sorted(stacked.items()):
        dtype_name = layers[0][0]
        leaves[("transformer", "h", "scan_decoder") + rest] = (
            dtype_name, np.stack([layers[i][1] for i in range(len(layers))]))
    return leaves


def write_tux(args):
    tensors = read_source(args.source)
    rng = np.random.default_rng(args.seed)
    if args.vision:
        dtype_name, wte = tensors["transformer.wte.embedding"]
        hidden = wte.shape[1]
        for name, shape in (("transformer.vte.embedding", (args.vision, hidden)),
                            ("vision_head.kernel", (hidden, args.vision))):
            values = rng.standard_normal(shape).astype(np.float32)
            if dtype_name == "bfloat16":
                values = (values.view(np.uint32) >> 16).astype(np.uint16)
            elif dtype_name == "float16":
                values = values.astype(np.float16)
            tensors[name] = (dtype_name, values)
    leaves = jax_tree(tensors, args.layout)
    if args.form == "trainstate":
        state = {("step",): ("int32", np.array(7, dtype=np.int32))}
        for key, leaf in leaves.items():
            state[("params", "params") + key] = leaf
            state[("opt_state", "1", "0", "mu", "params") + key] = leaf
        leaves = state
    with open(args.out, "wb") as f:
        if args.form == "flax":
            tree = {}
            for key, (dtype_name, array) in leaves.items():
                node = tree
                for part in key[:-1]:
                    node = node.setdefault(part, {})
                node[key[-1]] = leaf_object(dtype_name, array, args.chunk)
            f.write(msgpack.packb(tree, strict_types=True))
            return
        packer = msgpack.Packer()
        for key, (dtype_name, array) in leaves.items():
            if array.ndim == 0:  # numpy scalar leaf: ext type 3
                payload = msgpack.packb(msgpack.ExtType(3, ndarray_bytes((), dtype_name, array.tobytes())))
            else:
                payload = msgpack.packb(leaf_object(dtype_name, array, args.chunk), strict_types=True)
            f.write(packer.pack((key, payload)))


def vqgan_shapes(hidden, mult, res_blocks, z, codes, embed, channels=3):
    """Spec §3.7 names ('/'-joined) and shapes, written independently of the C++ table."""
    shapes = {}

    def conv(name, k, cin, cout):
        shapes[name + "/kernel"] = (k, k, cin, cout)
        shapes[name + "/bias"] = (cout,)

    def norm(name, c):
        shapes[name + "/scale"] = (c,)
        shapes[name + "/bias"] = (c,)

    def resnet(name, cin, cout):
        norm(name + "/GroupNorm_0", cin)
        conv(name + "/Conv_0", 3, cin, cout)
        norm(name + "/GroupNorm_1", cout)
        conv(name + "/Conv_1", 3, cout, cout)
        if cin != cout:
            conv(name + "/Conv_2", 1, cin, cout)

    widths = [hidden * m for m in mult]
    conv("encoder/Conv_0", 3, channels, hidden)
    cin = hidden
    for level, width in enumerate(widths):
        for r in range(res_blocks):
            resnet(f"encoder/DownsamplingBlock_{level}/ResnetBlock_{r}", cin, width)
            cin = width
        if level < len(widths) - 1:
            conv(f"encoder/DownsamplingBlock_{level}/Downsample_0/Conv_0", 3, width, width)
    for r in range(2):
        resnet(f"encoder/MidBlock_0/ResnetBlock_{r}", widths[-1], widths[-1])
    norm("encoder/GroupNorm_0", widths[-1])
    conv("encoder/Conv_1", 3, widths[-1], z)
    shapes["quantize/embeddings"] = (codes, embed)
    conv("quant_conv", 1, z, embed)
    conv("post_quant_conv", 1, embed, z)
    conv("decoder/Conv_0", 3, z, widths[-1])
    for r in range(2):
        resnet(f"decoder/MidBlock_0/ResnetBlock_{r}", widths[-1], widths[-1])
    cin = widths[-1]
    for i, width in enumerate(reversed(widths)):
        for r in range(res_blocks + 1):
            resnet(f"decoder/UpsamplingBlock_{i}/ResnetBlock_{r}", cin, width)
            cin = width
        if i < len(widths) - 1:
            conv(f"decoder/UpsamplingBlock_{i}/Upsample_0/Conv_0", 3, width, width)
    norm("decoder/GroupNorm_0", hidden)
    conv("decoder/Conv_1", 3, hidden, channels)
    return shapes


def fake_module(name, **attributes):
    """Registers a module under `name` so pickle can name classes and functions in it."""
    parts = name.split(".")
    for i in range(1, len(parts) + 1):
        sys.modules.setdefault(".".join(parts[:i]), types.ModuleType(".".join(parts[:i])))
    module = sys.modules[name]
    for key, value in attributes.items():
        value.__module__ = name
        value.__qualname__ = key
        setattr(module, key, value)


class FrozenDictNewobj:
    """Pickles like an object with state {'_dict': ..., '_hash': None} (NEWOBJ + BUILD)."""

    def __init__(self, d):
        self._dict = d
        self._hash = None


class FrozenDictReduce:
    """Pickles as FrozenDict(dict) (REDUCE), as flax's __reduce__ does."""

    def __init__(self, d):
        self._dict = d

    def __reduce__(self):
        return (type(self), (self._dict,))


def _reconstruct_array(fun, args, arr_state, aval_state):
    raise RuntimeError("only pickled here, never loaded")


class JaxArrayShaped:
    """Pickles like jax.Array: _reconstruct_array(fun, args, arr_state, aval_state)."""

    def __init__(self, array):
        self.array = array

    def __reduce__(self):
        fun, args, arr_state = self.array.__reduce__()
        return (_reconstruct_array, (fun, args, arr_state, {"weak_type": False}))


def write_vqgan(args):
    rng = np.random.default_rng(args.seed)
    mult = [int(m) for m in args.mult.split(",")]
    shapes = vqgan_shapes(args.hidden, mult, args.res_blocks, args.z, args.codes, args.embed)
    fake_module("flax.core.frozen_dict",
                FrozenDict=FrozenDictNewobj if args.variant == "frozendict_newobj" else FrozenDictReduce)
    fake_module("jax._src.array", _reconstruct_array=_reconstruct_array)
    frozen = sys.modules["flax.core.frozen_dict"].FrozenDict
    tree = {}
    reference = {}
    for name, shape in shapes.items():
        array = rng.standard_normal(shape).astype(np.float32)
        reference[name.replace("/", ".")] = array
        parts = name.split("/")
        node = tree
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = JaxArrayShaped(array) if args.variant == "jax" else array

    def freeze(node):
        return frozen({k: freeze(v) for k, v in node.items()}) if isinstance(node, dict) else node

    root = freeze(tree) if args.variant.startswith("frozendict") else tree
    with open(args.out, "wb") as f:
        pickle.dump(root, f, protocol=args.protocol)
    save_file(reference, args.reference)


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    tux = sub.add_parser("tux")
    tux.add_argument("source")
    tux.add_argument("out")
    tux.add_argument("--chunk", type=int, default=1 << 30)
    tux.add_argument("--layout", choices=["stacked", "per_layer"], default="stacked")
    tux.add_argument("--form", choices=["records", "trainstate", "flax"], default="records")
    tux.add_argument("--vision", type=int, default=0)
    tux.add_argument("--seed", type=int, default=0)
    vq = sub.add_parser("vqgan")
    vq.add_argument("out")
    vq.add_argument("reference")
    vq.add_argument("--protocol", type=int, default=4)
    vq.add_argument("--variant", choices=["numpy", "frozendict_newobj", "frozendict_reduce", "jax"],
                    default="numpy")
    vq.add_argument("--hidden", type=int, default=8)
    vq.add_argument("--mult", default="1,2")
    vq.add_argument("--res-blocks", type=int, default=1)
    vq.add_argument("--z", type=int, default=4)
    vq.add_argument("--codes", type=int, default=16)
    vq.add_argument("--embed", type=int, default=4)
    vq.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.command == "tux":
        write_tux(args)
    else:
        write_vqgan(args)


if __name__ == "__main__":
    main()
