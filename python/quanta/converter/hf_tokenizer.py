"""The tokenizer of a Hugging Face model folder as GGUF metadata.

`tokenizer_metadata(folder, vocab_size)` returns the ``tokenizer.*`` keys in the conventions llama.cpp reads, so
that quanta's C++ tokenizer (csrc/text) and llama.cpp rebuild the folder's tokenizer from the GGUF file. Sources,
in order of preference:

1. ``tokenizer.json`` with a byte-level BPE model -> ``gpt2`` (the pre-tokenizer named by its split regex).
2. ``tokenizer.model`` (a SentencePiece BPE model with identity normalisation) -> ``llama``.
3. ``tokenizer.json`` with a BPE model that falls back to bytes and spells spaces "▁" (how Hugging Face stores
   SentencePiece-style tokenizers such as Llama 2, Mistral and Gemma) -> ``llama``, with scores chosen so that
   merging the adjacent pair whose joined piece scores highest equals applying the lowest-ranked merge.

Anything else raises UnsupportedError; unreadable files raise FormatError; a vocabulary that does not fit the
model (more tokens than embedding rows) raises ModelError.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from quanta.errors import FormatError, ModelError, UnsupportedError

from .json_file import read_json

# tokenizer.ggml.token_type values (SentencePiece's piece types use the same numbers).
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

SPACE = "\u2581"  # SentencePiece's visible space, "▁"

# Split regexes of Hugging Face byte-level pre-tokenizers, as tokenizer.json files store them.
GPT2_REGEX = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_REGEX = LLAMA3_REGEX.replace(r"\p{N}{1,3}", r"\p{N}")

_BYTE_TOKEN = re.compile(r"<0x[0-9A-Fa-f]{2}>")
_PAD_SCORE = -1000.0  # llama.cpp's score for added and padding tokens
_SPECIAL_NAMES = ("bos", "eos", "unk", "pad")
_ID_KEYS = {"bos": "bos_token_id", "eos": "eos_token_id", "unk": "unknown_token_id", "pad": "padding_token_id"}


def tokenizer_metadata(folder: "str | Path", vocab_size: int) -> list[tuple[str, object, str]]:
    """[(key, value, gguf_type), ...] e.g. ("tokenizer.ggml.tokens", [...], "array[string]").

    `vocab_size` is config.json's vocab_size (embedding rows): ids without a token up to it become "[PAD{id}]"
    tokens of type UNUSED, as llama.cpp's converter writes them.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a folder")
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 1:
        raise ValueError(f"vocab_size must be a positive int, not {vocab_size!r}")

    config = read_json(folder / "tokenizer_config.json") or {}
    tokenizer_json_path = folder / "tokenizer.json"
    tj = read_json(tokenizer_json_path)
    if tj is not None and not isinstance(tj.get("model"), dict):
        raise FormatError(f"{tokenizer_json_path}: not a Hugging Face tokenizers file (no 'model' object)")
    spm_path = folder / "tokenizer.model"

    if tj is not None and _is_byte_level_bpe(tj):
        vocab = _from_byte_level_json(tj, tokenizer_json_path, config.get("tokenizer_class"))
    elif spm_path.is_file():
        vocab = _from_sentencepiece(spm_path, config, folder)
    elif tj is not None:
        vocab = _from_sentencepiece_style_json(tj, tokenizer_json_path)
    else:
        raise UnsupportedError(f"{folder}: no tokenizer found (neither tokenizer.json nor tokenizer.model)")

    vocab.apply_folder_settings(config, read_json(folder / "config.json") or {}, folder)
    vocab.pad_to(vocab_size, folder)
    return vocab.metadata(_chat_template(config, folder))


# ---- the vocabulary every source builds --------------------------------------------------------------------

