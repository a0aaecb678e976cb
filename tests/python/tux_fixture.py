"""Writes LWM's checkpoint formats with the real Python libraries, for the converter tests.

tux   SRC OUT: the tensors of SRC (a safetensors file or a model directory of ours, JAX names) as
      a tux StreamingCheckpointer file (spec §4.1): msgpack.Packer().pack((key, to_bytes(leaf)))
      per leaf, flax's to_bytes layout (ext 1 ndarray, chunked map above --chunk bytes).
      --layout stacked|stacked_axis1|per_layer (stacked_axis1: param_scan_axis=1),
      --form records|trainstate|flax, --vision V adds vte/vision_head.
torch SRC OUT: the tensors of SRC (a model directory of ours, Hugging Face names) as Hugging Face's
      pytorch_model*.bin files (torch.save's zip format, spec §1.6) in the directory OUT, with
      config.json and tokenizer.model copied and, with --shards N > 1, pytorch_model.bin.index.json.
      --archive stem|archive names the zip's top folder as recent or as old torch versions do;
      --state-dict writes an OrderedDict with _metadata (torch.save(model.state_dict())) instead
      of the plain dict of sharded save_pretrained; --views stores two tensors as views of one
      shared storage and one as a transposed (non-contiguous) view.
vqgan OUT REF: a random VQGAN parameter dict (spec §3.7 names) pickled with --protocol, as numpy
      arrays, a FrozenDict-shaped object or JAX-array-shaped objects (--variant); REF gets the same
      tensors as safetensors with '.'-joined names, for comparison.

flax and jax are not installed: the few functions of flax.serialization that matter are written
here from the spec; their output is what msgpack-python produces for the same objects. torch is
not installed either (several GB): its serialization (torch/serialization.py `_save`: a protocol-2
pickle with persistent ids for storages, tensors reduced to torch._utils._rebuild_tensor_v2) is
reproduced with the standard pickle and zipfile modules and stand-in classes of the same names.
"""

import argparse
import collections
import io
import json
import os
import pickle
import shutil
import struct
import sys
import types
import zipfile

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
        if layout.startswith("stacked") and parts[:2] == ("transformer", "h"):
            stacked.setdefault(parts[3:], {})[int(parts[2])] = tensors[name]
        else:
            leaves[parts] = tensors[name]
    for rest, layers in sorted(stacked.items()):
        dtype_name = layers[0][0]
        # param_scan_axis: 0 stacks layers as [L, ...]; 1 as [in, L, out] (norms [hidden, L]).
        axis = 1 if layout == "stacked_axis1" else 0
        leaves[("transformer", "h", "scan_decoder") + rest] = (
            dtype_name, np.stack([layers[i][1] for i in range(len(layers))], axis=axis))
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


class TorchStorage:
    """A typed storage: `storage_class` is torch's legacy class (BFloat16Storage, ...)."""

    def __init__(self, storage_class, raw, itemsize):
        self.storage_class = storage_class
        self.raw = raw
        self.numel = len(raw) // itemsize


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks, metadata=None):
    raise RuntimeError("only pickled here, never loaded")


class TorchTensor:
    """Pickles as torch.Tensor.__reduce_ex__ does for a CPU tensor."""

    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, tuple(size), tuple(stride), False, collections.OrderedDict())

    def __reduce_ex__(self, protocol):
        return (_rebuild_tensor_v2, self.args)


TORCH_STORAGE = {"F32": ("FloatStorage", 4), "F16": ("HalfStorage", 2), "BF16": ("BFloat16Storage", 2)}


class Evil:
    """A pickle that would run a command when loaded by Python's pickle: os.system(...)."""

    def __reduce__(self):
        return (os.system, ("echo never",))


def torch_save(obj, path, archive, corrupt=None):
    """torch.save(obj, path) with the zip serialization and pickle protocol 2; `corrupt` damages
    it the way the converter tests need."""
    keys = {}

    class Pickler(pickle.Pickler):
        def persistent_id(self, value):
            if isinstance(value, TorchStorage):
                key = keys.setdefault(id(value), (str(len(keys)), value))[0]
                return ("storage", value.storage_class, key, "cpu", value.numel)
            return None

    buffer = io.BytesIO()
    if corrupt == "evil-global":
        obj = dict(obj)
        obj["evil"] = Evil()
    Pickler(buffer, protocol=2).dump(obj)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
        if corrupt != "no-pickle":
            z.writestr(archive + "/data.pkl", buffer.getvalue())
        z.writestr(archive + "/byteorder", "big" if corrupt == "big-endian" else "little")
        for key, storage in sorted(keys.values(), key=lambda entry: int(entry[0])):
            if corrupt == "missing-storage" and key == "1":
                continue
            raw = storage.raw[:-2] if corrupt == "short-storage" and key == "1" else storage.raw
            z.writestr(archive + "/data/" + key, raw)
        z.writestr(archive + "/version", "3\n")
        z.writestr(archive + "/.data/serialization_id", "1234567890123456789012345678901234567890")


