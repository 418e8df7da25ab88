"""quanta._core.Tokenizer against Hugging Face's tokenizers built from the same GGUF files
(transformers.AutoTokenizer with gguf_file=...), token for token.

Qwen2's own tokenizer (tokenizer.json, transformers' Qwen2Tokenizer) normalizes text to NFC; transformers'
GGUF loader leaves that normalizer out. We follow Qwen2's tokenizer, so the Qwen reference is the GGUF-built
tokenizer with HF's NFC normalizer put back; on text that is already NFC both references agree and are checked.
"""

import copy
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import pytest
from tokenizers import normalizers
from transformers import AutoTokenizer

import quanta
from quanta import _core
from conftest import results_in_threads

CORPUS = [
    "",
    " ",
    "Hello, world!",
    "  two leading spaces, three trailing   ",
    "tabs\tand\t\tmore\ttabs\t",
    "line one\nline two\r\nline three\rend\n\n\n",
    "\r\n\r\n",
    "   \n  \n\t \n",
    "I'M don't YOU'LL we'Re it's THEY'VE she'd 'S 'ſt o'clock",
    "12345678901234567890 3.14159 1,000,000 0x7fff 1e-10",
    "日本語のテキスト、中文字符。한국어 텍스트",
    "مرحبا بالعالم، كيف حالك؟",
    "हिन्दी क्षत्रिय संस्कृतम्",
    "ภาษาไทย สวัสดีครับ",
    "Ελληνικά Русский текст Ümlaut Straße",
    "cafe\u0301 café nai\u0308ve A\u030a \u00c5 \u212b d\u0323\u0307 d\u0307\u0323",
    "a\u0301\u0302\u0303 e\u0323\u0302 \u1100\u1161\u11a8 \ud55c \u0915\u093c",
    "👩‍👩‍👧‍👦 👍🏽 🇩🇪🇯🇵 🏳️‍🌈 ❤️ 🙂 🌁",  # Gemma has no token for 🌁: byte fallback
    "emoji🙂glued😀to🦙text",
    "\u200b\u200d\ufeff zero widths",
    "nbsp\u00a0ideographic\u3000space\u2028sep\u0085nel\u001f\u001funit",
    "def f(x):\n    return {'a': [1, 2, 3]}  # comment\n",
    '#include <stdio.h>\nint main(void) { printf("%d\\n", 42); return 0; }\n',
    "fn main() -> Result<(), Box<dyn Error>> {\n\tlet v: Vec<u8> = vec![0xFF; 16];\n}",
    "SELECT * FROM users WHERE id = 42 AND name LIKE '%o''brien%';",
    '<div class="x">&nbsp;&amp;</div><!-- c -->',
    "    if (a &&& b) ||| c !== d ... ===>>> ~~~",
    "x" * 300 + " " + "y z" * 50,
    "a" + " " * 40 + "b" + "\t" * 35 + "c" + "\n" * 40 + "d",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝟙𝟚𝟛 ℌ ﬁ ① Ⅻ",
    "Mixed: abc123def ４５６ ٣٤٥ १२३",
    "<0x41> <unk> [PAD151665] ▁▁x",
    "<bos> inside <bos>text",
    "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
    "<start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\n",
    '<tool_call>{"name": "f"}</tool_call>',
    "<|endoftext|><|endoftext|>x<|im_end|",
]


@dataclass
class Pair:
    ours: _core.Tokenizer
    ref: object  # the Hugging Face reference
    gguf_ref: object  # exactly as AutoTokenizer builds it from the GGUF
    nfc: bool = False  # the tokenizer normalizes to NFC

    def ref_ids(self, text, add_special=True, special=True, tok=None):
        tok = tok or self.ref
        return tok(text, add_special_tokens=add_special, split_special_tokens=not special).input_ids


def _hf(path):
    path = Path(path)
    return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)


@pytest.fixture(scope="module")
def qwen(qwen_path, hf_gguf_tokenizer):
    gguf_ref = hf_gguf_tokenizer(qwen_path)
    ref = copy.deepcopy(gguf_ref)
    ref.backend_tokenizer.normalizer = normalizers.NFC()
    return Pair(_core.Tokenizer(qwen_path), ref, gguf_ref, nfc=True)


@pytest.fixture(scope="module")
def gemma(gemma_path, hf_gguf_tokenizer):
    ref = hf_gguf_tokenizer(gemma_path)
    return Pair(_core.Tokenizer(gemma_path), ref, ref)


@pytest.fixture(scope="module", params=["qwen", "gemma"])
def pair(request):
    return request.getfixturevalue(request.param)