@dataclass
class _Vocab:
    model: str  # "gpt2" or "llama"
    pre: str
    tokens: list[str]
    types: list[int]
    scores: list[float] | None = None  # llama only
    merges: list[str] | None = None  # gpt2 only
    ids: dict[str, int] = field(default_factory=dict)  # bos/eos/unk/pad the tokenizer itself names
    add_bos: bool | None = None
    add_eos: bool | None = None
    add_space_prefix: bool | None = None  # llama only
    # llama only: "sentencepiece" when the "▁" prefix goes before the text even if it starts with a space or a
    # user-defined piece, as SentencePiece itself does (csrc/text/vocab.h); None: Hugging Face's Metaspace rule.
    space_prefix: str | None = None
    added: dict[str, int] = field(default_factory=dict)  # added-token text -> id, looked up first

    def lookup(self, text: str) -> int | None:
        """The id of a token named by its text (added tokens first, then the vocabulary's own spelling)."""
        if text in self.added:
            return self.added[text]
        spelled = _byte_level_text(text) if self.model == "gpt2" else text.replace(" ", SPACE)
        for candidate in (text, spelled):
            for i, t in enumerate(self.tokens):
                if t == candidate:
                    return i
        return None

    def apply_folder_settings(self, config: dict, model_config: dict, folder: Path) -> None:
        """Special tokens and flags from tokenizer_config.json (which wins) and config.json (which fills gaps)."""
        for name in _SPECIAL_NAMES:
            text = _token_content(config.get(f"{name}_token"))
            if text is not None:
                found = self.lookup(text)
                if found is not None:
                    self.ids[name] = found
        for name in ("bos", "eos", "pad"):
            if name not in self.ids:
                value = model_config.get(f"{name}_token_id")
                if isinstance(value, list) and value:
                    value = value[0]
                if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                    self.ids[name] = value

        for key in ("add_bos_token", "add_eos_token"):
            value = config.get(key)
            if isinstance(value, bool):
                setattr(self, key[:-len("_token")], value)
        prefix = config.get("add_prefix_space")
        if isinstance(prefix, bool):
            if self.model == "llama":
                self.add_space_prefix = prefix
            elif prefix:
                raise UnsupportedError(f"{folder}: tokenizer_config.json asks for add_prefix_space, which byte-level "
                                       f"BPE in GGUF (llama.cpp, quanta) cannot express")
        if self.model == "llama":
            if self.add_bos is None:  # SentencePiece tokenizers put BOS first unless told otherwise
                self.add_bos = "bos" in self.ids
            if self.add_space_prefix is None:
                self.add_space_prefix = False

    def pad_to(self, vocab_size: int, folder: Path) -> None:
        n = len(self.tokens)
        if n > vocab_size:
            raise ModelError(f"{folder}: the tokenizer has {n} tokens but the model's vocab_size is {vocab_size}")
        for i in range(n, vocab_size):
            self.tokens.append(f"[PAD{i}]")
            self.types.append(UNUSED)
            if self.scores is not None:
                self.scores.append(_PAD_SCORE)
        for name, i in self.ids.items():
            if not 0 <= i < vocab_size:
                raise ModelError(f"{folder}: the {name} token id {i} is outside the {vocab_size}-token vocabulary")
        for flag, name in (("add_bos", "bos"), ("add_eos", "eos")):
            if getattr(self, flag) and name not in self.ids:
                raise ModelError(f"{folder}: the tokenizer adds a {name.upper()} token but names none")

    def metadata(self, chat_template: str | None) -> list[tuple[str, object, str]]:
        md = [
            ("tokenizer.ggml.model", self.model, "string"),
            ("tokenizer.ggml.pre", self.pre, "string"),
            ("tokenizer.ggml.tokens", self.tokens, "array[string]"),
        ]
        if self.scores is not None:
            md.append(("tokenizer.ggml.scores", self.scores, "array[f32]"))
        md.append(("tokenizer.ggml.token_type", self.types, "array[i32]"))
        if self.merges is not None:
            md.append(("tokenizer.ggml.merges", self.merges, "array[string]"))
        for name in _SPECIAL_NAMES:
            if name in self.ids:
                md.append((f"tokenizer.ggml.{_ID_KEYS[name]}", self.ids[name], "u32"))
        for key, value in (("add_bos_token", self.add_bos), ("add_eos_token", self.add_eos),
                           ("add_space_prefix", self.add_space_prefix)):
            if value is not None:
                md.append((f"tokenizer.ggml.{key}", value, "bool"))
        if self.add_space_prefix and self.space_prefix is not None:
            # quanta's own key (llama.cpp ignores it): llama.cpp always prefixes; transformers' GGUF loader never
            # before a space, so without it quanta follows transformers.
            md.append(("tokenizer.quanta.space_prefix", self.space_prefix, "string"))
        if chat_template is not None:
            md.append(("tokenizer.chat_template", chat_template, "string"))
        return md


