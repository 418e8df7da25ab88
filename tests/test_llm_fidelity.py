"""quanta's logits on the real quantized models against transformers in fp32
on the same GGUF (the weights dequantized exactly): every position of six
prompts continued greedily by 32 tokens. The bounds are llama.cpp's own
distance from the same reference, measured on six prompts with 32 generated
tokens each (../shared/FACTS.md); bench/llm_fidelity.py measures both engines
on identical tokens."""

import numpy as np
import pytest
import torch
import transformers

import quanta

from divergence import kld


PROMPTS = [
    "The capital of France is",
    "def quicksort(arr):\n    \"\"\"Sort a list using quicksort.\"\"\"\n",
    "Once upon a time, in a small village by the sea,",
    "To make a cup of tea, first",
    "The three laws of thermodynamics are",
    "import numpy as np\n\n# Compute the mean of each column of a matrix\n",
]
LLAMA_CPP_KLD = {"qwen": 0.0008, "gemma": 0.0054}


@pytest.mark.parametrize("name", ["qwen", "gemma"])
def test_kld_to_fp32_is_within_llama_cpp(request, name, hf_gguf_tokenizer):
    from pathlib import Path

    path = Path(request.getfixturevalue(f"{name}_path"))
    tok = hf_gguf_tokenizer(path)
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                           dtype=torch.float32)
    llm = quanta.LLM(path, n_ctx=512, n_threads=2)
    klds, top1 = [], []
    for prompt in PROMPTS:
        ids = tok(prompt)["input_ids"]
        assert llm.tokenize(prompt) == ids
        cont = list(llm.generate_tokens(ids, max_tokens=32, temperature=0))
        seq = ids + cont
        with torch.no_grad():
            ref = hf(torch.tensor([seq])).logits[0].numpy()
        ours = llm.logits(seq)
        klds.append(kld(ref, ours))
        top1.append(ref.argmax(-1) == ours.argmax(-1))
    mean_kld, agree = np.concatenate(klds).mean(), np.concatenate(top1).mean()
    print(f"{name}: mean KLD {mean_kld:.6f} (llama.cpp {LLAMA_CPP_KLD[name]}), top-1 {agree:.3f}")
    assert mean_kld <= LLAMA_CPP_KLD[name]
    assert agree >= 0.95
