"""quanta._core.ClipTokenizer, built from a GGUF file's tokenizer.ggml.* metadata, against transformers'
CLIPTokenizer as diffusers loads it and calls it (padding="max_length", max_length=77, truncation=True), over
the real 49408-token CLIP vocabulary (tests/clip_vocab.py). SD1's pipelines pad with <|endoftext|>, SD2's
with "!". Every expected id comes from the Hugging Face tokenizer."""

import random
import unicodedata

import pytest

import quanta
from quanta import _core
from clip_vocab import clip_tokenizer, merges, vocab
from conftest import results_in_threads

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
PADS = {"sd1": EOS, "sd2": "!"}

HARD = [
    "",
    " ",
    "a photo of an astronaut riding a horse on mars",
    "A PHOTO Of An ASTRONAUT, MiXeD cAsE",
    "Hello, world! ... ?!?! (parens) [brackets] {braces} #hash @at $5 50% a&b a_b a-b a/b a\\b",
    "hello! hello!! !!! !a a! ! ",
    "don't it's we'll THEY'RE you've I'M she'd 'S ''s 'x o'clock rock'n'roll",
    "2024 1,000,000 3.14159 x1.5 4k 8K 1080p 0x7fff",
    "tabs\tand\t\tmore\ttabs\t",
    "line one\nline two\r\nline three\rend\n\n\n",
    "  two leading spaces, three trailing   ",
    "no\u00a0break\u00a0spaces and\u2003em\u3000ideographic\u0085next\u2028line",
    "\x0bvertical\x0cfeed \x1cfile\x1dgroup\x1erecord\x1funit separators",
    "zero\u200bwidth\u200cjoiners\u200d and \ufeffbom",
    "café cafe\u0301 naïve nai\u0308ve Ångström A\u030angstro\u0308m \u212b d\u0323\u0307 d\u0307\u0323",
    "ÀÉÎÕÜ àéîõü Straße STRASSE ﬁne ﬂow",
    "İstanbul ISTANBUL ıi ΑΘΗΝΑ ΟΔΟΣ σς Σ",
    "🐱 cat 👍🏽 thumbs 👩‍👩‍👧‍👦 family 🏳️‍🌈 flag ❤️ heart",
    "日本語のテキスト、中文字符。한국어 텍스트",
    "Привет, мир! ЁЛКА ёлка Україна",
    "مرحبا بالعالم हिन्दी ภาษาไทย",
    "a<|endoftext|>b",
    "<|endoftext|>",
    "<|startoftext|>a photo<|endoftext|><|endoftext|>",
    "<|ENDOFTEXT|>!",
    "<|EndOfText|><|endoftext|>|> <|endoftext <| endoftext |>",
    "!<|endoftext|>!",
    "masterpiece, best quality, (ultra-detailed:1.2), [[lowres]], {{art}}, <lora:x:0.8>",
]

LONG_PROMPT = " ".join(f"word{i % 37} Ünïcode, {i}" if i % 5 == 0 else f"token{i % 11}" for i in range(300))


@pytest.fixture(scope="module")
def clip_files(tmp_path_factory):
    """Per pipeline flavour: our tokenizer from a GGUF file holding only the tokenizer metadata, and HF's."""
    root = tmp_path_factory.mktemp("clip")
    v = vocab()
    tokens = sorted(v, key=v.get)
    out = {}
    for name, pad in PADS.items():
        path = root / f"{name}.gguf"
        _write(path, tokens, [" ".join(m) for m in merges()], v[BOS], v[EOS], v[pad])
        out[name] = (_core.ClipTokenizer(str(path)), clip_tokenizer(root / name, pad_token=pad))
    return out


def _write(path, tokens, merge_list, bos, eos, pad, model="clip"):
    with quanta.GGUFWriter(path) as w:
        w.add_metadata("tokenizer.ggml.model", model)
        w.add_metadata("tokenizer.ggml.tokens", tokens, type="array[string]")
        w.add_metadata("tokenizer.ggml.merges", merge_list, type="array[string]")
        for key, id in (("bos", bos), ("eos", eos), ("padding", pad)):
            if id is not None:
                w.add_metadata(f"tokenizer.ggml.{key}_token_id", id, type="u32")


