"""quanta.converter.hf_tokenizer: a Hugging Face tokenizer folder to GGUF tokenizer metadata.

Each converted tokenizer is written to a GGUF file with no tensors, rebuilt from it by quanta's C++ tokenizer
(quanta._core.Tokenizer) and compared token for token with the folder's own tokenizer as transformers, tokenizers
or sentencepiece load it. For the two real models the arrays are also compared with those llama.cpp's converter
wrote into the real GGUF files.

The real models' folders are what transformers writes after loading the real GGUF files
(AutoTokenizer.from_pretrained(..., gguf_file=...).save_pretrained(...)): Qwen's as a byte-level tokenizer.json,
Gemma's as a SentencePiece-style tokenizer.json (byte fallback, spaces as "▁"). A Gemma tokenizer.model is rebuilt
from the real file's pieces, scores and types to check the SentencePiece path at full size.
"""

import inspect
import json
import shutil
import unicodedata

import pytest
import sentencepiece
from sentencepiece import sentencepiece_model_pb2
from tokenizers import Regex, Tokenizer, models, pre_tokenizers
from transformers import AutoTokenizer
from transformers.convert_slow_tokenizer import TikTokenConverter
from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX as QWEN2_REGEX

import quanta
from quanta import _core
from quanta.converter.hf_tokenizer import tokenizer_metadata
from quanta.errors import FormatError, ModelError, UnsupportedError
from hf_checkpoints import train_byte_level, train_sentencepiece
from test_tokenizer import CORPUS

LLAMA3_REGEX = inspect.signature(TikTokenConverter.__init__).parameters["pattern"].default
SPACE = "\u2581"
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


def _gguf(metadata, path, architecture="llama"):
    """metadata written to a GGUF file with no tensors, and quanta's tokenizer rebuilt from it."""
    with quanta.GGUFWriter(path) as w:
        w.add_metadata("general.architecture", architecture)
        for key, value, kind in metadata:
            w.add_metadata(key, value, type=kind)
    return _core.Tokenizer(str(path))


def _md(metadata):
    return {key: value for key, value, _ in metadata}


def _encode_mismatches(ours, ref, texts):
    """Texts that encode differently, over BOS on/off and special-token parsing on/off."""
    bad = []
    for text in texts:
        for add in (True, False):
            for special in (True, False):
                got = ours.encode(text, add_bos=add, special=special)
                want = ref(text, add_special_tokens=add, split_special_tokens=not special).input_ids
                if got != want:
                    bad.append((text, add, special, got, want))
    return bad


def _decode_mismatches(ours, ref, texts):
    bad = []
    for text in texts:
        ids = ours.encode(text)
        for skip in (False, True):
            got, want = ours.decode(ids, skip_special=skip), ref.decode(ids, skip_special_tokens=skip)
            if got != want:
                bad.append((text, skip, got, want))
    return bad


def _save_hf_folder(tokenizer, folder):
    tokenizer.save_pretrained(str(folder))
    return folder


def _nfc(texts):
    return [s for s in texts if unicodedata.normalize("NFC", s) == s]


# ---- Qwen: byte-level BPE tokenizer.json ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def qwen_folder(qwen_path, tmp_path_factory, hf_gguf_tokenizer):
    return _save_hf_folder(hf_gguf_tokenizer(qwen_path), tmp_path_factory.mktemp("qwen"))


@pytest.fixture(scope="module")
def qwen_converted(qwen_path, qwen_folder, tmp_path_factory):
    real = quanta.GGUF(qwen_path).metadata
    md = tokenizer_metadata(qwen_folder, len(real["tokenizer.ggml.tokens"]))
    ours = _gguf(md, tmp_path_factory.mktemp("qwen_gguf") / "tok.gguf", "qwen2")
    return real, md, ours


def test_qwen_arrays_equal_those_llama_cpp_wrote(qwen_converted):
    real, md, _ = qwen_converted
    ours = _md(md)
    assert ours["tokenizer.ggml.model"] == "gpt2"
    for key in ("tokens", "token_type", "merges", "bos_token_id", "eos_token_id", "padding_token_id",
                "add_bos_token"):
        assert ours[f"tokenizer.ggml.{key}"] == real[f"tokenizer.ggml.{key}"], key
    assert ours["tokenizer.chat_template"] == real["tokenizer.chat_template"]
    assert [kind for key, _, kind in md if key == "tokenizer.ggml.tokens"] == ["array[string]"]


