"""Corrupt GGUF files: every one must fail cleanly.

A small valid file is written with quanta.GGUFWriter, its header is mapped
field by field, and then broken in hundreds of ways: truncated at every byte,
bytes flipped, absurd counts, lengths, offsets and type ids written at the
exact fields, keys and tensor names duplicated, arrays nested too deep, the
alignment key made wrong. In process, `quanta.GGUF.from_bytes` must raise
FormatError (and nothing else) with a message naming the problem; through the
CLI, `quanta info FILE` must exit 1 with one `quanta: error:` line and no
traceback, within a timeout.
"""

from __future__ import annotations

import os
import random
import re
import struct
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np
import pytest

import quanta

CLI_TIMEOUT_S = 20

# GGUF value type ids and their fixed sizes (string = 8, array = 9 have none).
STRING, ARRAY, U32, I32, F32, U64 = 8, 9, 4, 5, 6, 10
VALUE_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}

# What a truncated file may legitimately be reported as, depending on where the cut falls.
TRUNCATION = r"truncated|exceeds the|cannot fit|runs past the end|empty file|bad magic"


# ---- the valid file and a map of its header --------------------------------


def write_base(path, alignment: int = 32) -> None:
    """A small file with every kind of header field: strings, numeric, string and nested arrays, two tensors."""
    rng = np.random.default_rng(7)
    w = quanta.GGUFWriter(path, alignment=alignment)
    w.add_metadata("general.architecture", "llama")
    w.add_metadata("t.count", 7, type="u32")
    w.add_metadata("t.scores", [0.5, 1.5], type="array[f32]")
    w.add_metadata("t.tokens", ["a", "bc"], type="array[string]")
    w.add_metadata("t.nested", [[1], [2, 3]], type="array[array[i32]]")
    w.add_tensor("w0", rng.standard_normal((2, 8)).astype(np.float32))
    q8 = rng.integers(0, 256, size=(1, 34), dtype=np.uint8)
    q8[:, :2] = np.array([0.25], np.float16).view(np.uint8)
    w.add_tensor("w1", q8, type="q8_0", shape=(1, 32))
    w.write()


@dataclass
class Field:
    """Where one value's parts lie: `at` is its first byte, `end` one past its last."""

    at: int
    end: int = 0
    type: int = 0
    len_at: Optional[int] = None  # strings: the u64 length
    elem_at: Optional[int] = None  # arrays: the u32 element type
    count_at: Optional[int] = None  # arrays: the u64 count
    items: List["Field"] = field(default_factory=list)


@dataclass
class KV:
    key: str
    at: int  # the key's u64 length
    type_at: int
    value: Field
    end: int


@dataclass
class Tensor:
    name: str
    at: int  # the name's u64 length
    n_dims_at: int
    dims_at: List[int]
    ne: List[int]
    type_at: int
    type: int
    offset_at: int
    offset: int
    end: int


@dataclass
class Layout:
    kvs: List[KV]
    tensors: List[Tensor]
    header_end: int
    alignment: int
    data_offset: int
    data_end: int  # one past the last tensor byte: every cut before it must fail

    def kv(self, key: str) -> KV:
        return next(kv for kv in self.kvs if kv.key == key)

    def tensor(self, name: str) -> Tensor:
        return next(t for t in self.tensors if t.name == name)


