"""Tiny random Hugging Face checkpoints of each architecture, saved by transformers with small tokenizers
trained here, for the converter and graph tests. Weights are drawn well above the default 0.02 init so the
logits are peaked and agreement means something."""

import argparse
import inspect
import json
import shutil

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

ARCHS = ["llama", "mistral", "qwen2", "gemma3"]

# Text to train the small tokenizers on: Python source plus the tokenizer test strings.
from test_tokenizer import CORPUS  # noqa: E402

TRAINING_TEXT = inspect.getsource(argparse).splitlines() + CORPUS


def train_sentencepiece(folder, vocab_size=700, **options):
    """A SentencePiece BPE tokenizer.model as real llama tokenizers are made: identity normalisation,
    byte fallback, a "▁" prefix."""
    import sentencepiece

    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "tokenizer.model", "wb") as f:
        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=iter(inspect.getsource(argparse).splitlines()), model_writer=f, model_type="bpe",
            vocab_size=vocab_size, normalization_rule_name="identity", remove_extra_whitespaces=False,
            add_dummy_prefix=True, byte_fallback=True, character_coverage=1.0, num_threads=1, minloglevel=2,
            **options)
    return folder


def train_byte_level(folder, pre_tokenizer, ignore_merges=False, vocab_size=800):
    """A byte-level BPE tokenizer.json (as Qwen2 and Llama 3 have) with three special tokens first."""
    tok = Tokenizer(models.BPE(ignore_merges=ignore_merges))
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.ByteLevel()
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=specials, show_progress=False)
    tok.train_from_iterator(TRAINING_TEXT, trainer)
    tok.add_tokens([AddedToken("<tool_call>", special=False, normalized=False)])
    tok.post_processor = processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                                       special_tokens=[("<|begin_of_text|>", 0)])
    folder.mkdir(parents=True)
    tok.save(str(folder / "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|begin_of_text|>",
              "eos_token": "<|end_of_text|>"}
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    (folder / "chat_template.jinja").write_text("{{ messages }}", encoding="utf-8")
    return folder


def _tokenizer(arch, folder):
    """llama and gemma3 get a tokenizer.model, mistral the tokenizer.json transformers makes from one, qwen2 a
    byte-level tokenizer.json with Qwen2's split. Returns the number of tokens."""
    from transformers import AutoTokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX
    from tokenizers import Regex

    if arch == "qwen2":
        split = pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated")
        train_byte_level(folder, pre_tokenizers.Sequence([split, pre_tokenizers.ByteLevel(add_prefix_space=False,
                                                                                          use_regex=False)]))
        # transformers gives a qwen2 folder its Qwen2Tokenizer (NFC, <|endoftext|>): save what it makes of it.
        (folder / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
        tok = AutoTokenizer.from_pretrained(str(folder))
        tok.save_pretrained(str(folder))
        return len(tok)
    train_sentencepiece(folder)
    config = {"tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
              "add_bos_token": True, "legacy": False,
              "chat_template": "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"}
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    if arch == "mistral":
        AutoTokenizer.from_pretrained(str(folder)).save_pretrained(str(folder))
        (folder / "tokenizer.model").unlink()
    return len(AutoTokenizer.from_pretrained(str(folder)))


def make_hf(arch, vocab, seed=0, hidden=64, ff=96, layers=None, **config):
    """A random `arch` model; `config` adds or overrides transformers config keys (e.g. rope_parameters)."""
    import torch
    import transformers as tf

    common = dict(vocab_size=vocab, hidden_size=hidden, intermediate_size=ff, num_attention_heads=4,
                  max_position_embeddings=512, rms_norm_eps=1e-6)
    if arch in ("llama", "mistral"):
        cls_cfg, cls = (tf.LlamaConfig, tf.LlamaForCausalLM) if arch == "llama" else \
            (tf.MistralConfig, tf.MistralForCausalLM)
        # mistral: a head size that is not hidden / heads (as Mistral Nemo's), and no sliding window.
        extra = {"sliding_window": None, "head_dim": 32} if arch == "mistral" else {}
        cfg = cls_cfg(num_hidden_layers=layers or 2, num_key_value_heads=2, rope_theta=10000.0,
                      tie_word_embeddings=False, **extra, **{**common, **config})
    elif arch == "qwen2":
        cfg = tf.Qwen2Config(num_hidden_layers=layers or 2, num_key_value_heads=2, rope_theta=1e6,
                             tie_word_embeddings=False, **{**common, **config})
        cls = tf.Qwen2ForCausalLM
    else:
        # 7 layers: 0-4 and 6 attend to a window of 6 positions with rope base 1e4, layer 5 is global (1e6).
        cfg = tf.Gemma3TextConfig(num_hidden_layers=layers or 7, num_key_value_heads=1, head_dim=32,
                                  query_pre_attn_scalar=32, sliding_window=6, rope_theta=1e6,
                                  rope_local_base_freq=10000.0, **{**common, **config})
        cls = tf.Gemma3ForCausalLM
    torch.manual_seed(seed)
    model = cls(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:  # the same gain per layer at any width
                p.normal_(0, 0.15 * (64 / hidden) ** 0.5)
            elif arch == "gemma3":
                p.normal_(0, 0.3)  # gemma norms scale by 1 + w
            else:
                p.normal_(1, 0.3)
    return model


def write_checkpoint(folder, arch, seed=0, **shape):
    """A tiny `arch` checkpoint with its tokenizer in `folder`; returns the transformers model."""
    if folder.exists():
        shutil.rmtree(folder)
    vocab = _tokenizer(arch, folder)
    model = make_hf(arch, vocab, seed, **shape)
    model.save_pretrained(str(folder))
    return model