def test_qwen_encodes_and_decodes_as_hugging_face(qwen_folder, qwen_converted):
    _, md, ours = qwen_converted
    # The tokenizer.json transformers writes has no normalizer, but its Qwen2Tokenizer class normalizes to NFC.
    assert _md(md)["tokenizer.ggml.pre"] == "qwen2"
    ref = AutoTokenizer.from_pretrained(str(qwen_folder))
    assert len(_nfc(CORPUS)) < len(CORPUS)  # the corpus has text that NFC changes
    assert _encode_mismatches(ours, ref, CORPUS) == []
    assert _decode_mismatches(ours, ref, CORPUS) == []


@pytest.mark.parametrize("normalizer, pre", [({"type": "NFC"}, "qwen2"), (None, "deepseek-r1-qwen")])
def test_qwen_as_a_generic_tokenizers_file(qwen_folder, qwen_path, tmp_path, normalizer, pre):
    # Loaded by the generic class, the tokenizer.json alone decides: NFC only when its normalizer says so.
    folder = tmp_path / "qwen"
    shutil.copytree(qwen_folder, folder)
    data = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    data["normalizer"] = normalizer
    (folder / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    n = len(quanta.GGUF(qwen_path).metadata["tokenizer.ggml.tokens"])
    md = tokenizer_metadata(folder, n)
    assert _md(md)["tokenizer.ggml.pre"] == pre
    ours = _gguf(md, tmp_path / "tok.gguf", "qwen2")
    ref = AutoTokenizer.from_pretrained(str(folder))
    assert (ref.backend_tokenizer.normalizer is None) == (normalizer is None)
    assert _encode_mismatches(ours, ref, CORPUS) == []


# ---- Gemma: SentencePiece-style tokenizer.json and a rebuilt tokenizer.model ---------------------------------

@pytest.fixture(scope="module")
def gemma_folder(gemma_path, tmp_path_factory, hf_gguf_tokenizer):
    return _save_hf_folder(hf_gguf_tokenizer(gemma_path), tmp_path_factory.mktemp("gemma"))


@pytest.fixture(scope="module")
def gemma_real(gemma_path):
    return quanta.GGUF(gemma_path).metadata


@pytest.fixture(scope="module")
def gemma_converted(gemma_folder, gemma_real):
    assert not (gemma_folder / "tokenizer.model").exists()  # source 3: tokenizer.json only
    return tokenizer_metadata(gemma_folder, len(gemma_real["tokenizer.ggml.tokens"]))


def test_gemma_json_arrays_equal_those_llama_cpp_wrote(gemma_converted, gemma_real):
    ours, real = _md(gemma_converted), gemma_real
    assert ours["tokenizer.ggml.model"] == "llama" and ours["tokenizer.ggml.pre"] == "default"
    for key in ("bos_token_id", "eos_token_id", "unknown_token_id", "padding_token_id", "add_bos_token",
                "add_space_prefix"):
        assert ours[f"tokenizer.ggml.{key}"] == real[f"tokenizer.ggml.{key}"], key
    tokens, types = ours["tokenizer.ggml.tokens"], ours["tokenizer.ggml.token_type"]
    real_tokens, real_types = real["tokenizer.ggml.tokens"], real["tokenizer.ggml.token_type"]
    assert len(tokens) == len(real_tokens) and len(types) == len(real_types)
    differ = [i for i in range(len(tokens)) if (tokens[i], types[i]) != (real_tokens[i], real_types[i])]
    # The runs of spaces are user-defined pieces of Gemma's tokenizer.model, spelled with spaces by llama.cpp.
    # transformers' GGUF loader leaves them out of the added tokens it saves, so the folder has them as plain
    # vocabulary entries spelled with "▁".
    spaces = [i for i, t in enumerate(real_tokens) if t.strip(" ") == "" and real_types[i] == USER_DEFINED]
    assert len(spaces) >= 20 and differ == spaces
    assert all(tokens[i] == real_tokens[i].replace(" ", SPACE) and types[i] == NORMAL for i in spaces)


@pytest.mark.parametrize("architecture", ["gemma3", "llama"])
def test_gemma_json_encodes_and_decodes_as_hugging_face(gemma_folder, gemma_converted, tmp_path, architecture):
    # gemma3: quanta ranks merges by position, as transformers does for Gemma GGUF files; llama: by our scores.
    ours = _gguf(gemma_converted, tmp_path / "tok.gguf", architecture)
    ref = AutoTokenizer.from_pretrained(str(gemma_folder))
    texts = CORPUS + ["<start_of_turn>user\n<unused0> <mask> [multimodal]\t\t", "x   y     z" + " " * 33]
    assert _encode_mismatches(ours, ref, texts) == []
    assert _decode_mismatches(ours, ref, texts) == []


def _gemma_tokenizer_model(real, folder):
    """Gemma's tokenizer.model and tokenizer_config.json rebuilt from the pieces llama.cpp copied into the GGUF."""
    proto = sentencepiece_model_pb2.ModelProto()
    spec = proto.trainer_spec
    spec.model_type = 2  # BPE
    spec.byte_fallback = True
    spec.unk_id, spec.bos_id = real["tokenizer.ggml.unknown_token_id"], real["tokenizer.ggml.bos_token_id"]
    spec.eos_id, spec.pad_id = real["tokenizer.ggml.eos_token_id"], real["tokenizer.ggml.padding_token_id"]
    tokens = real["tokenizer.ggml.tokens"]
    spec.unk_piece, spec.bos_piece = tokens[spec.unk_id], tokens[spec.bos_id]
    spec.eos_piece, spec.pad_piece = tokens[spec.eos_id], tokens[spec.pad_id]
    norm = proto.normalizer_spec
    norm.name, norm.add_dummy_prefix, norm.remove_extra_whitespaces = "identity", False, False
    added = {}
    for i, (text, kind, score) in enumerate(zip(tokens, real["tokenizer.ggml.token_type"],
                                                real["tokenizer.ggml.scores"])):
        piece = proto.pieces.add()
        piece.piece = text.replace(" ", SPACE) if kind == USER_DEFINED else text
        piece.score = score
        piece.type = UNKNOWN if i == spec.unk_id else kind  # llama.cpp made <unk> CONTROL from the added tokens
        if kind in (CONTROL, USER_DEFINED):
            added[str(i)] = {"content": text, "special": kind == CONTROL}
    folder.mkdir()
    (folder / "tokenizer.model").write_bytes(proto.SerializeToString())
    config = {"added_tokens_decoder": added, "bos_token": "<bos>", "eos_token": "<eos>", "unk_token": "<unk>",
              "pad_token": "<pad>", "add_bos_token": True, "add_eos_token": False}
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder


def test_gemma_tokenizer_model_converts_as_llama_cpp_did_and_encodes_as_sentencepiece(gemma_real, tmp_path):
    folder = _gemma_tokenizer_model(gemma_real, tmp_path / "gemma_spm")
    md = tokenizer_metadata(folder, len(gemma_real["tokenizer.ggml.tokens"]))
    ours = _md(md)
    for key, value in ours.items():
        if key != "tokenizer.chat_template":
            assert value == gemma_real[key], key
    # Plain SentencePiece semantics (merges by score): the llama architecture.
    tok = _gguf(md, tmp_path / "tok.gguf", "llama")
    sp = sentencepiece.SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))
    # SentencePiece reads a "▁" typed in the text as a space; GGUF vocabularies spell user-defined pieces with
    # spaces and match them in raw text, so text containing "▁" itself is left out.
    texts = [s for s in CORPUS if SPACE not in s] + ["x   y     z" + " " * 33, "a\n\n\nb\t\t<table>"]
    bad = [(s, tok.encode(s, add_bos=False, special=False), sp.encode(s)) for s in texts
           if tok.encode(s, add_bos=False, special=False) != sp.encode(s)]
    assert bad == []
    assert sp.bos_id() == 2
    assert all(tok.encode(s) == [sp.bos_id()] + sp.encode(s) for s in texts if "<" not in s)
    assert all(tok.decode(sp.encode(s)) == sp.decode(sp.encode(s)) for s in texts)