def _mismatches(pair, texts, tok=None):
    bad = []
    for text in texts:
        for add_special in (True, False):
            for special in (True, False):
                ours = pair.ours.encode(text, add_bos=add_special, special=special)
                ref = pair.ref_ids(text, add_special, special, tok)
                if ours != ref:
                    bad.append((text, add_special, special, ours, ref))
    return bad


def test_corpus_is_large_and_varied():
    assert len(CORPUS) >= 30
    assert any(unicodedata.normalize("NFC", s) != s for s in CORPUS)


def test_encode_matches_hugging_face(pair):
    assert _mismatches(pair, CORPUS) == []


def test_qwen_matches_the_gguf_built_reference_on_nfc_text(qwen):
    nfc = [s for s in CORPUS if unicodedata.normalize("NFC", s) == s]
    assert len(nfc) >= 30
    assert _mismatches(qwen, nfc, tok=qwen.gguf_ref) == []


def test_qwen_normalizes_to_nfc(qwen):
    decomposed = "cafe\u0301 A\u030a \ud55c d\u0307\u0323"
    ids = qwen.ours.encode(decomposed)
    assert ids == qwen.ours.encode(unicodedata.normalize("NFC", decomposed))
    assert qwen.ours.decode(ids) == unicodedata.normalize("NFC", decomposed)
    assert ids != qwen.ref_ids(decomposed, tok=qwen.gguf_ref)  # the GGUF-built reference does not normalize


def test_decode_matches_hugging_face(pair):
    bad = []
    for text in CORPUS:
        for skip in (False, True):
            ids = pair.ours.encode(text)
            ours = pair.ours.decode(ids, skip_special=skip)
            ref = pair.ref.decode(pair.ref_ids(text), skip_special_tokens=skip)
            if ours != ref:
                bad.append((text, skip, ours, ref))
    assert bad == []


def test_decode_of_plain_text_gives_the_text_back(pair):
    for text in CORPUS:
        ids = pair.ours.encode(text, add_bos=False, special=False)
        expected = unicodedata.normalize("NFC", text) if pair.nfc else text.replace("\u2581", " ")
        assert pair.ours.decode(ids) == expected


def test_decode_of_broken_byte_sequences_matches_hugging_face(pair):
    # Token sequences no encoder produces: characters cut short, bytes out of order.
    ids = pair.ours.encode("👩‍👩‍👧 🌁 漢", add_bos=False)
    partial = [i for i in ids if not _is_utf8(pair.ours.token_bytes(i))]
    assert len(partial) >= 2
    cases = [partial[:1], partial[:2], partial[::-1], ids[:-2], ids[1:], ids[:1] + partial + ids[:1]]
    for seq in cases:
        assert pair.ours.decode(seq) == pair.ref.decode(seq), seq


def _stream(tok, ids):
    stream, pieces = _core.Utf8Stream(), []
    for i in ids:
        pieces.append(stream.push(tok.token_bytes(i)))
    pieces.append(stream.finish())
    return pieces


def test_utf8_stream_reassembles_text_token_by_token(pair):
    for text in CORPUS:
        ids = pair.ours.encode(text, add_bos=False, special=False)
        pieces = _stream(pair.ours, ids)
        assert "".join(pieces) == pair.ours.decode(ids)
        assert all("\ufffd" not in p for p in pieces)


def test_utf8_stream_holds_back_a_character_split_across_tokens(pair):
    text = "👩‍👩‍👧‍👦 🌁"  # Qwen cuts the joiners, Gemma the 🌁, into bytes
    ids = pair.ours.encode(text, add_bos=False)
    raw = [pair.ours.token_bytes(i) for i in ids]
    assert b"".join(raw) == text.encode()
    split = [i for i, b in enumerate(raw) if not _is_utf8(b)]
    assert split, "no token of the emoji cuts a character, so this test tests nothing"
    pieces = _stream(pair.ours, ids)
    assert "".join(pieces) == text
    assert any(p == "" for p in pieces[:-1])  # something was held back


def _is_utf8(b):
    try:
        b.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def test_utf8_stream_replaces_bytes_that_can_never_be_valid():
    s = _core.Utf8Stream()
    assert s.push(b"a\xff") == "a\ufffd"
    assert s.push(b"\x80\xbf") == "\ufffd\ufffd"  # continuation bytes with nothing to continue
    assert s.push(b"\xe2\x82") == ""
    assert s.push(b"\xac!") == "€!"
    assert s.push(b"\xf0\x9f") == ""
    assert s.finish() == "\ufffd"
    assert s.push(b"\xed\xa0\x80") == "\ufffd\ufffd\ufffd"  # a surrogate: as Python's errors="replace"
    assert b"\xed\xa0\x80".decode("utf-8", "replace") == "\ufffd\ufffd\ufffd"


