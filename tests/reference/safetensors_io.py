"""Minimal safetensors reader/writer (json + struct + torch), shared by the reference scripts.

Written from the format description (https://github.com/huggingface/safetensors): an 8-byte
little-endian header length N, N bytes of UTF-8 JSON, then the raw little-endian tensor data.
The JSON maps each tensor name to {"dtype", "shape", "data_offsets": [begin, end]} (offsets
relative to the start of the data section) and may hold "__metadata__" (str -> str).

The writer mirrors what the official library produces so that files from here look like files
from `save_pretrained`: compact JSON with "__metadata__" first, header padded with spaces to a
multiple of 8 (so the data section is 8-byte aligned), tensors in sorted-name order, data
contiguous with no gaps. The reader is deliberately as strict as the official one (offsets must
tile the data section exactly), because the C++ engine's files are also read with it.
"""

import json
import struct

import torch

# safetensors dtype tag -> (torch dtype, bytes per element)
DTYPES = {
    "F64": (torch.float64, 8),
    "F32": (torch.float32, 4),
    "F16": (torch.float16, 2),
    "BF16": (torch.bfloat16, 2),
    "I64": (torch.int64, 8),
    "I32": (torch.int32, 4),
    "I16": (torch.int16, 2),
    "I8": (torch.int8, 1),
    "U8": (torch.uint8, 1),
    "BOOL": (torch.bool, 1),
}
TORCH_TO_TAG = {dt: tag for tag, (dt, _) in DTYPES.items()}

# The official parser refuses headers above 100 MB; so do we, to fail fast on garbage.
MAX_HEADER = 100_000_000


class SafetensorsError(ValueError):
    pass


def read_header(path):
    """Returns (header dict without __metadata__, metadata dict or None, data section bytes)."""
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        raise SafetensorsError(f"{path}: file shorter than the 8-byte header length")
    (n,) = struct.unpack("<Q", blob[:8])
    if n > MAX_HEADER or 8 + n > len(blob):
        raise SafetensorsError(f"{path}: header length {n} does not fit the file ({len(blob)} bytes)")
    try:
        header = json.loads(blob[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SafetensorsError(f"{path}: header is not valid JSON: {e}") from None
    if not isinstance(header, dict):
        raise SafetensorsError(f"{path}: header is not a JSON object")
    metadata = header.pop("__metadata__", None)
    return header, metadata, blob[8 + n :]


def load_file(path, with_metadata=False):
    """Loads every tensor in its stored dtype. Returns {name: tensor} (and metadata if asked)."""
    header, metadata, data = read_header(path)
    # Check that the offsets tile the data section exactly, as the official reader does.
    entries = sorted(header.items(), key=lambda kv: tuple(kv[1]["data_offsets"]))
    expected_begin = 0
    tensors = {}
    for name, info in entries:
        tag = info.get("dtype")
        if tag not in DTYPES:
            raise SafetensorsError(f"{path}: tensor {name}: unsupported dtype {tag!r}")
        torch_dtype, size = DTYPES[tag]
        shape = [int(d) for d in info["shape"]]
        begin, end = (int(o) for o in info["data_offsets"])
        numel = 1
        for d in shape:
            numel *= d
        if begin != expected_begin:
            raise SafetensorsError(f"{path}: tensor {name}: data starts at {begin}, expected {expected_begin}")
        if end - begin != numel * size:
            raise SafetensorsError(f"{path}: tensor {name}: {end - begin} bytes for shape {shape} {tag}")
        expected_begin = end
        raw = bytearray(data[begin:end])
        if numel == 0:
            t = torch.empty(shape, dtype=torch_dtype)
        else:
            t = torch.frombuffer(raw, dtype=torch_dtype).reshape(shape)
        tensors[name] = t
    if expected_begin != len(data):
        raise SafetensorsError(f"{path}: {len(data) - expected_begin} trailing bytes after the last tensor")
    if with_metadata:
        return tensors, metadata
    return tensors


def tensor_bytes(t):
    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:
        # numpy has no bfloat16; the bit pattern is what we want anyway.
        return t.view(torch.int16).numpy().tobytes()
    return t.numpy().tobytes()


def save_file(tensors, path, metadata=None):
    """Writes {name: tensor} like the official serializer (see module docstring)."""
    if metadata is not None:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise SafetensorsError("metadata must map str to str")
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    chunks = []
    offset = 0
    for name in sorted(tensors):
        t = tensors[name]
        if t.dtype not in TORCH_TO_TAG:
            raise SafetensorsError(f"tensor {name}: unsupported dtype {t.dtype}")
        raw = tensor_bytes(t)
        header[name] = {
            "dtype": TORCH_TO_TAG[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in chunks:
            f.write(raw)


def tensor_nbytes(t):
    return t.numel() * DTYPES[TORCH_TO_TAG[t.dtype]][1]