# ---- a small SentencePiece tokenizer.model, and the tokenizer.json transformers makes of it -------------------

@pytest.fixture(scope="module")
def spm_folder(tmp_path_factory):
    folder = train_sentencepiece(tmp_path_factory.mktemp("spm"), user_defined_symbols=["<tool>"],
                                 control_symbols=["<ctl>"])
    config = {
        "tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
        "add_bos_token": True, "add_eos_token": False, "legacy": False,
        "added_tokens_decoder": {"700": {"content": "<|extra|>", "special": True},
                                 "701": {"content": "<hi>", "special": False}},
        "chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "{{ x }}"}],
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder


def test_small_sentencepiece_model(spm_folder, tmp_path):
    md = tokenizer_metadata(spm_folder, 704)
    ours = _md(md)
    sp = sentencepiece.SentencePieceProcessor(model_file=str(spm_folder / "tokenizer.model"))
    n = sp.get_piece_size()
    assert n == 700
    assert ours["tokenizer.ggml.model"] == "llama" and ours["tokenizer.ggml.add_space_prefix"] is True
    assert ours["tokenizer.ggml.tokens"] == [sp.id_to_piece(i) for i in range(n)] + [
        "<|extra|>", "<hi>", "[PAD702]", "[PAD703]"]
    assert ours["tokenizer.ggml.scores"][:n] == [sp.get_score(i) for i in range(n)]
    expected_types = [UNKNOWN if sp.is_unknown(i) else CONTROL if sp.is_control(i) else BYTE if sp.is_byte(i)
                      else USER_DEFINED if sp.id_to_piece(i) == "<tool>" else NORMAL for i in range(n)]
    assert ours["tokenizer.ggml.token_type"] == expected_types + [CONTROL, USER_DEFINED, UNUSED, UNUSED]
    assert (ours["tokenizer.ggml.bos_token_id"], ours["tokenizer.ggml.eos_token_id"]) == (sp.bos_id(), sp.eos_id())
    assert ours["tokenizer.ggml.unknown_token_id"] == sp.unk_id()
    assert "tokenizer.ggml.padding_token_id" not in ours  # the trainer's pad_id is -1
    assert ours["tokenizer.chat_template"] == "{{ x }}"

    assert ours["tokenizer.quanta.space_prefix"] == "sentencepiece"

    tok = _gguf(md, tmp_path / "tok.gguf")
    texts = CORPUS + ["<tool>x  <ctl> <s> <|extra|><hi>", "\u2581\u2581x <0x41>", "<tool>", " <tool> x", "<tool><tool>"]
    # SentencePiece, the model's own tokenizer, puts its "▁" before the whole text, even text that starts with
    # whitespace, "▁" or a user-defined piece. It knows no control text and none of the tokens Hugging Face
    # adds (<|extra|>, <hi>), so it is the reference with special-token parsing off, on text without those.
    own = [s for s in texts if "<|extra|>" not in s and "<hi>" not in s]
    assert len([s for s in own if s[:1].isspace() or s[:1] == SPACE or s.startswith("<tool>")]) >= 8
    for s in own:
        want = sp.encode(s)
        assert tok.encode(s, add_bos=False, special=False) == want, s
        assert tok.encode(s, special=False) == [sp.bos_id()] + want, s
        assert tok.decode([sp.bos_id()] + want, skip_special=True) == sp.decode(want), s
    # transformers' LlamaTokenizer built from the same folder, with every setting on and off, for special-token
    # parsing and the added tokens; its Metaspace adds no "▁" before a leading space or user-defined piece,
    # so those texts are SentencePiece's alone.
    ref = AutoTokenizer.from_pretrained(str(spm_folder))
    plain = [s for s in texts if s and not s[0].isspace() and s[0] != SPACE and not s.startswith("<tool>")]
    assert len(plain) >= 30
    assert _encode_mismatches(tok, ref, plain) == []
    assert _decode_mismatches(tok, ref, plain) == []


def test_sentencepiece_style_tokenizer_json_from_the_small_model(spm_folder, tmp_path):
    # transformers turns the tokenizer.model into a tokenizer.json (Metaspace, merges from the scores).
    folder = tmp_path / "json_only"
    AutoTokenizer.from_pretrained(str(spm_folder)).save_pretrained(str(folder))
    (folder / "tokenizer.model").unlink(missing_ok=True)
    md = tokenizer_metadata(folder, 704)
    from_model = _md(tokenizer_metadata(spm_folder, 704))
    ours = _md(md)
    assert ours["tokenizer.ggml.tokens"] == from_model["tokenizer.ggml.tokens"]
    # <unk> is one of the json's added special tokens, so CONTROL (as llama.cpp types Gemma's); the
    # tokenizer.model types it UNKNOWN. Both are special text to quanta and llama.cpp.
    unk = from_model["tokenizer.ggml.unknown_token_id"]
    expected = list(from_model["tokenizer.ggml.token_type"])
    expected[unk] = CONTROL
    assert ours["tokenizer.ggml.token_type"] == expected
    assert ours["tokenizer.ggml.add_space_prefix"] is True and ours["tokenizer.ggml.add_bos_token"] is True
    tok = _gguf(md, tmp_path / "tok.gguf")
    ref = AutoTokenizer.from_pretrained(str(folder))
    texts = CORPUS + ["<tool>x  <ctl> <s> <|extra|><hi>"]
    assert _encode_mismatches(tok, ref, texts) == []
    assert _decode_mismatches(tok, ref, texts) == []


# ---- small byte-level BPE tokenizers trained here ------------------------------------------------------------

def _split_then_bytes(regex):
    return pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(regex), behavior="isolated"),
                                    pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])