def _looks_special(text: str) -> bool:
    """Added tokens that llama.cpp makes CONTROL even when the file does not mark them special."""
    return (text in ("<pad>", "<mask>")
            or (text.startswith("<|") and text.endswith("|>"))
            or (text.startswith("<\uff5c") and text.endswith("\uff5c>"))
            or (text.startswith("<unused") and text.endswith(">")))


def _added_type(text: str, special: bool) -> int:
    return CONTROL if special or _looks_special(text) else USER_DEFINED


def _mark_padding(tokens: list[str], types: list[int]) -> None:
    """A token spelled "[PAD{its id}]" is the filler llama.cpp's converter writes: UNUSED."""
    for i, t in enumerate(tokens):
        if t.startswith("[PAD") and t == f"[PAD{i}]":
            types[i] = UNUSED


def _place(tokens: list[str | None], i: int, text: str, source: Path) -> None:
    if i < 0:
        raise ModelError(f"{source}: token {text!r} has the negative id {i}")
    if i >= len(tokens):
        tokens.extend([None] * (i + 1 - len(tokens)))
    tokens[i] = text


def _fill_gaps(tokens: list[str | None]) -> None:
    """Ids no token claims become "[PAD{id}]" (which _mark_padding then makes UNUSED)."""
    for i, t in enumerate(tokens):
        if t is None:
            tokens[i] = f"[PAD{i}]"


# ---- files ---------------------------------------------------------------------------------------------------



