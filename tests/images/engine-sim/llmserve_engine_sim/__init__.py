"""llmserve engine simulator: a stdlib-only stand-in for `vllm serve` in tests.

It accepts exactly the argv of the vLLM version recorded in
vllm_serve_flags.json, serves vLLM's HTTP API with deterministic output, and
emulates NixlConnector's prefill/decode `kv_transfer_params` contract.
"""

__version__ = "0.1.0"