@pytest.mark.parametrize("name, make, ignore_merges, pre", [
    ("llama3", lambda: _split_then_bytes(LLAMA3_REGEX), True, "llama-bpe"),
    ("llama3_merging", lambda: _split_then_bytes(LLAMA3_REGEX), False, "smaug-bpe"),
    ("qwen2", lambda: _split_then_bytes(QWEN2_REGEX), False, "deepseek-r1-qwen"),
    ("gpt2", lambda: pre_tokenizers.ByteLevel(add_prefix_space=False), False, "default"),
])
def test_small_byte_level_tokenizers(tmp_path, name, make, ignore_merges, pre):
    folder = train_byte_level(tmp_path / name, make(), ignore_merges)
    md = tokenizer_metadata(folder, 810)
    ours = _md(md)
    assert ours["tokenizer.ggml.model"] == "gpt2" and ours["tokenizer.ggml.pre"] == pre
    assert ours["tokenizer.ggml.add_bos_token"] is True and ours["tokenizer.ggml.bos_token_id"] == 0
    types = ours["tokenizer.ggml.token_type"]
    tool_call = ours["tokenizer.ggml.tokens"].index("<tool_call>")
    assert types[:3] == [CONTROL] * 3 and types[tool_call] == USER_DEFINED
    assert types[tool_call + 1:] == [UNUSED] * (810 - tool_call - 1)
    assert ours["tokenizer.chat_template"] == "{{ messages }}"
    tok = _gguf(md, tmp_path / "tok.gguf")
    ref = AutoTokenizer.from_pretrained(str(folder))
    texts = CORPUS + ["<tool_call>x<|im_end|> <|begin_of_text|>"]
    assert _encode_mismatches(tok, ref, texts) == []
    assert _decode_mismatches(tok, ref, texts) == []