@pytest.mark.parametrize("data", [b"\xff", b"abc\xc3", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf4\x90\x80\x80", b"a\x80b"])
def test_invalid_utf8_is_refused(pair, data):
    with pytest.raises(ValueError, match="UTF-8"):
        pair.ours.encode(data)


def test_bytes_and_str_encode_alike(pair):
    text = "héllo 🙂 <|im_end|>"
    assert pair.ours.encode(text.encode()) == pair.ours.encode(text)
    with pytest.raises(TypeError):
        pair.ours.encode(42)


def test_out_of_range_ids_are_refused(pair):
    n = pair.ours.n_vocab
    for bad in (n, -1, 2**40):
        with pytest.raises(ValueError):
            pair.ours.decode([1, bad])
        with pytest.raises(ValueError):
            pair.ours.token_bytes(bad)
        with pytest.raises(ValueError):
            pair.ours.is_end_of_generation(bad)


def test_vocabulary_facts_match_the_file_and_hugging_face(pair):
    tok, ref = pair.ours, pair.gguf_ref
    assert tok.n_vocab == len(ref)
    assert tok.bos == ref.bos_token_id
    assert tok.eos == ref.eos_token_id
    assert (ref("x").input_ids[0] == tok.bos) == tok.add_bos


def test_qwen_and_gemma_specifics(qwen, gemma):
    q, g = qwen.ours, gemma.ours
    assert not q.add_bos and g.add_bos
    im_end, endoftext = q.encode("<|im_end|><|endoftext|>")
    assert q.token_text(im_end) == "<|im_end|>" and q.is_control(im_end)
    assert q.is_end_of_generation(im_end) and q.is_end_of_generation(endoftext)
    assert not q.is_end_of_generation(q.encode("hello")[0])
    assert not q.is_end_of_generation(q.encode("<|im_start|>")[0])
    assert q.is_end_of_generation(q.encode("<|file_sep|>")[0])  # as llama.cpp: FIM separators end generation
    assert q.token_bytes(q.encode(" hello")[0]) == b" hello"
    (end_of_turn,) = g.encode("<end_of_turn>", add_bos=False)
    assert g.is_end_of_generation(end_of_turn) and g.is_end_of_generation(g.eos)
    assert not g.is_end_of_generation(g.bos)
    (space,) = g.encode(" ", add_bos=False)
    assert g.token_text(space) == "\u2581" and g.token_bytes(space) == b" "
    byte_tokens = g.encode("🌁", add_bos=False)  # a code point the vocabulary lacks: byte fallback
    assert [g.token_text(i) for i in byte_tokens] == ["<0xF0>", "<0x9F>", "<0x8C>", "<0x81>"]
    assert [g.token_bytes(i) for i in byte_tokens] == [b"\xf0", b"\x9f", b"\x8c", b"\x81"]


def test_encode_is_thread_safe(pair):
    text = "\n".join(CORPUS) * 3
    expected = pair.ours.encode(text)
    assert all(r == expected for r in results_in_threads(lambda: pair.ours.encode(text)))


def test_100kb_encodes_well_under_a_second(pair):
    text = (("\n".join(CORPUS) + "\n") * 60)[:100_000]
    assert len(text.encode()) >= 100_000
    start = time.perf_counter()
    ids = pair.ours.encode(text)
    elapsed = time.perf_counter() - start
    assert len(ids) > 10_000
    assert elapsed < 1.0, f"{elapsed:.2f} s for 100 KB"


# ---- other pre-tokenizers and SentencePiece settings, on files rewritten from the real ones ----------------

def _rewrite(src, dst, **changes):
    """A copy of src's metadata (no tensors) with some keys changed (None drops a key)."""
    f = quanta.GGUF(src)
    md, types = f.metadata, f.metadata_types
    with quanta.GGUFWriter(dst) as w:
        for key, value in md.items():
            if key in changes:
                value = changes[key]
            if value is not None:
                w.add_metadata(key, value, type=types[key])
        for key, value in changes.items():
            if key not in md and value is not None:
                w.add_metadata(key, value)
    return dst


@pytest.mark.parametrize("pre", ["llama-bpe", "default"])
def test_other_byte_level_pre_tokenizers_match_hugging_face(qwen_path, tmp_path, pre):
    path = _rewrite(qwen_path, tmp_path / f"{pre}.gguf", **{"tokenizer.ggml.pre": pre})
    ref = _hf(path)
    assert ref.backend_tokenizer.normalizer is None
    texts = [s for s in CORPUS if unicodedata.normalize("NFC", s) == s]
    assert _mismatches(Pair(_core.Tokenizer(path), ref, ref), texts) == []


def test_plain_llama_sentencepiece_matches_hugging_face(gemma_path, tmp_path):
    # Gemma's vocabulary declared as a plain llama one: merges ranked by score, a space prefix at the start.
    path = _rewrite(gemma_path, tmp_path / "llama.gguf",
                    **{"general.architecture": "llama", "tokenizer.ggml.add_space_prefix": True})
    ref = _hf(path)
    p = Pair(_core.Tokenizer(path), ref, ref)
    texts = CORPUS + [" hello", "▁hello", "   leading", "<bos>hello"]
    assert _mismatches(p, texts) == []
    for text in texts:
        assert p.ours.decode(p.ours.encode(text)) == ref.decode(p.ref_ids(text))


# ---- metadata that is missing or corrupt --------------------------------------------------------------------

BASE = {
    "general.architecture": ("llama", None),
    "tokenizer.ggml.model": ("gpt2", None),
    "tokenizer.ggml.pre": ("qwen2", None),
    "tokenizer.ggml.tokens": (["a", "b", "ab", "<|end|>"], "array[string]"),
    "tokenizer.ggml.token_type": ([1, 1, 1, 3], "array[i32]"),
    "tokenizer.ggml.merges": (["a b"], "array[string]"),
    "tokenizer.ggml.eos_token_id": (3, "u32"),
}


def _tiny(tmp_path, **changes):
    md = dict(BASE)
    md.update(changes)
    path = tmp_path / "tiny.gguf"
    with quanta.GGUFWriter(path) as w:
        for key, item in md.items():
            if item is not None:
                w.add_metadata(key, item[0], type=item[1])
    return str(path)


def test_tiny_vocabulary_works(tmp_path):
    tok = _core.Tokenizer(_tiny(tmp_path))
    assert tok.encode("abab<|end|>b") == [2, 2, 3, 1]
    assert tok.is_end_of_generation(3)
    assert tok.bos is None and tok.eos == 3


@pytest.mark.parametrize("changes, key", [
    ({"tokenizer.ggml.model": None}, "tokenizer.ggml.model"),
    ({"tokenizer.ggml.model": ("bert", None)}, "tokenizer.ggml.model"),
    ({"tokenizer.ggml.model": (7, "u32")}, "tokenizer.ggml.model"),
    ({"tokenizer.ggml.tokens": None}, "tokenizer.ggml.tokens"),
    ({"tokenizer.ggml.tokens": ([], "array[string]")}, "tokenizer.ggml.tokens"),
    ({"tokenizer.ggml.tokens": ([1, 2, 3, 4], "array[i32]")}, "tokenizer.ggml.tokens"),
    ({"tokenizer.ggml.token_type": ([1, 1, 1], "array[i32]")}, "tokenizer.ggml.token_type"),
    ({"tokenizer.ggml.token_type": ([1, 1, 1, 9], "array[i32]")}, "tokenizer.ggml.token_type"),
    ({"tokenizer.ggml.scores": (["x"] * 4, "array[string]")}, "tokenizer.ggml.scores"),
    ({"tokenizer.ggml.merges": None}, "tokenizer.ggml.merges"),
    ({"tokenizer.ggml.merges": (["a c"], "array[string]")}, "tokenizer.ggml.merges"),
    ({"tokenizer.ggml.merges": (["ab"], "array[string]")}, "tokenizer.ggml.merges"),
    ({"tokenizer.ggml.pre": ("no-such-pre", None)}, "tokenizer.ggml.pre"),
    ({"tokenizer.ggml.eos_token_id": (4, "u32")}, "tokenizer.ggml.eos_token_id"),
    ({"tokenizer.ggml.add_bos_token": (True, "bool")}, "tokenizer.ggml.bos_token_id"),
    ({"tokenizer.quanta.space_prefix": ("always", None)}, "tokenizer.quanta.space_prefix"),
    ({"tokenizer.quanta.space_prefix": (1, "u32")}, "tokenizer.quanta.space_prefix"),
])
def test_bad_tokenizer_metadata_is_a_model_error(tmp_path, changes, key):
    with pytest.raises(quanta.ModelError, match=key.replace(".", r"\.")):
        _core.Tokenizer(_tiny(tmp_path, **changes))


def test_a_gguf_file_object_works_too(qwen_path, qwen):
    tok = _core.Tokenizer(_core.GGUFFile.open(qwen_path))
    assert tok.encode(CORPUS[8]) == qwen.ours.encode(CORPUS[8])