def _token_content(value) -> str | None:
    """A special token as tokenizer_config.json writes it: a string or an AddedToken object."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    return None


def _chat_template(config: dict, folder: Path) -> str | None:
    template = config.get("chat_template")
    if isinstance(template, list):  # [{"name": ..., "template": ...}, ...]
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    if isinstance(template, str):
        return template
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    extra = read_json(folder / "chat_template.json")
    if extra and isinstance(extra.get("chat_template"), str):
        return extra["chat_template"]
    return None


def _parts(node, kind: str) -> list[dict]:
    """The components of a normalizer / pre-tokenizer / decoder / post-processor, Sequences flattened."""
    if not isinstance(node, dict):
        return []
    if node.get("type") == "Sequence":
        out = []
        for child in node.get(kind, []):
            out.extend(_parts(child, kind))
        return out
    return [node]


def _describe(node) -> str:
    text = json.dumps(node, ensure_ascii=False)
    return text if len(text) <= 200 else text[:197] + "..."


def _template_flags(tj: dict, added: dict[str, int]) -> tuple[bool | None, bool | None, dict[str, int]]:
    """add_bos / add_eos and the token ids a TemplateProcessing post-processor puts around a single text."""
    for proc in _parts(tj.get("post_processor"), "processors"):
        if proc.get("type") != "TemplateProcessing":
            continue
        single = proc.get("single") or []
        specials = proc.get("special_tokens") or {}

        def special_id(item):
            if not isinstance(item, dict) or "SpecialToken" not in item:
                return None
            name = item["SpecialToken"].get("id")
            ids = (specials.get(name) or {}).get("ids") or []
            return ids[0] if ids else added.get(name)

        first = special_id(single[0]) if single else None
        last = special_id(single[-1]) if len(single) > 1 else None
        ids = {}
        if first is not None:
            ids["bos"] = first
        if last is not None:
            ids["eos"] = last
        return first is not None, last is not None, ids
    return None, None, {}


# ---- 1. byte-level BPE tokenizer.json ------------------------------------------------------------------------

def _is_byte_level_bpe(tj: dict) -> bool:
    if tj["model"].get("type", "BPE") != "BPE":
        return False
    return any(p.get("type") == "ByteLevel" for p in _parts(tj.get("pre_tokenizer"), "pretokenizers")) or any(
        d.get("type") == "ByteLevel" for d in _parts(tj.get("decoder"), "decoders"))


def _byte_level_pre(tj: dict, source: Path, tokenizer_class) -> str:
    model = tj["model"]
    pre = _parts(tj.get("pre_tokenizer"), "pretokenizers")
    if len(pre) == 1 and pre[0].get("type") == "ByteLevel" and pre[0].get("use_regex", True):
        regex, byte_level = GPT2_REGEX, pre[0]
    elif (len(pre) == 2 and pre[0].get("type") == "Split" and pre[1].get("type") == "ByteLevel"
          and not pre[1].get("use_regex", True) and pre[0].get("behavior") == "Isolated"
          and not pre[0].get("invert", False) and "Regex" in (pre[0].get("pattern") or {})):
        regex, byte_level = pre[0]["pattern"]["Regex"], pre[1]
    else:
        raise UnsupportedError(f"{source}: byte-level BPE pre-tokenizer not supported: "
                               f"{_describe(tj.get('pre_tokenizer'))}")
    if byte_level.get("add_prefix_space", False):
        raise UnsupportedError(f"{source}: the ByteLevel pre-tokenizer adds a prefix space, which byte-level BPE "
                               f"in GGUF (llama.cpp, quanta) cannot express")

    normalizer = tj.get("normalizer")
    nfc = normalizer is not None and _parts(normalizer, "normalizers") == [{"type": "NFC"}]
    if normalizer is not None and not nfc:
        raise UnsupportedError(f"{source}: byte-level BPE normalizer not supported: {_describe(normalizer)}")
    ignore_merges = bool(model.get("ignore_merges", False))

    if regex == QWEN2_REGEX and not ignore_merges:
        # quanta's "qwen2" normalizes to NFC as Qwen2's tokenizer does (its tokenizer.json, or transformers'
        # Qwen2Tokenizer class whatever the file says); "deepseek-r1-qwen" is the same split without NFC.
        # llama.cpp reads both names as qwen2.
        qwen_class = tokenizer_class in ("Qwen2Tokenizer", "Qwen2TokenizerFast")
        return "qwen2" if nfc or qwen_class else "deepseek-r1-qwen"
    if regex == LLAMA3_REGEX and not nfc:
        return "llama-bpe" if ignore_merges else "smaug-bpe"
    if regex == GPT2_REGEX and not nfc and not ignore_merges:
        return "default"
    known = {QWEN2_REGEX: "Qwen2", LLAMA3_REGEX: "Llama 3", GPT2_REGEX: "GPT-2"}
    if regex in known:
        raise UnsupportedError(f"{source}: the {known[regex]} pre-tokenizer regex with "
                               f"{'an NFC normalizer' if nfc else 'no normalizer'} and ignore_merges={ignore_merges} "
                               f"is not supported")
    raise UnsupportedError(f"{source}: unknown pre-tokenizer regex {regex!r} (supported: Qwen2, Llama 3, GPT-2)")


def _refuse_bpe_options(model: dict, source: Path, kind: str) -> None:
    """Word prefixes/suffixes and dropout: BPE options neither quanta nor llama.cpp tokenizes with."""
    for key in ("continuing_subword_prefix", "end_of_word_suffix"):
        if model.get(key):
            raise UnsupportedError(f"{source}: {kind} with {key} {model[key]!r} is not supported")
    if model.get("dropout"):
        raise UnsupportedError(f"{source}: BPE dropout is not supported")


def _from_byte_level_json(tj: dict, source: Path, tokenizer_class) -> _Vocab:
    model = tj["model"]
    _refuse_bpe_options(model, source, "byte-level BPE")
    if model.get("byte_fallback"):
        raise UnsupportedError(f"{source}: byte-level BPE with byte_fallback is not supported")
    pre = _byte_level_pre(tj, source, tokenizer_class)

    tokens, added = _json_tokens(tj, source)
    types = [NORMAL] * len(tokens)
    for a in tj.get("added_tokens") or []:
        types[a["id"]] = _added_type(a["content"], bool(a.get("special")))
    _fill_gaps(tokens)
    _mark_padding(tokens, types)
    unk = model.get("unk_token")
    ids = {}
    if isinstance(unk, str) and unk in added:
        ids["unk"] = added[unk]
    elif isinstance(unk, str) and unk in model["vocab"]:
        ids["unk"] = model["vocab"][unk]
        types[ids["unk"]] = UNKNOWN

    merges = []
    vocab = model["vocab"]
    for m in model.get("merges") or []:
        if isinstance(m, str):
            pair = m.split(" ")
        elif isinstance(m, list) and all(isinstance(x, str) for x in m):
            pair = m
        else:
            raise FormatError(f"{source}: merge {m!r} is neither 'a b' nor ['a', 'b']")
        if len(pair) != 2 or not pair[0] or not pair[1]:
            raise UnsupportedError(f"{source}: merge {m!r} is not two space-free tokens, which GGUF cannot store")
        if pair[0] not in vocab or pair[1] not in vocab or pair[0] + pair[1] not in vocab:
            raise ModelError(f"{source}: merge {m!r} names a token that is not in the vocabulary")
        merges.append(f"{pair[0]} {pair[1]}")

    add_bos, add_eos, template_ids = _template_flags(tj, added)
    for name, i in template_ids.items():
        ids.setdefault(name, i)
    return _Vocab("gpt2", pre, tokens, types, merges=merges, ids=ids, add_bos=add_bos, add_eos=add_eos, added=added)


def _json_tokens(tj: dict, source: Path) -> tuple[list[str], dict[str, int]]:
    """Token texts by id from tokenizer.json's vocab and added tokens (the added text wins on a shared id)."""
    vocab = tj["model"].get("vocab")
    if not isinstance(vocab, dict):
        raise FormatError(f"{source}: the model's 'vocab' is not an object of token -> id")
    tokens: list[str | None] = []
    for text, i in vocab.items():
        if not isinstance(i, int) or isinstance(i, bool):
            raise FormatError(f"{source}: token {text!r} has the id {i!r}")
        if i < len(tokens) and tokens[i] is not None:
            raise ModelError(f"{source}: tokens {tokens[i]!r} and {text!r} share the id {i}")
        _place(tokens, i, text, source)
    added = {}
    for a in tj.get("added_tokens") or []:
        if not isinstance(a, dict) or not isinstance(a.get("id"), int) or not isinstance(a.get("content"), str):
            raise FormatError(f"{source}: added token {a!r} lacks an integer id or a content string")
        _place(tokens, a["id"], a["content"], source)
        added[a["content"]] = a["id"]
    return tokens, added