def test_merges_as_strings_or_pairs_and_ids_from_config_json(tmp_path):
    folder = train_byte_level(tmp_path / "t", pre_tokenizers.ByteLevel(add_prefix_space=False))
    data = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    pairs = data["model"]["merges"]
    assert pairs and all(isinstance(m, list) for m in pairs)  # what tokenizers writes today
    as_pairs = _md(tokenizer_metadata(folder, 810))
    data["model"]["merges"] = [" ".join(m) for m in pairs]  # what older files have
    data["post_processor"] = None
    (folder / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    (folder / "tokenizer_config.json").write_text("{}")
    (folder / "config.json").write_text(json.dumps({"bos_token_id": 1, "eos_token_id": [2, 0]}))
    as_strings = _md(tokenizer_metadata(folder, 810))
    assert as_strings["tokenizer.ggml.merges"] == as_pairs["tokenizer.ggml.merges"] == [" ".join(m) for m in pairs]
    assert (as_strings["tokenizer.ggml.bos_token_id"], as_strings["tokenizer.ggml.eos_token_id"]) == (1, 2)
    assert "tokenizer.ggml.add_bos_token" not in as_strings  # nothing says, and gpt2 files add none by default
    data["model"]["merges"].append("Ġ nosuchtoken")
    (folder / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ModelError, match="nosuchtoken"):
        tokenizer_metadata(folder, 810)


def test_added_tokens_that_look_special_are_control(tmp_path):
    folder = train_byte_level(tmp_path / "t", _split_then_bytes(LLAMA3_REGEX), True)
    data = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    n = len(data["model"]["vocab"]) + len(data["added_tokens"])
    looks = ["<|tool|>", "<\uff5cUser\uff5c>", "<unused7>", "<pad>", "<mask>"]
    plain = ["<think>", "<|partial", "[unused]"]
    for k, text in enumerate(looks + plain):
        data["added_tokens"].append({"id": n + k, "content": text, "single_word": False, "lstrip": False,
                                     "rstrip": False, "normalized": False, "special": False})
    (folder / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    ours = _md(tokenizer_metadata(folder, n + 10))
    assert ours["tokenizer.ggml.tokens"][n:] == looks + plain + ["[PAD" + str(n + 8) + "]", f"[PAD{n + 9}]"]
    assert ours["tokenizer.ggml.token_type"][n:] == [CONTROL] * 5 + [USER_DEFINED] * 3 + [UNUSED] * 2


# ---- errors --------------------------------------------------------------------------------------------------

def _save(tok, folder):
    folder.mkdir()
    tok.save(str(folder / "tokenizer.json"))
    return folder


def test_word_piece_and_unigram_are_unsupported(tmp_path):
    word_piece = _save(Tokenizer(models.WordPiece({"[UNK]": 0, "a": 1, "##b": 2}, unk_token="[UNK]")),
                       tmp_path / "wp")
    with pytest.raises(UnsupportedError, match="WordPiece"):
        tokenizer_metadata(word_piece, 3)
    unigram = _save(Tokenizer(models.Unigram([("<unk>", 0.0), ("a", -1.0), ("b", -2.0)], 0, False)),
                    tmp_path / "uni")
    with pytest.raises(UnsupportedError, match="Unigram"):
        tokenizer_metadata(unigram, 3)


def test_no_tokenizer_is_unsupported(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(UnsupportedError, match="no tokenizer"):
        tokenizer_metadata(tmp_path, 10)


def test_corrupt_files_are_format_errors(tmp_path, spm_folder):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "tokenizer.json").write_text('{"model": {"type": "BPE", "vocab": {"a": 0}')
    with pytest.raises(FormatError, match="tokenizer.json"):
        tokenizer_metadata(bad, 10)
    (bad / "tokenizer.json").unlink()
    (bad / "tokenizer_config.json").write_text("[1, 2")
    (bad / "tokenizer.model").write_bytes((spm_folder / "tokenizer.model").read_bytes())
    with pytest.raises(FormatError, match="tokenizer_config.json"):
        tokenizer_metadata(bad, 1000)
    (bad / "tokenizer_config.json").unlink()
    (bad / "tokenizer.model").write_bytes(b"\xff\xff\xff not a protobuf")
    with pytest.raises(FormatError, match="tokenizer.model"):
        tokenizer_metadata(bad, 1000)


def test_unknown_pre_tokenizer_regex_is_unsupported(tmp_path):
    folder = train_byte_level(tmp_path / "t", _split_then_bytes(r"\w+|[^\w\s]+|\s+"))
    with pytest.raises(UnsupportedError, match=r"unknown pre-tokenizer regex '\\\\w\+"):
        tokenizer_metadata(folder, 810)


def test_more_tokens_than_the_model_has_rows_is_a_model_error(tmp_path):
    folder = train_byte_level(tmp_path / "t", pre_tokenizers.ByteLevel(add_prefix_space=False))
    with pytest.raises(ModelError, match="vocab_size is 100"):
        tokenizer_metadata(folder, 100)


def _spm_variant(spm_folder, folder, edit):
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString((spm_folder / "tokenizer.model").read_bytes())
    edit(proto)
    folder.mkdir()
    (folder / "tokenizer.model").write_bytes(proto.SerializeToString())
    return folder


@pytest.mark.parametrize("name, edit, match", [
    ("nfkc", lambda p: setattr(p.normalizer_spec, "name", "nmt_nfkc"), "normaliser 'nmt_nfkc'"),
    ("collapse", lambda p: setattr(p.normalizer_spec, "remove_extra_whitespaces", True), "remove_extra_whitespaces"),
    ("unigram", lambda p: setattr(p.trainer_spec, "model_type", 1), "unigram"),
])
def test_sentencepiece_models_llama_tokenization_cannot_reproduce(spm_folder, tmp_path, name, edit, match):
    folder = _spm_variant(spm_folder, tmp_path / name, edit)
    with pytest.raises(UnsupportedError, match=match):
        tokenizer_metadata(folder, 700)


def test_bpe_json_whose_merges_score_merging_cannot_follow_is_unsupported(tmp_path):
    # "bc" merges before "ab", so Hugging Face leaves "a" + "bc" apart; merging by score would join them.
    vocab = {"<0x61>": 0, "a": 1, "b": 2, "c": 3, "bc": 4, "ab": 5, "abc": 6}
    tok = Tokenizer(models.BPE(vocab, [("b", "c"), ("a", "b"), ("ab", "c")], byte_fallback=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="never", split=False)
    folder = _save(tok, tmp_path / "t")
    with pytest.raises(UnsupportedError, match="'a' \\+ 'bc'"):
        tokenizer_metadata(folder, 7)
    assert AutoTokenizer.from_pretrained(str(folder))("abc", add_special_tokens=False).input_ids == [1, 4]
