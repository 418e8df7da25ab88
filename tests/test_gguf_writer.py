"""GGUFWriter output read back by gguf-py (the reference) and by quanta, and
gguf-py's output read by quanta."""

import os

import gguf
import numpy as np
import pytest

import quanta
from test_dequantize import random_blocks

METADATA = [  # key, value, explicit type (None = inferred)
    ("general.architecture", "llama", None),
    ("general.name", "tiny ünïcode 🦙", None),
    ("t.u8", 200, "u8"), ("t.i8", -100, "i8"), ("t.u16", 60000, "u16"), ("t.i16", -30000, "i16"),
    ("t.u32", 4_000_000_000, None), ("t.i32", -5, None), ("t.u64", 2**63 + 5, "u64"), ("t.i64", -(2**40), "i64"),
    ("t.f32", 0.5, None), ("t.f64", 1e300, "f64"), ("t.bool", True, None),
    ("t.arr_i32", [1, -2, 3], "array[i32]"), ("t.arr_f32", [0.25, -1.5], None),
    ("t.arr_str", ["a", "", "✓ tokens", "<|im_end|>"], None), ("t.arr_u8", np.arange(5, dtype=np.uint8), None),
    ("t.nested", [[1, 2], [3]], "array[array[i32]]"), ("t.empty", [], "array[string]"),
]


def _write_sample(path, rng, alignment=32):
    tensors = {
        "f32": rng.standard_normal((3, 8), dtype=np.float32),
        "f16": rng.standard_normal((2, 4, 16), dtype=np.float32).astype(np.float16),
        "i32": np.arange(6, dtype=np.int32),
    }
    q4 = gguf.quants.quantize(rng.standard_normal((4, 64), dtype=np.float32), gguf.GGMLQuantizationType.Q4_0)
    q4k = random_blocks(rng, "q4_k", 2 * 256).reshape(2, -1)
    bf16_src = rng.standard_normal((5, 32), dtype=np.float32)
    with quanta.GGUFWriter(path, alignment=alignment) as w:
        for key, value, vtype in METADATA:
            w.add_metadata(key, value, type=vtype)
        for name, array in tensors.items():
            w.add_tensor(name, array)
        w.add_tensor("q4_0", q4, type="q4_0", shape=(4, 64))
        w.add_tensor("q4_k", lambda: q4k, type="q4_k", shape=(2, 256))  # streamed lazily
        w.add_tensor("bf16", bf16_src, type="bf16")
    return tensors, q4, q4k, bf16_src