_BYTE_ALPHABET: dict[int, str] = {}


def _byte_level_text(text: str) -> str:
    """text in the byte-level BPE alphabet (each UTF-8 byte as one printable character)."""
    if not _BYTE_ALPHABET:
        printable = [b for b in range(256) if 33 <= b <= 126 or 161 <= b <= 172 or b >= 174]
        nxt = 256
        for b in range(256):
            if b in printable:
                _BYTE_ALPHABET[b] = chr(b)
            else:
                _BYTE_ALPHABET[b] = chr(nxt)
                nxt += 1
    return "".join(_BYTE_ALPHABET[b] for b in text.encode("utf-8"))


# ---- 2. SentencePiece tokenizer.model ------------------------------------------------------------------------

def _from_sentencepiece(path: Path, config: dict, folder: Path) -> _Vocab:
    try:
        from sentencepiece import sentencepiece_model_pb2
    except ImportError as e:
        # Both are dependencies of quanta, so this is a broken environment, not a missing option.
        raise UnsupportedError(f"{path}: reading tokenizer.model needs sentencepiece and protobuf, which quanta "
                               f"depends on but cannot import here (reinstall them): {e}") from None
    proto = sentencepiece_model_pb2.ModelProto()
    try:
        proto.ParseFromString(path.read_bytes())
    except Exception as e:  # protobuf's DecodeError and friends
        raise FormatError(f"{path}: not a SentencePiece model ({type(e).__name__}: {e})") from None
    if not proto.pieces:
        raise FormatError(f"{path}: not a SentencePiece model (no pieces)")

    trainer, norm = proto.trainer_spec, proto.normalizer_spec
    kinds = {1: "unigram", 2: "BPE", 3: "word", 4: "char"}
    if trainer.model_type != 2:
        raise UnsupportedError(f"{path}: a SentencePiece {kinds.get(trainer.model_type, trainer.model_type)} model; "
                               f"only BPE models can be rebuilt by llama-style (score-merging) tokenization")
    # llama.cpp and quanta tokenize raw text with spaces as "▁" and nothing else: the model must not normalise.
    if (norm.name not in ("", "identity") or (norm.name == "" and norm.precompiled_charsmap)
            or norm.normalization_rule_tsv):
        raise UnsupportedError(f"{path}: the SentencePiece normaliser {norm.name or 'custom'!r} rewrites text, which "
                               f"llama-style tokenization cannot reproduce; only 'identity' is supported")
    if norm.remove_extra_whitespaces:
        raise UnsupportedError(f"{path}: the SentencePiece model collapses runs of whitespace "
                               f"(remove_extra_whitespaces), which llama-style tokenization cannot reproduce")
    if not norm.escape_whitespaces or trainer.treat_whitespace_as_suffix:
        raise UnsupportedError(f"{path}: the SentencePiece model does not mark spaces as a '▁' prefix "
                               f"(escape_whitespaces off or treat_whitespace_as_suffix on)")

    tokens, scores, types = [], [], []
    for p in proto.pieces:
        text = p.piece
        if p.type == USER_DEFINED:
            # SentencePiece matches user-defined pieces in text whose spaces are already "▁"; GGUF vocabularies
            # match them in raw text, so llama.cpp's converter spells their spaces as spaces.
            text = text.replace(SPACE, " ")
        tokens.append(text)
        scores.append(float(p.score))
        types.append(p.type if p.type in (NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE) else NORMAL)

    ids = {}
    for name, i in (("unk", trainer.unk_id), ("bos", trainer.bos_id), ("eos", trainer.eos_id),
                    ("pad", trainer.pad_id)):
        if 0 <= i < len(tokens):
            ids[name] = i

    # Tokens Hugging Face adds on top: added_tokens.json (text -> id) and tokenizer_config's added_tokens_decoder.
    added_entries = []
    extra = read_json(folder / "added_tokens.json") or {}
    for text, i in extra.items():
        if isinstance(text, str) and isinstance(i, int) and not isinstance(i, bool):
            added_entries.append((i, text, False))
    decoder = config.get("added_tokens_decoder") or {}
    if not isinstance(decoder, dict):
        raise FormatError(f"{folder / 'tokenizer_config.json'}: added_tokens_decoder is not an object")
    for key, entry in decoder.items():
        try:
            i = int(key)
        except ValueError:
            raise FormatError(f"{folder / 'tokenizer_config.json'}: added_tokens_decoder key {key!r} is not an id")
        if not isinstance(entry, dict) or not isinstance(entry.get("content"), str):
            raise FormatError(f"{folder / 'tokenizer_config.json'}: added token {key} has no content string")
        added_entries.append((i, entry["content"], bool(entry.get("special"))))

    added = {}
    grown: list[str | None] = list(tokens)
    for i, text, special in added_entries:
        if i < 0:
            raise ModelError(f"{folder}: added token {text!r} has the negative id {i}")
        kind = _added_type(text, special)
        if kind == USER_DEFINED:
            text = text.replace(SPACE, " ")
        _place(grown, i, text, folder)
        if i >= len(types):
            types.extend([UNUSED] * (i + 1 - len(types)))
            scores.extend([_PAD_SCORE] * (i + 1 - len(scores)))
        types[i] = kind
        scores[i] = _PAD_SCORE
        added[text] = i
    _fill_gaps(grown)  # ids between the pieces and an added token: UNUSED already
    _mark_padding(grown, types)

    # The model's own tokenizer is SentencePiece, so its dummy prefix rule is the one to follow: " hi" is
    # "▁" + "▁hi", where transformers' LlamaTokenizer (Metaspace) would give "▁hi" alone.
    return _Vocab("llama", "default", grown, types, scores=scores, ids=ids, added=added,
                  add_space_prefix=bool(norm.add_dummy_prefix), space_prefix="sentencepiece")


