#!/usr/bin/env python3
"""Write a tiny, randomly initialised Llama model that vLLM's CPU backend can serve.

The model is for plumbing tests only (health checks, routing, prefill/decode
disaggregation): its answers are random tokens.  Everything is produced
offline and deterministically:

* the byte-level BPE tokenizer is trained with `tokenizers` on text taken from
  the docstrings of Python's standard library plus a few generated sentences;
* the weights are drawn from a fixed-seed torch generator and written with
  `safetensors`.

Usage: make_tiny_model.py [OUTPUT_DIR]   (default /models/tiny-llama)
"""

import importlib
import inspect
import json
import os
import sys

SEED = 1234
VOCAB_SIZE = 2048
HIDDEN = 128
HEADS = 2            # head_dim = 128 / 2 = 64: vLLM's CPU attention needs 64, 80, 96, 112, 128, 256
KV_HEADS = 2
LAYERS = 2
INTERMEDIATE = 256
MAX_POS = 2048
DTYPE = "bfloat16"

BOS, EOS, PAD = "<|begin_of_text|>", "<|end_of_text|>", "<|pad|>"
SYSTEM, USER, ASSISTANT, END = "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"
SPECIAL_TOKENS = [PAD, BOS, EOS, SYSTEM, USER, ASSISTANT, END]  # ids 0..6

# Llama-3-like minimal template: every message is "<|role|>\ncontent<|end|>\n".
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)

# Stdlib modules whose docstrings make up the training corpus (fixed order).
CORPUS_MODULES = [
    "this", "argparse", "asyncio", "collections", "contextlib", "csv",
    "dataclasses", "datetime", "decimal", "email", "functools", "http.client",
    "inspect", "itertools", "json", "logging", "os", "pathlib", "re",
    "shutil", "socket", "string", "subprocess", "tarfile", "textwrap",
    "threading", "typing", "unittest", "urllib.parse", "zipfile",
]


def corpus():
    """Yield training text: stdlib docstrings, then generated chat-like lines."""
    import contextlib
    import io

    for name in CORPUS_MODULES:
        with contextlib.redirect_stdout(io.StringIO()):  # `import this` prints
            mod = importlib.import_module(name)
        if name == "this":
            yield "".join(mod.d.get(c, c) for c in mod.s)  # the Zen of Python
        if mod.__doc__:
            yield mod.__doc__
        for attr in sorted(vars(mod)):
            obj = getattr(mod, attr, None)
            doc = inspect.getdoc(obj) if callable(obj) else None
            if doc:
                yield doc
    subjects = ["The cluster", "A model", "The router", "Each node", "The scheduler"]
    verbs = ["serves", "routes", "caches", "prefills", "decodes", "answers"]
    objects = ["a request", "the prompt", "many tokens", "a reply", "the cache"]
    for i, s in enumerate(subjects):
        for j, v in enumerate(verbs):
            for k, o in enumerate(objects):
                yield f"{s} {v} {o} number {i * 100 + j * 10 + k}. Hello, how are you?\n"


def train_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(corpus()), trainer=trainer)
    return tok


def make_weights(vocab):
    import torch

    gen = torch.Generator().manual_seed(SEED)
    dtype = getattr(torch, DTYPE)

    def normal(*shape):
        return (torch.randn(*shape, generator=gen) * 0.02).to(dtype).contiguous()

    def ones(n):
        return torch.ones(n, dtype=dtype)

    head_dim = HIDDEN // HEADS
    w = {"model.embed_tokens.weight": normal(vocab, HIDDEN)}
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = ones(HIDDEN)
        w[p + "post_attention_layernorm.weight"] = ones(HIDDEN)
        w[p + "self_attn.q_proj.weight"] = normal(HEADS * head_dim, HIDDEN)
        w[p + "self_attn.k_proj.weight"] = normal(KV_HEADS * head_dim, HIDDEN)
        w[p + "self_attn.v_proj.weight"] = normal(KV_HEADS * head_dim, HIDDEN)
        w[p + "self_attn.o_proj.weight"] = normal(HIDDEN, HEADS * head_dim)
        w[p + "mlp.gate_proj.weight"] = normal(INTERMEDIATE, HIDDEN)
        w[p + "mlp.up_proj.weight"] = normal(INTERMEDIATE, HIDDEN)
        w[p + "mlp.down_proj.weight"] = normal(HIDDEN, INTERMEDIATE)
    w["model.norm.weight"] = ones(HIDDEN)
    return w  # lm_head is tied to embed_tokens


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=True, ensure_ascii=False)
        f.write("\n")


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "/models/tiny-llama"
    os.makedirs(out, exist_ok=True)

    tok = train_tokenizer()
    vocab = tok.get_vocab_size()
    tok.save(os.path.join(out, "tokenizer.json"))
    ids = {t: tok.token_to_id(t) for t in SPECIAL_TOKENS}

    write_json(os.path.join(out, "tokenizer_config.json"), {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": BOS,
        "eos_token": EOS,
        "pad_token": PAD,
        "add_bos_token": False,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": MAX_POS,
        "chat_template": CHAT_TEMPLATE,
    })
    write_json(os.path.join(out, "special_tokens_map.json"),
               {"bos_token": BOS, "eos_token": EOS, "pad_token": PAD})

    write_json(os.path.join(out, "config.json"), {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": vocab,
        "hidden_size": HIDDEN,
        "intermediate_size": INTERMEDIATE,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS,
        "head_dim": HIDDEN // HEADS,
        "hidden_act": "silu",
        "max_position_embeddings": MAX_POS,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": True,
        "initializer_range": 0.02,
        "bos_token_id": ids[BOS],
        "eos_token_id": [ids[EOS], ids[END]],
        "pad_token_id": ids[PAD],
        "torch_dtype": DTYPE,
        "use_cache": True,
    })
    write_json(os.path.join(out, "generation_config.json"), {
        "bos_token_id": ids[BOS],
        "eos_token_id": [ids[EOS], ids[END]],
        "pad_token_id": ids[PAD],
        "do_sample": True,
        "temperature": 0.7,
        "top_p": 0.9,
    })

    from safetensors.torch import save_file
    save_file(make_weights(vocab), os.path.join(out, "model.safetensors"),
              metadata={"format": "pt"})
    for name in os.listdir(out):  # save_file creates 0600; let any user read the model
        os.chmod(os.path.join(out, name), 0o644)

    print(f"wrote {out}: vocab={vocab} hidden={HIDDEN} layers={LAYERS} "
          f"heads={HEADS} head_dim={HIDDEN // HEADS} dtype={DTYPE}")


if __name__ == "__main__":
    main()
