"""The GGUF reader on both real models, against gguf-py as the reference."""

import json
import subprocess
import sys

import gguf
import numpy as np
import pytest

import quanta


@pytest.fixture(scope="module")
def pair(real_model_path):
    return quanta.GGUF(real_model_path), gguf.GGUFReader(real_model_path)


def test_info_json_lists_every_tensor_like_gguf_py(real_model_path, pair):
    _, ref = pair
    out = subprocess.run([sys.executable, "-m", "quanta", "info", real_model_path, "--json"],
                         capture_output=True, text=True, check=True)
    info = json.loads(out.stdout)
    assert len(info["tensors"]) == len(ref.tensors)
    for ours, theirs in zip(info["tensors"], ref.tensors):
        assert ours["name"] == theirs.name
        assert ours["shape"] == [int(d) for d in reversed(theirs.shape.tolist())]
        assert ours["type"] == theirs.tensor_type.name.lower()
        assert ref.data_offset + ours["offset"] == theirs.data_offset


def _reference_value(field):
    """A gguf-py field as a plain Python value."""
    types = field.types
    if types[0] == gguf.GGUFValueType.ARRAY:
        if types[1] == gguf.GGUFValueType.STRING:
            return [bytes(field.parts[i]).decode("utf-8") for i in field.data]
        return [field.parts[i].tolist()[0] for i in field.data]
    if types[0] == gguf.GGUFValueType.STRING:
        return bytes(field.parts[-1]).decode("utf-8")
    return field.parts[-1].tolist()[0]


def test_metadata_matches_gguf_py(pair):
    ours, ref = pair
    keys = [k for k in ref.fields if not k.startswith("GGUF.")]
    assert list(ours.metadata) == keys
    for key in keys:
        expected = _reference_value(ref.fields[key])
        got = ours.metadata[key]
        if isinstance(expected, float):
            assert got == pytest.approx(expected, rel=1e-7), key
        elif isinstance(expected, list) and expected and isinstance(expected[0], float):
            np.testing.assert_array_equal(np.float32(got), np.float32(expected), err_msg=key)
        else:
            assert got == expected, key
        ref_type = ref.fields[key].types
        name = ref_type[0].name.lower().replace("uint", "u").replace("int", "i").replace("float", "f")
        if ref_type[0] == gguf.GGUFValueType.ARRAY:
            inner = ref_type[1].name.lower().replace("uint", "u").replace("int", "i").replace("float", "f")
            name = f"array[{inner}]"
        assert ours.metadata_types[key] == name, key


def test_every_tensor_dequantizes_bit_exactly(pair):
    ours, ref = pair
    for t in ref.tensors:
        expected = gguf.quants.dequantize(t.data, t.tensor_type).reshape([int(d) for d in reversed(t.shape.tolist())])
        got = ours.tensor(t.name)
        assert got.dtype == np.float32 and got.shape == expected.shape, t.name
        np.testing.assert_array_equal(got.view(np.uint32), expected.astype(np.float32).view(np.uint32), err_msg=t.name)


def test_tensor_bytes_are_the_mapped_file_bytes(pair):
    ours, ref = pair
    t = ref.tensors[0]
    raw = ours.tensor_bytes(t.name)
    assert not raw.flags.writeable
    np.testing.assert_array_equal(raw.reshape(-1), np.asarray(t.data).view(np.uint8).reshape(-1))


def test_model_types_are_as_documented(qwen_path, gemma_path):
    # ../shared/FACTS.md lists the type mix of each file.
    def counts(path):
        c = {}
        for t in quanta.GGUF(path).tensors:
            c[t.type] = c.get(t.type, 0) + 1
        return c

    assert counts(qwen_path) == {"q5_0": 133, "f32": 121, "q8_0": 13, "q6_k": 12, "q4_k": 12}
    assert counts(gemma_path) == {"f32": 109, "q5_0": 81, "q4_k": 27, "q8_0": 10, "q6_k": 9}
