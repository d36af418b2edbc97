#!/usr/bin/env python3
"""Write a tiny, randomly initialised Llama model that vLLM's CPU backend can serve.

The model is for plumbing tests only (health checks, routing, prefill/decode
disaggregation): its answers are random tokens.  Everything is produced
offline and deterministically:

* the byte-level BPE tokenizer is trained with `tokenizers` on text the script
  carries or generates itself (a word list, a few paragraphs, the Zen of Python
  from the stdlib `this` module) - no downloads;
* the weights are drawn from a fixed-seed torch generator and written with
  `safetensors`.

Usage: make_tiny_model.py [OUTPUT_DIR]   (default /models/tiny-llama)
"""

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

# Training text: self-contained, so the tokenizer does not change with the Python
# patch release (stdlib docstrings do).  A fixed vocabulary is combined into
# sentences by a small LCG (not `random`, whose algorithms may change).
WORDS = """
the a an this that these those each every some many few all no one two three four five
six seven eight nine ten hundred thousand first second last next other same new old
cluster node nodes host hosts router routers engine engines model models server servers
request requests response responses prompt prompts token tokens cache caches memory disk
prefill decode decoder prefiller scheduler worker workers queue queues batch batches
container containers image images registry network port ports address socket service
client user assistant system message messages answer question story reply chat text
word words sentence line lines file files directory path key value config setting option
time second minute hour day week year start stop restart health check status error
log logs metric metrics latency throughput load balance weight weights layer layers
attention head heads vector matrix tensor number numbers byte bytes block blocks page
is are was were be been has have had do does did can could will would should may might
must sends receives reads writes stores loads keeps moves routes serves caches answers
prefills decodes computes returns starts stops waits runs checks builds pulls pushes
opens closes creates deletes updates copies tells asks says shows finds gives takes
makes uses sees knows thinks wants needs likes works helps tries
and or but if then else when while because so than as with without from to into onto
of in on at by for about over under between after before during through across
quick slow small large tiny big long short high low fast warm cold good bad busy idle
ready healthy local remote shared private public open closed full empty free used
hello hi thanks please yes no okay sure maybe today tomorrow again always never often
I you he she it we they me him her us them my your his its our their what who how why
where which there here now soon later very more most less least only also just still
""".split()

PARAGRAPHS = [
    "Hello! How are you today? I am fine, thank you. What can I do for you?",
    "The router sends each prompt to a prefill node; the decode node loads the "
    "cache and writes the answer, one token at a time.",
    "A small model is enough to check that requests, health checks and metrics "
    "flow through the cluster: its answers are random words.",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 16 32 64 100 128 256 512 1000 1024 2048 4096.",
    "Symbols: ( ) [ ] { } < > = + - * / % & | ^ ~ ! ? . , ; : ' \" ` @ # $ _ \\",
    "def main():\n    return {\"status\": \"ok\", \"tokens\": [1, 2, 3]}\n",
    "User: Tell me a story.\nAssistant: Once upon a time, a tiny model served "
    "a very large cluster.\n",
]


def lcg(seed):
    state = seed
    while True:
        state = (state * 6364136223846793005 + 1442695040888963407) % 2**64
        yield state >> 33


def corpus():
    """Yield training text: the Zen of Python, fixed paragraphs, generated sentences."""
    import codecs
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):  # importing `this` prints the Zen
        import this
    yield codecs.decode(this.s, "rot13")  # text unchanged since Python 2.2
    yield from PARAGRAPHS * 4
    rnd = lcg(SEED)
    for _ in range(6000):
        n = 4 + next(rnd) % 12
        words = [WORDS[next(rnd) % len(WORDS)] for _ in range(n)]
        words[0] = words[0].capitalize()
        end = ".?!,;:"[next(rnd) % 6]
        num = f" {next(rnd) % 10000}" if next(rnd) % 4 == 0 else ""
        yield " ".join(words) + num + end + ("\n" if next(rnd) % 3 == 0 else " ")


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