def test_written_file_reads_back_in_gguf_py_and_quanta(tmp_path, rng):
    path = tmp_path / "sample.gguf"
    tensors, q4, q4k, bf16_src = _write_sample(path, rng)
    ref = gguf.GGUFReader(path)
    ours = quanta.GGUF(path)
    assert ref.fields["general.architecture"].contents() == "llama"
    assert ref.fields["general.name"].contents() == "tiny ünïcode 🦙"
    assert ref.fields["t.u64"].contents() == 2**63 + 5
    assert ref.fields["t.arr_str"].contents() == ["a", "", "✓ tokens", "<|im_end|>"]
    assert ref.fields["t.nested"].types[:2] == [gguf.GGUFValueType.ARRAY, gguf.GGUFValueType.ARRAY]
    assert ref.fields["t.u32"].types == [gguf.GGUFValueType.UINT32]
    assert ref.fields["t.i32"].types == [gguf.GGUFValueType.INT32]
    assert ref.fields["t.f32"].types == [gguf.GGUFValueType.FLOAT32]
    assert ref.fields["t.arr_u8"].types == [gguf.GGUFValueType.ARRAY, gguf.GGUFValueType.UINT8]

    md = ours.metadata
    for key, value, _ in METADATA:
        expected = value.tolist() if isinstance(value, np.ndarray) else value
        assert md[key] == expected, key
    assert ours.metadata_types["t.nested"] == "array[array[i32]]"
    assert ours.metadata_types["t.u16"] == "u16"

    by_name = {t.name: t for t in ref.tensors}
    for name, array in tensors.items():
        np.testing.assert_array_equal(np.asarray(by_name[name].data).reshape(array.shape), array)
        np.testing.assert_array_equal(ours.tensor(name), array.astype(np.float32))
    np.testing.assert_array_equal(np.asarray(by_name["q4_0"].data).reshape(q4.shape), q4)
    np.testing.assert_array_equal(ours.tensor("q4_0"), gguf.quants.dequantize(q4, gguf.GGMLQuantizationType.Q4_0))
    np.testing.assert_array_equal(ours.tensor_bytes("q4_k"), q4k)
    # bf16 conversion rounds to nearest even, as ggml does.
    bits = bf16_src.view(np.uint32)
    expected_bf16 = (((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) << 16).view(np.float32)
    np.testing.assert_array_equal(ours.tensor("bf16"), expected_bf16)
    assert [t.type for t in ours.tensors] == ["f32", "f16", "i32", "q4_0", "q4_k", "bf16"]
    assert ours.tensors[1].shape == (2, 4, 16)


def test_custom_alignment(tmp_path, rng):
    path = tmp_path / "aligned.gguf"
    _write_sample(path, rng, alignment=256)
    ref = gguf.GGUFReader(path)
    assert ref.fields["general.alignment"].contents() == 256
    assert all(t.data_offset % 256 == 0 for t in ref.tensors)
    assert quanta.GGUF(path).alignment == 256


def test_reads_gguf_py_output(tmp_path, rng):
    path = tmp_path / "theirs.gguf"
    w = gguf.GGUFWriter(path, "qwen2")
    w.add_context_length(4096)
    w.add_token_list(["<s>", "hello", "wörld"])
    w.add_array("x.scores", [0.5, -1.0, 2.25])
    a = rng.standard_normal((7, 32), dtype=np.float32)
    w.add_tensor("w", a)
    q = gguf.quants.quantize(a, gguf.GGMLQuantizationType.Q8_0)
    w.add_tensor("q", q, raw_shape=q.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    f = quanta.GGUF(path)
    assert f.metadata["general.architecture"] == "qwen2"
    assert f.metadata["qwen2.context_length"] == 4096
    assert f.metadata["tokenizer.ggml.tokens"] == ["<s>", "hello", "wörld"]
    assert f.metadata["x.scores"] == [0.5, -1.0, 2.25]
    np.testing.assert_array_equal(f.tensor("w"), a)
    np.testing.assert_array_equal(f.tensor("q"), gguf.quants.dequantize(q, gguf.GGMLQuantizationType.Q8_0))


def test_interrupted_write_leaves_no_file(tmp_path, rng):
    path = tmp_path / "out.gguf"

    def explode():
        raise RuntimeError("converter died")

    with pytest.raises(RuntimeError):
        with quanta.GGUFWriter(path) as w:
            w.add_tensor("a", rng.standard_normal((2, 32), dtype=np.float32))
            w.add_tensor("b", explode, type="f32", shape=(2, 32))
    del w
    import gc

    gc.collect()
    assert os.listdir(tmp_path) == []


def test_writer_rejects_bad_declarations(tmp_path):
    w = quanta.GGUFWriter(tmp_path / "x.gguf")
    w.add_metadata("k", 1)
    with pytest.raises(ValueError, match="twice"):
        w.add_metadata("k", 2)
    with pytest.raises(ValueError, match="does not fit"):
        w.add_metadata("small", 300, type="u8")
    with pytest.raises(ValueError, match="unknown GGUF value type"):
        w.add_metadata("weird", 1, type="u128")
    with pytest.raises(ValueError, match="multiple"):
        w.add_tensor("q", np.zeros((1, 18), np.uint8), type="q4_0", shape=(1, 30))
    with pytest.raises(ValueError, match="unknown type"):
        w.add_tensor("q", np.zeros((1, 18), np.uint8), type="q4_9", shape=(1, 32))
    w.add_tensor("t", np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match="declared twice"):
        w.add_tensor("t", np.zeros((2, 4), np.float32))
    w._pending[0] = ("t", np.zeros((2, 3), np.float32), "f32")  # wrong size at write time
    with pytest.raises(ValueError, match="expects 32 bytes"):
        w.write()