def write_torch(args):
    storage_classes = {}
    for tag, (class_name, _) in TORCH_STORAGE.items():
        storage_classes[tag] = type(class_name, (), {})
        fake_module("torch", **{class_name: storage_classes[tag]})
    fake_module("torch._utils", _rebuild_tensor_v2=_rebuild_tensor_v2)
    header = {}
    for name in sorted(os.listdir(args.source)):
        if name.endswith(".safetensors"):
            with open(os.path.join(args.source, name), "rb") as f:
                n = struct.unpack("<Q", f.read(8))[0]
                info = json.loads(f.read(n))
                data = f.read()
            for key, entry in info.items():
                if key != "__metadata__":
                    begin, end = entry["data_offsets"]
                    header[key] = (entry["dtype"], entry["shape"], data[begin:end])
    os.makedirs(args.out, exist_ok=True)
    for extra in ("config.json", "tokenizer.model"):
        if os.path.exists(os.path.join(args.source, extra)):
            shutil.copy(os.path.join(args.source, extra), os.path.join(args.out, extra))

    def tensor(dtype, shape, raw):
        class_name, itemsize = TORCH_STORAGE[dtype]
        stride = [1] * len(shape)
        for i in range(len(shape) - 2, -1, -1):
            stride[i] = stride[i + 1] * shape[i + 1]
        return TorchTensor(TorchStorage(storage_classes[dtype], raw, itemsize), 0, shape, stride)

    state = {name: tensor(*value) for name, value in header.items()}
    if args.views:
        # q_proj and k_proj of layer 0 as views at offsets of one storage, and v_proj stored
        # transposed: the saved tensor is a view with stride (1, rows) of its transpose.
        q, k = "model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.k_proj.weight"
        v = "model.layers.0.self_attn.v_proj.weight"
        (dq, sq, rq), (dk, sk, rk) = header[q], header[k]
        assert dq == dk
        class_name, itemsize = TORCH_STORAGE[dq]
        shared = TorchStorage(storage_classes[dq], b"\0" * (3 * itemsize) + rq + rk, itemsize)
        state[q] = TorchTensor(shared, 3, sq, [sq[1], 1])
        state[k] = TorchTensor(shared, 3 + len(rq) // itemsize, sk, [sk[1], 1])
        dv, sv, rv = header[v]
        _, itemsize = TORCH_STORAGE[dv]
        np_type = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16}[dv]
        transposed = np.frombuffer(rv, dtype=np_type).reshape(sv).T.copy().tobytes("C")
        state[v] = TorchTensor(TorchStorage(storage_classes[dv], transposed, itemsize), 0, sv, [1, sv[0]])
    names = list(state.keys())
    shards = [names[i::args.shards] for i in range(args.shards)]
    weight_map = {}
    for index, shard in enumerate(shards):
        if args.shards == 1:
            file = "pytorch_model.bin"
        else:
            file = "pytorch_model-%05d-of-%05d.bin" % (index + 1, args.shards)
        if args.state_dict:
            obj = collections.OrderedDict((name, state[name]) for name in shard)
            obj._metadata = collections.OrderedDict([("", {"version": 1}), ("model", {"version": 1})])
        else:
            obj = {name: state[name] for name in shard}
        archive = os.path.splitext(file)[0] if args.archive == "stem" else "archive"
        torch_save(obj, os.path.join(args.out, file), archive, args.corrupt if index == 0 else None)
        for name in shard:
            weight_map[name] = file
    if args.shards > 1:
        with open(os.path.join(args.out, "pytorch_model.bin.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": 0}, "weight_map": weight_map}, f, indent=2)


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    tux = sub.add_parser("tux")
    tux.add_argument("source")
    tux.add_argument("out")
    tux.add_argument("--chunk", type=int, default=1 << 30)
    tux.add_argument("--layout", choices=["stacked", "stacked_axis1", "per_layer"], default="stacked")
    tux.add_argument("--form", choices=["records", "trainstate", "flax"], default="records")
    tux.add_argument("--vision", type=int, default=0)
    tux.add_argument("--seed", type=int, default=0)
    th = sub.add_parser("torch")
    th.add_argument("source")
    th.add_argument("out")
    th.add_argument("--shards", type=int, default=1)
    th.add_argument("--archive", choices=["stem", "archive"], default="stem")
    th.add_argument("--state-dict", action="store_true")
    th.add_argument("--views", action="store_true")
    th.add_argument("--corrupt", choices=["no-pickle", "big-endian", "missing-storage", "short-storage",
                                          "evil-global"])
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
    elif args.command == "torch":
        write_torch(args)
    else:
        write_vqgan(args)


if __name__ == "__main__":
    main()
