"""Interoperability fixtures for the C++ safetensors reader and writer (tests/core/test_safetensors.cpp).

  safetensors_fixture.py write OUTDIR        files written by the real safetensors library, plus
                                             OUTDIR/expected.json describing their contents
  safetensors_fixture.py verify FILE JSON    reads FILE (written by LWM Studio) with the real library
                                             and checks it against JSON; exit status 0 when equal

JSON layout: {"metadata": {k: v}, "files": {file: {name: {"dtype", "shape", "values"}}}} for
write, and {"metadata": {k: v}, "tensors": {name: {"dtype", "shape", "values"}}} for verify.
Values are exactly representable in their dtype, so both sides compare them exactly.
"""
import json
import struct
import sys
from pathlib import Path

import numpy as np
import safetensors
import safetensors.numpy

METADATA = {"writer": "python-safetensors", "purpose": "lwm interop test"}


def numpy_tensors():
    return {
        "f32_matrix": np.array([[-1.5, 0.25, 3.0e-8], [1.0e30, -0.0, 7.125]], dtype=np.float32),
        "f16_vector": np.array([0.5, -2.0, 65504.0, 5.960464477539063e-08, 1.0009765625], dtype=np.float16),
        "f16_cube": np.arange(6, dtype=np.float16).reshape(2, 1, 3) - 2.5,
        "f32_scalar": np.array(42.5, dtype=np.float32),
        "f32_empty": np.zeros((0, 4), dtype=np.float32),
    }


def bf16_bits(values):
    """bfloat16 bits of float32 values that bfloat16 holds exactly (the upper 16 bits)."""
    as_f32 = np.asarray(values, dtype=np.float32)
    bits = (as_f32.view(np.uint32) >> 16).astype(np.uint16)
    assert np.array_equal(bf16_to_f32(bits), as_f32), "fixture values must be exact in bfloat16"
    return bits


def bf16_to_f32(bits):
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def write_bf16_file(path, name, bits, shape):
    """numpy has no bfloat16, so hand the raw bits to the library's low-level serializer."""
    bits = np.ascontiguousarray(bits)
    if hasattr(safetensors, "TensorSpec"):  # safetensors >= 0.8
        spec = safetensors.TensorSpec(dtype="bfloat16", shape=list(shape),
                                      data_ptr=bits.ctypes.data, data_len=bits.nbytes)
    else:
        spec = {"dtype": "bfloat16", "shape": list(shape), "data": bits.tobytes()}
    safetensors.serialize_file({name: spec}, str(path), metadata=METADATA)


def describe(dtype, array):
    return {"dtype": dtype, "shape": list(array.shape), "values": [float(v) for v in array.reshape(-1)]}


def write(outdir):
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    tensors = numpy_tensors()
    safetensors.numpy.save_file(tensors, str(outdir / "numpy.safetensors"), metadata=METADATA)
    numpy_expected = {
        name: describe("F32" if array.dtype == np.float32 else "F16", array)
        for name, array in tensors.items()
    }
    bf16_values = np.array([[1.0, -2.5], [0.0078125, 2.0**127], [-0.0, 96.0]], dtype=np.float32)
    write_bf16_file(outdir / "bf16.safetensors", "bf16_matrix", bf16_bits(bf16_values), bf16_values.shape)
    expected = {
        "metadata": METADATA,
        "files": {
            "numpy.safetensors": numpy_expected,
            "bf16.safetensors": {"bf16_matrix": describe("BF16", bf16_values)},
        },
    }
    (outdir / "expected.json").write_text(json.dumps(expected, indent=1))


def decode(dtype, data, shape):
    raw = bytes(data)
    if dtype == "F32":
        flat = np.frombuffer(raw, dtype="<f4")
    elif dtype == "F16":
        flat = np.frombuffer(raw, dtype="<f2").astype(np.float32)
    elif dtype == "BF16":
        flat = bf16_to_f32(np.frombuffer(raw, dtype="<u2"))
    else:
        raise ValueError(f"unexpected dtype {dtype}")
    return flat.reshape(shape)


def verify(file, expected_json):
    expected = json.loads(Path(expected_json).read_text())
    problems = []
    raw = Path(file).read_bytes()
    (header_length,) = struct.unpack("<Q", raw[:8])
    if (8 + header_length) % 8 != 0:
        problems.append(f"data section starts at {8 + header_length}, not 8-byte aligned")
    tensors = dict(safetensors.deserialize(raw))  # the library's own header validation
    if set(tensors) != set(expected["tensors"]):
        problems.append(f"tensor names {sorted(tensors)} != {sorted(expected['tensors'])}")
    for name, want in expected["tensors"].items():
        if name not in tensors:
            continue
        got = tensors[name]
        if got["dtype"] != want["dtype"] or list(got["shape"]) != want["shape"]:
            problems.append(f"{name}: {got['dtype']} {got['shape']} != {want['dtype']} {want['shape']}")
            continue
        values = decode(got["dtype"], got["data"], got["shape"]).reshape(-1)
        wanted = np.array(want["values"], dtype=np.float64)
        if not np.array_equal(values.astype(np.float64), wanted):
            problems.append(f"{name}: values {values.tolist()} != {wanted.tolist()}")
    with safetensors.safe_open(file, framework="numpy") as handle:
        if (handle.metadata() or {}) != expected["metadata"]:
            problems.append(f"metadata {handle.metadata()} != {expected['metadata']}")
    for problem in problems:
        print(problem)
    print("ok" if not problems else f"{len(problems)} problem(s)")
    return 0 if not problems else 1


def main(argv):
    if len(argv) == 3 and argv[1] == "write":
        write(argv[2])
        return 0
    if len(argv) == 4 and argv[1] == "verify":
        return verify(argv[2], argv[3])
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