# ---- 3. SentencePiece-style BPE tokenizer.json ---------------------------------------------------------------

def _space_handling(tj: dict, source: Path) -> tuple[bool, bool]:
    """(whether a SentencePiece-style tokenizer.json puts "▁" before the text, whether its normalizer turns spaces
    into "▁"); UnsupportedError for other shapes."""
    normalizers = _parts(tj.get("normalizer"), "normalizers")
    pre = _parts(tj.get("pre_tokenizer"), "pretokenizers")
    replace = {"type": "Replace", "pattern": {"String": " "}, "content": SPACE}
    prepend = {"type": "Prepend", "prepend": SPACE}

    if normalizers and normalizers[-1] == replace and normalizers[:-1] in ([], [prepend]):
        # Spaces are already "▁" when the pre-tokenizer runs: splitting on " " changes nothing.
        if all(p.get("type") == "Split" and p.get("pattern") == {"String": " "} for p in pre):
            return len(normalizers) == 2, True
    elif not normalizers and len(pre) == 1 and pre[0].get("type") == "Metaspace":
        m = pre[0]
        if m.get("replacement", SPACE) != SPACE:
            raise UnsupportedError(f"{source}: Metaspace replacement {m.get('replacement')!r} is not '▁'")
        if m.get("split", False):
            # Splitting at "▁" stops merges across words; harmless only if no piece has "▁" inside it.
            if any(SPACE in t[1:] for t in tj["model"]["vocab"]):
                raise UnsupportedError(f"{source}: Metaspace splits words but pieces contain '▁' after their first "
                                       f"character, which llama-style tokenization would merge across words")
        scheme = m.get("prepend_scheme")
        if scheme is None:
            scheme = "always" if m.get("add_prefix_space", True) else "never"
        if scheme not in ("first", "always", "never"):
            raise UnsupportedError(f"{source}: Metaspace prepend_scheme {scheme!r} is not supported")
        return scheme != "never", False
    raise UnsupportedError(f"{source}: SentencePiece-style BPE needs spaces as '▁' (a Metaspace pre-tokenizer or a "
                           f"Replace(' ', '▁') normalizer); found normalizer {_describe(tj.get('normalizer'))} and "
                           f"pre-tokenizer {_describe(tj.get('pre_tokenizer'))}")