class _Walker:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def unpack(self, fmt: str) -> int:
        (v,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return v

    def string(self) -> bytes:
        n = self.unpack("<Q")
        self.pos += n
        return self.data[self.pos - n : self.pos]

    def value(self, type_id: int) -> Field:
        f = Field(at=self.pos, type=type_id)
        if type_id == STRING:
            f.len_at = self.pos
            self.string()
        elif type_id == ARRAY:
            f.elem_at = self.pos
            elem = self.unpack("<I")
            f.count_at = self.pos
            count = self.unpack("<Q")
            if elem in (STRING, ARRAY):
                f.items = [self.value(elem) for _ in range(count)]
            else:
                self.pos += count * VALUE_SIZES[elem]
        else:
            self.pos += VALUE_SIZES[type_id]
        f.end = self.pos
        return f


def layout(data: bytes) -> Layout:
    """Maps a valid file's header (an independent reading of the format, checked against quanta's)."""
    w = _Walker(data)
    assert data[:4] == b"GGUF"
    w.pos = 8
    n_tensors, n_kv = w.unpack("<Q"), w.unpack("<Q")
    kvs = []
    for _ in range(n_kv):
        at = w.pos
        key = w.string().decode()
        type_at = w.pos
        value = w.value(w.unpack("<I"))
        kvs.append(KV(key, at, type_at, value, w.pos))
    alignment = 32
    for kv in kvs:
        if kv.key == "general.alignment":
            alignment = struct.unpack_from("<I", data, kv.value.at)[0]
    tensors = []
    for _ in range(n_tensors):
        at = w.pos
        name = w.string().decode()
        n_dims_at = w.pos
        n_dims = w.unpack("<I")
        dims_at = [w.pos + 8 * d for d in range(n_dims)]
        ne = [w.unpack("<Q") for _ in range(n_dims)]
        type_at = w.pos
        type_id = w.unpack("<I")
        offset_at = w.pos
        offset = w.unpack("<Q")
        tensors.append(Tensor(name, at, n_dims_at, dims_at, ne, type_at, type_id, offset_at, offset, w.pos))
    header_end = w.pos
    data_offset = -(-header_end // alignment) * alignment
    ref = quanta.GGUF.from_bytes(data)
    assert ref.data_offset == data_offset and ref.alignment == alignment
    data_end = data_offset + max(t.offset + t.nbytes for t in ref.tensors)
    return Layout(kvs, tensors, header_end, alignment, data_offset, data_end)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    path = tmp_path_factory.mktemp("corrupt") / "base.gguf"
    write_base(path)
    data = path.read_bytes()
    return data, layout(data)


@pytest.fixture(scope="module")
def base64(tmp_path_factory):
    """The same file with alignment 64, so it carries a general.alignment key."""
    path = tmp_path_factory.mktemp("corrupt") / "base64.gguf"
    write_base(path, alignment=64)
    data = path.read_bytes()
    return data, layout(data)


# ---- building corruptions --------------------------------------------------


def patch(data: bytes, at: int, fmt: str, value: int) -> bytes:
    """`data` with `value` packed as `fmt` written over the bytes at `at`."""
    b = bytearray(data)
    struct.pack_into(fmt, b, at, value)
    return bytes(b)


def splice(data: bytes, lay: Layout, start: int, end: int, new: bytes) -> bytes:
    """Replaces header bytes [start, end) with `new`, re-padding so the data section keeps its alignment.

    Tensor offsets are relative to the data section, so the result is valid whenever `new` is."""
    assert end <= lay.header_end
    header = data[:start] + new + data[end : lay.header_end]
    header += b"\0" * (-len(header) % lay.alignment)
    return header + data[lay.data_offset :]


def gguf_string(s: bytes) -> bytes:
    return struct.pack("<Q", len(s)) + s


def nested_array(depth: int) -> bytes:
    """A value of type array nested `depth` arrays deep, holding one empty i32 array at the bottom."""
    return struct.pack("<IQ", ARRAY, 1) * (depth - 1) + struct.pack("<IQ", I32, 0)


@dataclass
class Case:
    name: str
    data: bytes
    message: str  # a regex the error message must match


def targeted_cases(base, base64) -> List[Case]:
    """Corruptions of specific fields, each with the words its error must contain."""
    data, lay = base
    size = len(data)
    cases: List[Case] = []

    def add(name, corrupted, message):
        cases.append(Case(name, corrupted, message))

    # Magic and version.
    add("empty file", b"", r"empty file")
    for n in (1, 3):
        add(f"{n}-byte file", data[:n], r"bad magic")
    for magic in (b"GGUG", b"gguf", b"\0\0\0\0", b"FUGG", b"GGML", b"\x7fELF"):
        add(f"magic {magic!r}", magic + data[4:], r"bad magic")
    add("version 1", patch(data, 4, "<I", 1), r"version 1 is obsolete")
    for version in (0, 4, 0xFFFF, 0x03000000, 0xFFFFFFFF):
        add(f"version {version:#x}", patch(data, 4, "<I", version), r"unsupported GGUF version")

    # Header counts.
    for n in (2**64 - 1, 2**63, 2**32, size, size // 33 + 1):
        add(f"tensor count {n}", patch(data, 8, "<Q", n), r"tensor count \d+ cannot fit")
    for n in (2**64 - 1, 2**63, 2**32, size, size // 14 + 1):
        add(f"metadata count {n}", patch(data, 16, "<Q", n), r"metadata count \d+ cannot fit")
    add("one tensor too many", patch(data, 8, "<Q", len(lay.tensors) + 1), r"tensor")
    add("metadata count 0", patch(data, 16, "<Q", 0), r"'general.architecture': 8 dimensions")

    # Metadata keys.
    first, second = lay.kvs[0], lay.kvs[1]
    for n in (2**64 - 1, 2**63, size, size - first.at - 8 + 1):
        add(f"key length {n}", patch(data, first.at, "<Q", n), r"metadata key length \d+ exceeds")
    add("empty key", splice(data, lay, first.at, first.type_at, gguf_string(b"")), r"metadata key #0 is empty")
    add("duplicate key", splice(data, lay, second.at, second.type_at, gguf_string(first.key.encode())),
        r"duplicate metadata key 'general.architecture'")
    for bad in (b"k\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"t.\xe2\x82", b"\xf4\x90\x80\x80"):
        add(f"key {bad!r} not UTF-8", splice(data, lay, second.at, second.type_at, gguf_string(bad)),
            r"metadata key #1 is not valid UTF-8")

    # Value types and values.
    for kv in lay.kvs:
        for type_id in (13, 14, 255, 0xFFFFFFFF):
            add(f"{kv.key} value type {type_id}", patch(data, kv.type_at, "<I", type_id),
                rf"key '{re.escape(kv.key)}': unknown value type {type_id}")
    arch = lay.kv("general.architecture").value
    for n in (2**64 - 1, 2**63, size):
        add(f"string value length {n}", patch(data, arch.len_at, "<Q", n), r"string value length \d+ exceeds")

    scores = lay.kv("t.scores").value
    tokens = lay.kv("t.tokens").value
    nested = lay.kv("t.nested").value
    for arr, key in ((scores, "t.scores"), (tokens, "t.tokens"), (nested, "t.nested")):
        for elem in (13, 100, 0xFFFFFFFF):
            add(f"{key} element type {elem}", patch(data, arr.elem_at, "<I", elem),
                rf"key '{key}': unknown array element type {elem}")
    for n in (2**64 - 1, 2**62, size):
        add(f"f32 array length {n}", patch(data, scores.count_at, "<Q", n), r"key 't.scores': array length \d+ cannot fit")
        add(f"string array length {n}", patch(data, tokens.count_at, "<Q", n),
            r"key 't.tokens': string array length \d+ cannot fit")
        add(f"nested array length {n}", patch(data, nested.count_at, "<Q", n),
            r"key 't.nested': nested array length \d+ cannot fit")
        add(f"array string length {n}", patch(data, tokens.items[1].len_at, "<Q", n), r"array string length \d+ exceeds")
        add(f"inner array length {n}", patch(data, nested.items[0].count_at, "<Q", n),
            r"key 't.nested': array length \d+ cannot fit")
    for depth in (9, 10, 64, 1000):
        add(f"arrays nested {depth} deep", splice(data, lay, nested.at, nested.end, nested_array(depth)),
            r"key 't.nested': arrays nested too deeply")

    # Tensor infos.
    t0, t1 = lay.tensor("w0"), lay.tensor("w1")
    for n in (2**64 - 1, 2**63, size):
        add(f"tensor name length {n}", patch(data, t0.at, "<Q", n), r"tensor name length \d+ exceeds")
    add("empty tensor name", splice(data, lay, t0.at, t0.n_dims_at, gguf_string(b"")),
        r"tensor #0 has a name of 0 bytes")
    add("1025-byte tensor name", splice(data, lay, t0.at, t0.n_dims_at, gguf_string(b"n" * 1025)),
        r"tensor #0 has a name of 1025 bytes")
    add("tensor name not UTF-8", splice(data, lay, t1.at, t1.n_dims_at, gguf_string(b"w\x80")),
        r"tensor #1 has a name that is not valid UTF-8")
    add("duplicate tensor name", splice(data, lay, t1.at, t1.n_dims_at, gguf_string(b"w0")),
        r"duplicate tensor name 'w0'")
    for n_dims in (0, 5, 255, 0xFFFFFFFF):
        add(f"n_dims {n_dims}", patch(data, t0.n_dims_at, "<I", n_dims), rf"'w0': {n_dims} dimensions \(1\.\.4 allowed\)")
    for ne in (2**63, 2**64 - 1):
        add(f"dimension {ne:#x}", patch(data, t0.dims_at[1], "<Q", ne), r"'w0': dimension 1 is negative")
    add("element count overflow", patch(patch(data, t0.dims_at[0], "<Q", 2**62), t0.dims_at[1], "<Q", 4),
        r"'w0': element count overflows")
    add("byte size overflow", patch(data, t0.dims_at[1], "<Q", 2**59), r"'w0': byte size overflows")
    add("empty tensor, rows too large", patch(patch(data, t0.dims_at[0], "<Q", 0), t0.dims_at[1], "<Q", 2**62),
        r"'w0': byte size overflows")
    for ne in (3, 1000, 2**40):
        add(f"tensor data too large ({ne} rows)", patch(data, t1.dims_at[1], "<Q", ne), r"tensor 'w1' data .* runs past the end")
    for type_id in (4, 5, 31, 32, 33, 42, 1000, 0xFFFFFFFF):
        add(f"tensor type {type_id}", patch(data, t1.type_at, "<I", type_id), rf"'w1': unknown ggml type id {type_id}")
    for type_id, type_name in ((2, "q4_0"), (12, "q4_k"), (20, "iq4_nl")):
        add(f"row not a multiple of {type_name} blocks", patch(data, t0.type_at, "<I", type_id),
            rf"'w0': row length 8 is not a multiple of {type_name}'s block size")
    add("q8_0 as q6_k", patch(data, t1.type_at, "<I", 14), r"'w1': row length 32 is not a multiple of q6_k")
    for delta in (1, 4, 16, lay.alignment - 1):
        add(f"offset misaligned by {delta}", patch(data, t1.offset_at, "<Q", t1.offset + delta),
            rf"'w1': offset \d+ is not a multiple of the alignment {lay.alignment}")
    data_size = size - lay.data_offset
    for offset in (-(-data_size // 32) * 32, data_size + 32 * 100, 2**63, 2**64 - 32):
        add(f"offset {offset} past the end", patch(data, t1.offset_at, "<Q", offset), r"tensor 'w1' data \[offset")
    add("data section cut", data[: lay.data_offset], r"runs past the end")
    add("header only", data[: lay.header_end], r"truncated before the tensor data section")

    # The alignment key.
    data64, lay64 = base64
    align = lay64.kv("general.alignment")
    for value in (0, 3, 48, 65, 2**31 + 1, 0xFFFFFFFF):
        add(f"alignment {value}", patch(data64, align.value.at, "<I", value),
            rf"general.alignment {value} is not a power of two")
    for type_id in (I32, F32):
        add(f"alignment of type {type_id}", patch(data64, align.type_at, "<I", type_id), r"general.alignment must be a u32")
    add("alignment as u64", splice(data64, lay64, align.type_at, align.end, struct.pack("<IQ", U64, 64)),
        r"general.alignment must be a u32")
    add("alignment as string", splice(data64, lay64, align.type_at, align.end, struct.pack("<I", STRING) + gguf_string(b"64")),
        r"general.alignment must be a u32")
    add("alignment 2^31", patch(data64, align.value.at, "<I", 2**31), r"'w1': offset 64 is not a multiple of the alignment")
    return cases


def truncation_cases(base) -> List[Case]:
    data, lay = base
    return [Case(f"truncated at {n}", data[:n], TRUNCATION) for n in range(lay.data_end)]


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One random corruption: flipped bits, overwritten bytes or integers, inserted or deleted bytes, a cut."""
    b = bytearray(data)
    kind = rng.randrange(7)
    pos = rng.randrange(len(b))
    if kind == 0:
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
    elif kind == 1:
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(len(b))] = rng.choice((0, 0xFF, 0x7F, 0x80, rng.randrange(256)))
    elif kind == 2:
        fmt = rng.choice(("<I", "<Q"))
        value = rng.choice((0, 1, 2**31, 2**32 - 1, 2**63, 2**64 - 1, len(b), rng.randrange(2**16)))
        pos = min(pos, len(b) - struct.calcsize(fmt))
        struct.pack_into(fmt, b, pos, value % (1 << (8 * struct.calcsize(fmt))))
    elif kind == 3:
        b[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    elif kind == 4:
        del b[pos : pos + rng.randint(1, 16)]
    elif kind == 5:
        del b[pos:]
    else:
        start = rng.randrange(len(b))
        b[pos:pos] = b[start : start + rng.randint(1, 64)]  # a duplicated chunk
    return bytes(b)


def touch_all(f: quanta.GGUF) -> None:
    """Reads everything a parsed file offers; only a missing dequantizer may refuse."""
    assert isinstance(f.metadata, dict)
    assert set(f.metadata_types) == set(f.metadata)
    for t in f.tensors:
        assert f.tensor_bytes(t.name).size == t.nbytes
        try:
            f.tensor(t.name)
        except quanta.UnsupportedError:
            pass


def parse_error(data: bytes) -> Optional[str]:
    """None if `data` parses and reads back cleanly, else the FormatError message; any other exception propagates."""
    try:
        f = quanta.GGUF.from_bytes(data)
    except quanta.FormatError as e:
        return str(e)
    touch_all(f)
    return None


# ---- in process ------------------------------------------------------------


def test_base_files_are_valid(base, base64):
    for data, lay in (base, base64):
        f = quanta.GGUF.from_bytes(data)
        touch_all(f)
        assert [kv.key for kv in lay.kvs] == list(f.metadata)
        assert [t.name for t in lay.tensors] == [t.name for t in f.tensors]
        assert lay.data_end <= len(data) and 150 < lay.header_end < 600


def test_targeted_corruptions_raise_format_error_naming_the_problem(base, base64):
    cases = targeted_cases(base, base64)
    assert len(cases) >= 130
    for case in cases:
        with pytest.raises(quanta.FormatError) as e:
            quanta.GGUF.from_bytes(case.data)
        assert re.search(case.message, str(e.value)), f"{case.name}: {e.value}"
        assert str(e.value).startswith("<bytes>: ")


def test_every_truncation_raises_format_error(base, base64):
    for data, lay in (base, base64):
        for n in range(lay.data_end):
            with pytest.raises(quanta.FormatError) as e:
                quanta.GGUF.from_bytes(data[:n])
            assert re.search(TRUNCATION, str(e.value)), f"cut at {n}: {e.value}"
        # Only the padding after the last tensor may go.
        for n in range(lay.data_end, len(data) + 1):
            touch_all(quanta.GGUF.from_bytes(data[:n]))


def test_random_mutations_parse_or_raise_format_error(base, base64):
    rng = random.Random(1234)
    outcomes = {"parsed": 0, "rejected": 0}
    for data, _ in (base, base64):
        for _ in range(10000):
            corrupted = mutate(data, rng)
            if len(corrupted) == 0:
                continue
            outcomes["rejected" if parse_error(corrupted) else "parsed"] += 1
    # Both outcomes must be common, or the mutations are not exercising the reader.
    assert outcomes["parsed"] > 1000 and outcomes["rejected"] > 10000, outcomes


def test_nesting_limit_is_exactly_eight(base):
    data, lay = base
    nested = lay.kv("t.nested").value
    ok = quanta.GGUF.from_bytes(splice(data, lay, nested.at, nested.end, nested_array(8)))
    assert ok.metadata_types["t.nested"] == "array[" * 8 + "i32" + "]" * 8
    value = ok.metadata["t.nested"]
    for _ in range(7):
        (value,) = value
    assert value == []
    with pytest.raises(quanta.FormatError, match="nested too deeply"):
        quanta.GGUF.from_bytes(splice(data, lay, nested.at, nested.end, nested_array(9)))


def test_claimed_counts_do_not_reserve_memory(base):
    """Counts that fit the file but would need ~10x its size in memory fail without a MemoryError.

    64 MiB of nested arrays each claiming the most items the bytes left allow used to
    reserve 5 GiB; under a 2 GiB address-space limit that was a MemoryError."""
    size = 64 << 20
    header = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + gguf_string(b"k") + struct.pack("<I", ARRAY)
    for _ in range(8):
        header += struct.pack("<IQ", ARRAY, (size - len(header) - 12) // 12)
    payload = header + b"\xff" * (size - len(header))
    many_kv = b"GGUF" + struct.pack("<IQQ", 3, 0, (size - 24) // 14) + gguf_string(b"k") + b"\xff" * (size - 41)
    code = (
        "import resource, sys, quanta\n"
        "data = sys.stdin.buffer.read()\n"
        "resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))\n"
        "try:\n"
        "    quanta.GGUF.from_bytes(data)\n"
        "except quanta.FormatError as e:\n"
        "    print('FormatError', e)\n"
    )
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    for blob, message in ((payload, "nested too deeply"), (many_kv, "unknown value type")):
        run = subprocess.run([sys.executable, "-c", code], input=blob, capture_output=True, timeout=60, env=env)
        out = run.stdout.decode() + run.stderr.decode()
        assert run.returncode == 0 and out.startswith("FormatError") and message in out, out[-2000:]


# ---- through the CLI -------------------------------------------------------


def _run_cli(path: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "quanta", "info", path], capture_output=True, text=True,
                          timeout=CLI_TIMEOUT_S, env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))


def _cli_cases(base, base64) -> List[Case]:
    data, lay = base
    cases = targeted_cases(base, base64)
    # Every cut in the first 160 bytes (magic, counts, keys, values), then every 3rd up to the data's end.
    cuts = list(range(0, 160)) + list(range(160, lay.data_end, 3))
    cases += [Case(f"truncated at {n}", data[:n], TRUNCATION) for n in cuts]
    # Random corruptions the reader rejects (those it accepts are valid files, not errors).
    rng = random.Random(99)
    flips = []
    while len(flips) < 60:
        corrupted = mutate(data[: lay.header_end], rng) + data[lay.header_end :]
        if corrupted and parse_error(corrupted):
            flips.append(Case(f"mutation {len(flips)}", corrupted, r"."))
    return cases + flips


def test_cli_reports_each_corruption_in_one_line(base, base64, tmp_path):
    cases = _cli_cases(base, base64)
    assert len(cases) >= 300
    paths = []
    for i, case in enumerate(cases):
        path = tmp_path / f"case{i:04d}.gguf"
        path.write_bytes(case.data)
        paths.append(str(path))
    workers = max(2, min(8, (os.cpu_count() or 2) * 2))
    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(_run_cli, paths))
    failures = []
    for case, path, run in zip(cases, paths, results):
        lines = run.stderr.splitlines()
        ok = (run.returncode == 1 and len(lines) == 1 and lines[0].startswith(f"quanta: error: {path}: ")
              and "Traceback" not in run.stderr and re.search(case.message, lines[0]) and run.stdout == "")
        if not ok:
            failures.append(f"{case.name}: exit {run.returncode}, stderr {run.stderr[-500:]!r}")
    assert not failures, f"{len(failures)} of {len(cases)} cases:\n" + "\n".join(failures[:20])


def test_cli_on_a_directory_and_a_missing_file(tmp_path):
    for path in (str(tmp_path), str(tmp_path / "missing.gguf")):
        run = _run_cli(path)
        assert run.returncode == 1 and run.stderr.startswith("quanta: error: ") and len(run.stderr.splitlines()) == 1