def _ref(hf, text, max_length=77, pad=True):
    """What diffusers' encode_prompt gets from the tokenizer."""
    return hf(text, padding="max_length" if pad else False, max_length=max_length, truncation=True).input_ids


def _mismatches(ours, hf, texts, **kw):
    return [t for t in texts if ours.encode(t, **kw) != _ref(hf, t, **kw)]


@pytest.mark.parametrize("flavour", PADS)
def test_hard_strings_match_hugging_face(clip_files, flavour):
    ours, hf = clip_files[flavour]
    assert _mismatches(ours, hf, HARD) == []
    assert _mismatches(ours, hf, HARD, pad=False) == []


@pytest.mark.parametrize("flavour", PADS)
def test_a_300_word_prompt_is_cut_to_77_with_eos_last(clip_files, flavour):
    ours, hf = clip_files[flavour]
    expected = _ref(hf, LONG_PROMPT)
    assert len(hf(LONG_PROMPT).input_ids) > 200  # so truncation did cut it
    assert len(expected) == 77 and expected[-1] == hf.eos_token_id
    assert ours.encode(LONG_PROMPT) == expected
    assert ours.encode(LONG_PROMPT, pad=False) == expected
    # Special tokens in the text count towards the 75 the prompt may use.
    assert _mismatches(ours, hf, [EOS * 80, "a " + EOS * 74 + " b c", "x" * 400]) == []


@pytest.mark.parametrize("max_length", [2, 3, 10, 76, 78, 200])
def test_other_context_lengths_match_hugging_face(clip_files, max_length):
    ours, hf = clip_files["sd1"]
    texts = ["", "a photo", LONG_PROMPT, EOS * 5]
    assert _mismatches(ours, hf, texts, max_length=max_length) == []
    assert _mismatches(ours, hf, texts, max_length=max_length, pad=False) == []


def test_sd1_and_sd2_pad_differently(clip_files):
    """SD1 pads with <|endoftext|> (49407), SD2 with "!" (0), which is then also a special token in the text."""
    (ours1, hf1), (ours2, hf2) = clip_files["sd1"], clip_files["sd2"]
    for text in ["a cat", "hello!!", "!", "wow! a cat!!!"]:
        assert ours1.encode(text) == _ref(hf1, text)
        assert ours2.encode(text) == _ref(hf2, text)
    assert _ref(hf1, "a cat")[-1] == 49407 and _ref(hf2, "a cat")[-1] == 0
    assert _ref(hf1, "hello!!") != _ref(hf2, "hello!!")  # the difference is real, not only in the padding
    assert (ours1.pad, ours2.pad) == (hf1.pad_token_id, hf2.pad_token_id)


def test_vocabulary_facts_match_hugging_face(clip_files):
    for ours, hf in clip_files.values():
        assert ours.n_vocab == len(hf) == 49408
        assert (ours.bos, ours.eos, ours.pad) == (hf.bos_token_id, hf.eos_token_id, hf.pad_token_id)


# ---- fuzz ------------------------------------------------------------------------------------------------

PIECES = [
    "a", "photo", "Of", "CAT", "dOg", "x", "'s", "'T", "'re", "'VE", "'m", "'ll", "'d", "'", "''", "0", "7", "42",
    "3.5", ",", ".", "!", "!!", "?", "(", ")", "[", "]", ":", "-", "_", "/", "\\", "#", "<", ">", "|", "<|", "|>",
    " ", "  ", "\t", "\n", "\r\n", "\x0b", "\x0c", "\x1c", "\u00a0", "\u2003", "\u3000", "\u0085", "\u2028", "\u200b",
    "\u0301", "\u0308", "\u0307", "\u0323", "é", "É", "ñ", "Ñ", "ß", "ẞ", "İ", "ı", "Σ", "σ", "ς", "Ω", "\u212b", "ﬁ",
    "Ǆ", "ǅ", "Ⅻ", "²", "½", "٣", "🐱", "👍🏽", "👩‍👧", "🏳️‍🌈", "❤️", "日本", "中文", "한국어", "Привет", "ЁЖ",
    "مرحبا", "हिन्दी", "ไทย", BOS, EOS, "<|ENDOFTEXT|>", "<|StartOfText|>", "<|endoftext",
]


