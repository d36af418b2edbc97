"""Access to the flag table dumped from the real vLLM parser."""

from __future__ import annotations

import functools
import json
import os

FLAGS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vllm_serve_flags.json")


@functools.lru_cache(maxsize=1)
def load() -> dict:
    with open(FLAGS_FILE, encoding="utf-8") as f:
        return json.load(f)


def vllm_version() -> str:
    return load()["vllm_version"]