def _from_sentencepiece_style_json(tj: dict, source: Path) -> _Vocab:
    model = tj["model"]
    kind = model.get("type", "BPE")
    if kind != "BPE":
        raise UnsupportedError(f"{source}: a {kind} tokenizer.json model; supported: byte-level BPE, "
                               f"SentencePiece-style BPE with byte fallback (or a tokenizer.model)")
    if not model.get("byte_fallback"):
        raise UnsupportedError(f"{source}: a BPE tokenizer.json that is neither byte-level nor falls back to bytes "
                               f"(byte_fallback) is not supported")
    _refuse_bpe_options(model, source, "BPE")
    if model.get("ignore_merges"):
        raise UnsupportedError(f"{source}: SentencePiece-style BPE with ignore_merges is not supported")
    add_space_prefix, spaces_normalized = _space_handling(tj, source)

    tokens, added = _json_tokens(tj, source)
    vocab = model["vocab"]
    types = [NORMAL] * len(tokens)
    for text, i in vocab.items():
        if _BYTE_TOKEN.fullmatch(text):
            types[i] = BYTE
    ids = {}
    unk = model.get("unk_token")
    if isinstance(unk, str) and unk in vocab:
        ids["unk"] = vocab[unk]
        types[ids["unk"]] = UNKNOWN
    for a in tj.get("added_tokens") or []:
        text, kind = a["content"], _added_type(a["content"], bool(a.get("special")))
        if kind == USER_DEFINED and spaces_normalized and a.get("normalized", True):
            # Matched after the normalizer turned spaces into "▁": in raw text, the spaces are spaces.
            text = text.replace(SPACE, " ")
            tokens[a["id"]] = text
            added[text] = a["id"]
        types[a["id"]] = kind
    _fill_gaps(tokens)
    _mark_padding(tokens, types)

    scores = _merge_scores(model, tokens, types, vocab, source)
    add_bos, add_eos, template_ids = _template_flags(tj, added)
    for name, i in template_ids.items():
        ids.setdefault(name, i)
    return _Vocab("llama", "default", tokens, types, scores=scores, ids=ids, add_bos=add_bos, add_eos=add_eos,
                  add_space_prefix=add_space_prefix, added=added)