def _assigned_code_point(rng):
    """A random code point assigned in Python's Unicode (our tables' version, 14), and not a combining mark:
    tokenizers' NFC has older tables, which give class 0 to the 51 marks added since Unicode 9 (U+0C3C, U+1AC7,
    ...), so around those it composes differently from Unicode 14's NFC (and from ours). The marks of PIECES are
    old ones, on which all agree."""
    while True:
        cp = rng.choice([rng.randrange(0x20, 0x3000), rng.randrange(0x3000, 0x10000), rng.randrange(0x10000, 0x30000)])
        if not 0xD800 <= cp < 0xE000 and unicodedata.category(chr(cp)) != "Cn" and not unicodedata.combining(chr(cp)):
            return chr(cp)


def _fuzz_strings(n, seed=12):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        parts = [rng.choice(PIECES) if rng.random() < 0.8 else _assigned_code_point(rng)
                 for _ in range(rng.randrange(0, 40))]
        out.append("".join(parts))
    return out


@pytest.mark.parametrize("flavour", PADS)
def test_random_strings_match_hugging_face(clip_files, flavour):
    ours, hf = clip_files[flavour]
    texts = _fuzz_strings(400)
    assert _mismatches(ours, hf, texts) == []
    assert _mismatches(ours, hf, texts[:100], pad=False) == []


# ---- input and file errors --------------------------------------------------------------------------------

@pytest.mark.parametrize("data", [b"\xff", b"abc\xc3", b"\xc3(", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"a\xc0\xafb"])
def test_invalid_utf8_is_a_value_error(clip_files, data):
    ours, _ = clip_files["sd1"]
    with pytest.raises(ValueError):
        ours.encode(data)


def test_bytes_and_str_encode_alike_and_bad_arguments_raise(clip_files):
    ours, _ = clip_files["sd1"]
    for text in HARD:
        assert ours.encode(text.encode()) == ours.encode(text)
    with pytest.raises(ValueError):
        ours.encode("\ud800")  # a lone surrogate cannot be UTF-8
    with pytest.raises(ValueError, match="context length"):
        ours.encode("a", max_length=1)
    with pytest.raises(TypeError):
        ours.encode(3)


def test_encode_is_thread_safe(clip_files):
    ours, _ = clip_files["sd2"]
    texts = _fuzz_strings(50, seed=3)
    expected = [ours.encode(t) for t in texts]
    assert all(r == expected for r in results_in_threads(lambda: [ours.encode(t) for t in texts]))


def _tiny_tokens():
    v = vocab()
    symbols = sorted(v, key=v.get)[:512]  # the 256 byte symbols and the same with </w>
    return symbols + [BOS, EOS]


@pytest.mark.parametrize("change, key", [
    ({"bos": None}, "tokenizer.ggml.bos_token_id"),
    ({"eos": None}, "tokenizer.ggml.eos_token_id"),
    ({"pad": None}, "tokenizer.ggml.padding_token_id"),
    ({"pad": 600}, "tokenizer.ggml.padding_token_id"),
    ({"model": "gpt2"}, "tokenizer.ggml.model"),
    ({"tokens": _tiny_tokens()[1:], "bos": 511, "eos": 512, "pad": 512}, "tokenizer.ggml.tokens"),
    ({"merge_list": ["a b c"]}, "tokenizer.ggml.merges"),
])
def test_bad_metadata_is_a_model_error(tmp_path, change, key):
    args = {"tokens": _tiny_tokens(), "merge_list": [], "bos": 512, "eos": 513, "pad": 513, "model": "clip"}
    args.update(change)
    path = tmp_path / "bad.gguf"
    _write(path, **args)
    with pytest.raises(quanta.ModelError, match=key.replace(".", r"\.")):
        _core.ClipTokenizer(str(path))


def test_a_clip_vocabulary_is_not_an_llm_tokenizer(tmp_path):
    path = tmp_path / "clip.gguf"
    _write(path, _tiny_tokens(), [], 512, 513, 513)
    # Without merges a word is its byte symbols, the last with </w>.
    tok = _core.ClipTokenizer(_core.GGUFFile.open(str(path)))
    assert tok.encode("ab", pad=False) == [512, vocab()["a"], vocab()["b</w>"], 513]
    with pytest.raises(quanta.ModelError, match="clip"):
        _core.Tokenizer(str(path))