def _merge_scores(model: dict, tokens: list[str], types: list[int], vocab: dict[str, int],
                  source: Path) -> list[float]:
    """Scores under which "merge the adjacent pair whose joined piece scores highest" (llama.cpp's SentencePiece
    tokenizer, quanta's) makes the same merges as Hugging Face's "apply the lowest-ranked merge".

    A piece scores -(rank of the first merge that makes it); pieces no merge makes score below every merged piece.
    That equals Hugging Face when (a) every pair of tokens that joins to a normal piece is a merge (score merging
    joins any such pair) and (b) the merges making one piece are consecutive (a piece has one score). Converters
    from SentencePiece write merges that way; other files are refused rather than tokenized differently.
    """
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    pairs = set()
    for rank, m in enumerate(model.get("merges") or []):
        if isinstance(m, str):
            pair = tuple(m.split(" "))
        elif isinstance(m, list):
            pair = tuple(m)
        else:
            raise FormatError(f"{source}: merge {m!r} is neither 'a b' nor ['a', 'b']")
        if len(pair) != 2 or not all(isinstance(x, str) and x for x in pair):
            raise FormatError(f"{source}: merge {m!r} is not a pair of tokens")
        joined = pair[0] + pair[1]
        if pair[0] not in vocab or pair[1] not in vocab or joined not in vocab:
            raise ModelError(f"{source}: merge {m!r} names a token that is not in the vocabulary")
        pairs.add(pair)
        first.setdefault(joined, rank)
        last[joined] = rank

    floor = -float(len(pairs) + 1)
    scores = [floor] * len(tokens)
    for piece, rank in first.items():
        scores[vocab[piece]] = -float(rank)

    spans = sorted((first[p], last[p], p) for p in first if types[vocab[p]] == NORMAL)
    for (_, end, piece), (start, _, other) in zip(spans, spans[1:]):
        if start < end:
            raise UnsupportedError(f"{source}: the merges making {piece!r} are interleaved with those making "
                                   f"{other!r}; a piece score cannot order them as Hugging Face does")
    for piece, i in vocab.items():
        if types[i] != NORMAL:
            continue
        for k in range(1, len(piece)):
            left, right = piece[:k], piece[k:]
            if left in vocab and right in vocab and (left, right) not in pairs:
                raise UnsupportedError(f"{source}: {left!r} + {right!r} join to the token {piece!r} but are not a "
                                       f"merge; llama-style tokenization would merge them, Hugging Face does not")
    return scores
