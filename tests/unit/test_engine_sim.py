"""Tests of the engine simulator (tests/images/engine-sim).

The simulator stands in for `vllm serve` (vLLM 0.32) in collection tests, so
these tests pin it to vLLM's contract: the argv table and reference cases
dumped from the real parser, the HTTP shapes, and NixlConnector's
prefill/decode `kv_transfer_params` exchange (also through the real
`vllm-router`, when it is on PATH).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SIM_DIR = REPO / "tests" / "images" / "engine-sim"
if str(SIM_DIR) not in sys.path:
    sys.path.insert(0, str(SIM_DIR))

from llmserve_engine_sim import cli, flags  # noqa: E402

FLAGS = flags.load()
NIXL = '{"kv_connector":"NixlConnector","kv_role":"kv_both"}'


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------
from sim_process import Sim, free_port, http, sim  # noqa: E402


def run_vllm(*argv: str, env: dict | None = None, timeout: float = 10.0):
    """Run the `vllm` shim; for argv that is valid the server would start, so
    callers only use this for argv that must fail."""
    e = dict(os.environ, PYTHONPATH=str(SIM_DIR))
    e.update(env or {})
    return subprocess.run([sys.executable, str(SIM_DIR / "bin" / "vllm"), *argv],
                          capture_output=True, text=True, env=e, timeout=timeout)


def completion(url: str, body: dict, headers=None):
    return http("POST", url + "/v1/completions", body, headers)


def sse_events(text: str) -> list:
    out = []
    for block in text.split("\n\n"):
        block = block.strip()
        if not block:
            continue
        assert block.startswith("data: "), block
        payload = block[len("data: "):]
        out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out


# --------------------------------------------------------------------------
# flag table and argv contract (in-process)
# --------------------------------------------------------------------------
def test_flag_table_comes_from_vllm_032():
    assert FLAGS["vllm_version"] == "0.32.0"
    actions = FLAGS["serve"]["actions"]
    opts = {o: a for a in actions for o in a["option_strings"]}
    assert len(actions) > 300
    assert opts["--port"]["type"] == {"fn": "int"}
    assert opts["--max-model-len"]["type"]["fn"] == "human_readable_int_or_auto"
    assert opts["--no-enable-prefix-caching"]["action"] == "boolean_optional"
    assert opts["--dtype"]["choices"][:2] == ["auto", "bfloat16"]
    assert opts["--kv-transfer-config"]["type"]["inner"] == {"fn": "dataclass", "cls": "KVTransferConfig"}
    assert opts["--served-model-name"]["nargs"] == "+"
    assert "--disable-log-requests" not in opts  # removed in 0.32
    kv = FLAGS["kv_transfer_config"]
    assert kv["extra"] == "forbid"
    assert set(kv["fields"]) >= {"kv_connector", "kv_role", "engine_id", "kv_load_failure_policy"}
    assert "kv_buffer_size" not in kv["fields"]
    assert "NixlConnector" in kv["registered_connectors"]


def _parse(argv):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            ns = cli.parse_vllm_argv(list(argv))
            cli.validate_parsed(ns, env={})
            return 0, ns, err.getvalue()
        except SystemExit as e:
            return e.code, None, err.getvalue()
        except cli.StartupError as e:
            return 1, None, str(e)


def _error_line(stderr: str):
    for line in stderr.splitlines():
        if ": error: " in line:
            return line.split(": error: ", 1)[1]
    return None


@pytest.mark.parametrize("case", FLAGS["reference_cases"]["argv"],
                         ids=lambda c: " ".join(c["argv"])[:80])
def test_argv_matches_real_vllm_parser(case):
    code, ns, stderr = _parse(case["argv"])
    assert code == case["exit"], stderr
    if code == 2:
        assert _error_line(stderr) == case["error"]
    if code == 0:
        for key, want in case["parsed"].items():
            if key == "model":
                continue
            got = getattr(ns, key)
            if key == "kv_transfer_config" and isinstance(got, dict) and want:
                got = dict(got)
                if want.get("engine_id") == "<generated>":
                    got["engine_id"] = "<generated>"
            assert json.loads(json.dumps(got)) == want, key


@pytest.mark.parametrize("case", FLAGS["reference_cases"]["kv_transfer_config"],
                         ids=lambda c: c["value"][:70] or "<empty>")
def test_kv_transfer_config_matches_real_validator(case):
    _top, serve = cli.build_parsers()
    parse = serve._option_string_actions["--kv-transfer-config"].type
    if case["ok"]:
        got = parse(case["value"])
        if got is not None and '"engine_id"' not in case["value"]:
            got = dict(got, engine_id="<generated>")
        assert got == case["result"]
    else:
        with pytest.raises(argparse.ArgumentTypeError) as ei:
            parse(case["value"])
        # the offending field is named like pydantic does
        real_loc = case["error"].splitlines()[1].strip()
        if not real_loc.startswith(("Value error", "Invalid JSON", "Input should be an object")):
            assert real_loc in str(ei.value).splitlines()


def test_every_dumped_option_is_accepted():
    """Each option string of the real parser is known to the simulator."""
    _top, serve = cli.build_parsers()
    for a in FLAGS["serve"]["actions"]:
        for o in a["option_strings"]:
            assert o in serve._option_string_actions, o


# --------------------------------------------------------------------------
# argv contract through the `vllm` shim (subprocess)
# --------------------------------------------------------------------------
def test_shim_rejects_unknown_flag_like_vllm():
    r = run_vllm("serve", "m", "--port", "8000", "--disable-log-requests")
    assert r.returncode == 2
    assert "unrecognized arguments: --disable-log-requests" in r.stderr


def test_shim_rejects_bad_choice_and_bad_int():
    r = run_vllm("serve", "m", "--dtype", "bf17")
    assert r.returncode == 2 and "argument --dtype: invalid choice: 'bf17'" in r.stderr
    r = run_vllm("serve", "m", "--max-num-seqs", "many")
    assert r.returncode == 2 and "argument --max-num-seqs: invalid int value: 'many'" in r.stderr


def test_shim_rejects_bad_kv_transfer_config():
    r = run_vllm("serve", "m", "--kv-transfer-config", '{"kv_connector":"NixlConnector"}')
    assert r.returncode == 2
    assert "argument --kv-transfer-config" in r.stderr and "Please specify kv_role" in r.stderr
    r = run_vllm("serve", "m", "--kv-transfer-config",
                 '{"kv_connector":"NixlConnector","kv_role":"kv_both","kv_buffer_size":1e9}')
    assert r.returncode == 2 and "kv_buffer_size" in r.stderr


def test_shim_unknown_connector_fails_at_startup():
    r = run_vllm("serve", "m", "--kv-transfer-config",
                 '{"kv_connector":"P2pNcclConnector","kv_role":"kv_producer"}')
    assert r.returncode == 1 and "Unsupported connector type: P2pNcclConnector" in r.stderr


def test_served_model_name_without_positional_model():
    r = run_vllm("serve", "--port", "8000", "--served-model-name", "x")
    assert r.returncode == 1 and "first positional argument" in r.stderr


def test_sim_starts_with_real_flags_and_forms():
    """A realistic PD argv in every spelling FlexibleArgumentParser accepts."""
    with sim("Qwen/Qwen3-0.6B", "--served-model-name", "llm", "alias",
             "--max_model_len=2k", "--tensor-parallel-size", "1", "-pp", "1",
             "--gpu-memory-utilization", "0.8", "--max-num-seqs", "4",
             "--no-enable-prefix-caching", "--enforce-eager", "--dtype", "bfloat16",
             "--block-size", "16", "--kv-transfer-config.kv_connector", "NixlConnector",
             "--kv-transfer-config.kv_role", "kv_both",
             "--kv-transfer-config.engine_id", "prefill-0", "-O0") as s:
        st, models = http("GET", s.url + "/v1/models")
        assert st == 200
        assert [m["id"] for m in models["data"]] == ["llm", "alias"]
        assert models["data"][0]["max_model_len"] == 2000
        assert models["data"][0]["root"] == "Qwen/Qwen3-0.6B"
        assert s.admin()["engine_id"] == "prefill-0"
        assert "Application startup complete." in s.output()


# --------------------------------------------------------------------------
# HTTP contract
# --------------------------------------------------------------------------
def test_health_503_during_startup_delay_then_200():
    with sim("m", env={"LLMSERVE_SIM_STARTUP_DELAY": "1.0"}, wait_ready=False) as s:
        s.wait_health(503, timeout=5)
        st, body = completion(s.url, {"prompt": "x"})
        assert st == 503 and body["error"]["code"] == 503
        assert "Application startup complete." not in s.output()
        waited = s.wait_health(200, timeout=5)
        assert 0.3 < waited < 3
        assert http("GET", s.url + "/ping")[0] == 200
        assert http("POST", s.url + "/ping")[0] == 200


def test_startup_mode_refuse_like_real_vllm():
    with sim("m", env={"LLMSERVE_SIM_STARTUP_DELAY": "0.8", "LLMSERVE_SIM_STARTUP_MODE": "refuse"},
             wait_ready=False) as s:
        time.sleep(0.3)
        with pytest.raises(urllib.error.URLError):
            http("GET", s.url + "/health", timeout=1)
        s.wait_health(200, timeout=5)


def test_completion_shape_usage_and_determinism():
    with sim("Qwen/Qwen3-0.6B", "--served-model-name", "llm") as s:
        st, r = completion(s.url, {"model": "llm", "prompt": "Hello there, world", "max_tokens": 5})
        assert st == 200
        assert r["object"] == "text_completion" and r["id"].startswith("cmpl-")
        assert r["model"] == "llm" and r["kv_transfer_params"] is None
        c = r["choices"][0]
        assert c["finish_reason"] == "length" and c["index"] == 0
        assert r["usage"] == {"prompt_tokens": 4, "total_tokens": 9, "completion_tokens": 5,
                              "prompt_tokens_details": None, "completion_tokens_details": None}
        st, r2 = completion(s.url, {"model": "llm", "prompt": "Hello there, world", "max_tokens": 5})
        assert r2["choices"][0]["text"] == c["text"]
        st, r3 = completion(s.url, {"prompt": "Hello there, world", "max_tokens": 100})
        assert r3["choices"][0]["finish_reason"] == "stop"
        assert 8 <= r3["usage"]["completion_tokens"] < 32
        st, r4 = completion(s.url, {"prompt": "abc", "max_tokens": 7, "ignore_eos": True},
                            headers={"X-Request-Id": "req-42"})
        assert r4["id"] == "cmpl-req-42" and r4["usage"]["completion_tokens"] == 7
        st, r5 = completion(s.url, {"prompt": ["a b", "c"], "max_tokens": 2})
        assert [ch["index"] for ch in r5["choices"]] == [0, 1]
        assert http("GET", s.url + "/load")[1] == {"server_load": 0}
        assert http("GET", s.url + "/version")[1] == {"version": "0.32.0"}


def test_chat_completion_shape():
    with sim("m") as s:
        st, r = http("POST", s.url + "/v1/chat/completions",
                     {"model": "m", "messages": [{"role": "user", "content": "hi"}],
                      "max_completion_tokens": 4})
        assert st == 200
        assert r["object"] == "chat.completion" and r["id"].startswith("chatcmpl-")
        msg = r["choices"][0]["message"]
        assert msg["role"] == "assistant" and len(msg["content"].split()) == 4
        assert r["choices"][0]["finish_reason"] == "length"
        assert r["usage"]["completion_tokens"] == 4 and r["usage"]["prompt_tokens"] > 0
        assert "kv_transfer_params" in r


def test_streaming_completion_and_chat():
    with sim("m") as s:
        st, text = http("POST", s.url + "/v1/completions",
                        {"prompt": "one two", "max_tokens": 3, "stream": True,
                         "stream_options": {"include_usage": True}}, raw=True)
        assert st == 200
        ev = sse_events(text)
        assert ev[-1] == "[DONE]"
        chunks = [e for e in ev[:-1] if e["choices"]]
        assert len(chunks) == 3
        assert all(e["object"] == "text_completion" for e in chunks)
        assert [e["choices"][0]["finish_reason"] for e in chunks] == [None, None, "length"]
        usage = ev[-2]
        assert usage["choices"] == [] and usage["usage"] == {
            "prompt_tokens": 2, "total_tokens": 5, "completion_tokens": 3}
        st, text = http("POST", s.url + "/v1/chat/completions",
                        {"messages": [{"role": "user", "content": "x"}], "max_tokens": 2,
                         "stream": True}, raw=True)
        ev = sse_events(text)
        assert ev[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
        assert ev[-1] == "[DONE]" and "usage" not in ev[-2]
        assert ev[-2]["choices"][0]["finish_reason"] == "length"
        assert ev[0]["object"] == "chat.completion.chunk"


def test_error_shapes():
    with sim("m", "--served-model-name", "llm") as s:
        st, r = completion(s.url, {"model": "nope", "prompt": "x"})
        assert st == 404
        assert r == {"error": {"message": "The model `nope` does not exist. Valid aliases: llm.",
                               "type": "NotFoundError", "param": "model", "code": 404}}
        st, r = completion(s.url, {"model": "llm"})
        assert st == 400 and r["error"]["type"] == "BadRequestError"
        assert r["error"]["param"] == "prompt"
        st, r = completion(s.url, {"prompt": "x", "max_tokens": "lots"})
        assert st == 400 and r["error"]["type"] == "Bad Request"
        assert r["error"]["param"] == "body.max_tokens"
        st, r = completion(s.url, {"prompt": "x", "stream_options": {"include_usage": True}})
        assert st == 400 and r["error"]["param"] == "stream_options"
        st, r = http("POST", s.url + "/v1/completions", b'{"prompt": "x"}',
                     headers={"content-type": "text/plain"})
        assert st == 400 and "Unsupported Media Type" in r["error"]["message"]
        st, r = completion(s.url, {"prompt": "x", "max_tokens": -1})
        assert st == 400 and r["error"]["message"].startswith("max_tokens must be at least 1")
        st, r = http("GET", s.url + "/v1/nothing")
        assert st == 404 and r == {"detail": "Not Found"}
        st, r = http("GET", s.url + "/v1/completions")
        assert st == 405


def test_api_key_guards_v1_routes():
    with sim("m", "--api-key", "s3cret") as s:
        assert completion(s.url, {"prompt": "x"})[0] == 401
        st, _ = completion(s.url, {"prompt": "x"}, headers={"Authorization": "Bearer s3cret"})
        assert st == 200
        assert http("GET", s.url + "/health")[0] == 200


def test_metrics_names_and_counts():
    with sim("m", "--served-model-name", "llm") as s:
        completion(s.url, {"prompt": "a b c", "max_tokens": 4})
        completion(s.url, {"prompt": "d", "max_tokens": 2})
        st, text = http("GET", s.url + "/metrics", raw=True)
        for name in ("vllm:num_requests_running", "vllm:num_requests_waiting",
                     "vllm:prompt_tokens_total", "vllm:generation_tokens_total",
                     "vllm:request_success_total", "vllm:time_to_first_token_seconds_bucket",
                     "vllm:e2e_request_latency_seconds_count", "vllm:kv_cache_usage_perc",
                     "llmserve_sim:kv_transfers_total"):
            assert f"{name}{{" in text, name
        assert "# TYPE vllm:time_to_first_token_seconds histogram" in text
        assert s.metric("vllm:prompt_tokens_total", model_name="llm") == 4
        assert s.metric("vllm:generation_tokens_total", model_name="llm") == 6
        assert s.metric("vllm:request_success_total", finished_reason="length") == 2
        assert s.metric("vllm:e2e_request_latency_seconds_count") == 2
        assert s.metric("vllm:num_requests_running") == 0


def test_latency_knobs_and_admin_config():
    with sim("m", env={"LLMSERVE_SIM_TTFT_MS": "150"}) as s:
        t0 = time.monotonic()
        completion(s.url, {"prompt": "x", "max_tokens": 1})
        assert time.monotonic() - t0 >= 0.15
        st, cfg = http("POST", s.url + "/admin/config", {"ttft_ms": 0, "itl_ms": 20})
        assert st == 200 and cfg["ttft_ms"] == 0 and cfg["itl_ms"] == 20
        t0 = time.monotonic()
        completion(s.url, {"prompt": "x", "max_tokens": 6, "ignore_eos": True})
        assert time.monotonic() - t0 >= 0.1
        assert s.metric("vllm:time_to_first_token_seconds_count") == 2
        assert http("POST", s.url + "/admin/config", {"failure_rate": 2})[0] == 400
        assert http("POST", s.url + "/admin/config", {"bogus": 1})[0] == 400


def test_failure_injection():
    with sim("m", env={"LLMSERVE_SIM_FAILURE_RATE": "1", "LLMSERVE_SIM_FAILURE_CODES": "503"}) as s:
        st, r = completion(s.url, {"prompt": "x"})
        assert st == 503 and r["error"]["type"] == "ServiceUnavailableError"
        assert http("GET", s.url + "/health")[0] == 200
        http("POST", s.url + "/admin/config", {"failure_rate": 0})
        assert completion(s.url, {"prompt": "x"})[0] == 200
        st, r = completion(s.url, {"prompt": "x"}, headers={"X-Return-Error": "429"})
        assert st == 429 and r["error"]["code"] == 429
        assert s.metric("llmserve_sim:injected_failures_total") == 2


def test_failure_rate_is_seeded():
    env = {"LLMSERVE_SIM_FAILURE_RATE": "0.5", "LLMSERVE_SIM_SEED": "7"}
    runs = []
    for _ in range(2):
        with sim("m", env=env) as s:
            runs.append([completion(s.url, {"prompt": "x", "max_tokens": 1})[0] for _ in range(12)])
    assert runs[0] == runs[1]
    assert set(runs[0]) == {200, 500}


# --------------------------------------------------------------------------
# PD semantics (NixlConnector)
# --------------------------------------------------------------------------
@pytest.fixture
def pd_pair():
    p_side, d_side = free_port(), free_port()
    with sim("m", "--kv-transfer-config", NIXL,
             env={"VLLM_NIXL_SIDE_CHANNEL_PORT": str(p_side)}) as p, \
         sim("m", "--kv-transfer-config", NIXL,
             env={"VLLM_NIXL_SIDE_CHANNEL_PORT": str(d_side)}) as d:
        p.side_port = p_side
        yield p, d


PREFILL_KVP = {"do_remote_decode": True, "do_remote_prefill": False, "remote_engine_id": None,
               "remote_block_ids": None, "remote_host": None, "remote_port": None}


def test_pd_two_step(pd_pair):
    p, d = pd_pair
    prompt = "The quick brown fox jumps over the lazy dog " * 3
    st, pr = completion(p.url, {"model": "m", "prompt": prompt, "max_tokens": 1, "stream": False,
                                "kv_transfer_params": PREFILL_KVP},
                        headers={"X-Request-Id": "pd-1"})
    assert st == 200
    assert pr["choices"][0]["finish_reason"] == "length"
    kvp = pr["kv_transfer_params"]
    assert kvp["do_remote_prefill"] is True and kvp["do_remote_decode"] is False
    assert kvp["remote_engine_id"] == p.admin()["engine_id"]
    assert kvp["remote_host"] == "localhost" and kvp["remote_port"] == p.side_port
    assert kvp["remote_request_id"].startswith("cmpl-pd-1-0-")
    assert kvp["tp_size"] == 1 and kvp["remote_block_ids"] == [[1, 2]]  # 30 tokens / 16
    assert p.metric("llmserve_sim:prefills_held") == 1

    st, dr = completion(d.url, {"model": "m", "prompt": prompt, "max_tokens": 5,
                                "kv_transfer_params": kvp})
    assert st == 200 and dr["kv_transfer_params"] is None
    assert dr["usage"]["completion_tokens"] == 5
    assert d.metric("llmserve_sim:kv_transfers_total") == 1
    assert d.metric("llmserve_sim:invalid_kv_transfer_params_total") == 0
    # as vLLM counts it: the prompt's full blocks arrived, the rest and at least its last token were computed
    assert d.metric("vllm:prompt_tokens_by_source_total", source="external_kv_transfer") == 16
    assert d.metric("vllm:prompt_tokens_by_source_total", source="local_compute") == dr["usage"]["prompt_tokens"] - 16
    assert p.metric("vllm:prompt_tokens_by_source_total", source="external_kv_transfer") == 0
    assert "KV pull (simulated NIXL read)" in d.output()
    assert f"remote_request_id={kvp['remote_request_id']}" in d.output()
    assert p.metric("llmserve_sim:prefills_held") == 0
    assert p.metric("llmserve_sim:remote_decode_prefills_total") == 1


def test_pd_decode_with_incomplete_params(pd_pair):
    _p, d = pd_pair
    st, r = completion(d.url, {"prompt": "x", "max_tokens": 2,
                               "kv_transfer_params": {"do_remote_prefill": True,
                                                      "remote_block_ids": [[1]],
                                                      "remote_engine_id": "e"}})
    assert st == 200
    assert "Got invalid KVTransferParams" in d.output()
    assert d.metric("llmserve_sim:invalid_kv_transfer_params_total") == 1
    assert d.metric("llmserve_sim:kv_transfers_total") == 0


def test_pd_pull_failure_policy():
    dead = free_port()
    kvp = {"do_remote_prefill": True, "do_remote_decode": False, "remote_block_ids": [[1]],
           "remote_engine_id": "gone", "remote_request_id": "r", "remote_host": "127.0.0.1",
           "remote_port": dead, "tp_size": 1}
    with sim("m", "--kv-transfer-config", NIXL) as d:
        st, r = completion(d.url, {"prompt": "x", "kv_transfer_params": kvp})
        assert st == 500 and r["error"]["type"] == "InternalServerError"
        st, text = http("POST", d.url + "/v1/completions",
                        {"prompt": "x", "stream": True, "kv_transfer_params": kvp}, raw=True)
        ev = sse_events(text)
        assert st == 200 and ev[0]["error"]["code"] == 500 and ev[-1] == "[DONE]"
        assert d.metric("llmserve_sim:kv_transfer_failures_total") == 2
    recompute = ('{"kv_connector":"NixlConnector","kv_role":"kv_consumer",'
                 '"kv_load_failure_policy":"recompute"}')
    with sim("m", "--kv-transfer-config", recompute) as d:
        assert completion(d.url, {"prompt": "x " * 40, "kv_transfer_params": kvp})[0] == 200
        assert d.metric("vllm:prompt_tokens_by_source_total", source="external_kv_transfer") == 0
        assert d.metric("vllm:prompt_tokens_by_source_total", source="local_compute") > 16


def test_example_connector_moves_kv_through_its_shared_directory_only(tmp_path):
    def config(role, path):
        return json.dumps({"kv_connector": "ExampleConnector", "kv_role": role,
                           "kv_connector_extra_config": {"shared_storage_path": str(path)}})

    prompt = "The quick brown fox jumps over the lazy dog " * 3
    with sim("m", "--kv-transfer-config", config("kv_producer", tmp_path / "kv")) as p, \
         sim("m", "--kv-transfer-config", config("kv_consumer", tmp_path / "kv")) as d, \
         sim("m", "--kv-transfer-config", config("kv_consumer", tmp_path / "elsewhere")) as lost:
        assert completion(p.url, {"prompt": prompt, "max_tokens": 1, "kv_transfer_params": PREFILL_KVP})[0] == 200
        assert completion(lost.url, {"prompt": prompt, "max_tokens": 2})[0] == 200
        assert completion(d.url, {"prompt": prompt, "max_tokens": 2})[0] == 200
        assert p.metric("vllm:prompt_tokens_by_source_total", source="external_kv_transfer") == 0
        assert d.metric("vllm:prompt_tokens_by_source_total", source="external_kv_transfer") == 16
        assert lost.metric("vllm:prompt_tokens_by_source_total", source="external_kv_transfer") == 0
        assert len(list((tmp_path / "kv").iterdir())) == 1


def test_kv_params_without_connector_are_ignored():
    with sim("m") as s:
        st, r = completion(s.url, {"prompt": "x", "max_tokens": 1,
                                   "kv_transfer_params": PREFILL_KVP})
        assert st == 200 and r["kv_transfer_params"] is None
        assert s.metric("llmserve_sim:kv_transfer_params_ignored_total") == 1
        assert s.metric("llmserve_sim:kv_transfers_total") == 0


def test_side_channel_port_clash_never_becomes_ready():
    side = free_port()
    env = {"VLLM_NIXL_SIDE_CHANNEL_PORT": str(side)}
    with sim("m", "--kv-transfer-config", NIXL, env=env) as first, \
         sim("m", "--kv-transfer-config", NIXL, env=env, wait_ready=False) as second:
        assert http("GET", first.url + "/health")[0] == 200
        second.wait_health(503, timeout=5)
        time.sleep(0.3)
        assert http("GET", second.url + "/health")[0] == 503
        assert "could not bind" in second.output()


# --------------------------------------------------------------------------
# the real front door
# --------------------------------------------------------------------------
ROUTER = (os.environ.get("VLLM_ROUTER_BIN") or shutil.which("vllm-router")
          or shutil.which("vllm-router", path=str(Path(sys.executable).parent)))


@pytest.mark.skipif(ROUTER is None, reason="vllm-router not on PATH")
def test_vllm_router_pd_disaggregation(pd_pair):
    p, d = pd_pair
    port, prom = free_port(), free_port()
    log = tempfile.TemporaryFile()
    router = subprocess.Popen(
        [ROUTER, "--vllm-pd-disaggregation", "--prefill", p.url, "--decode", d.url,
         "--host", "127.0.0.1", "--port", str(port), "--prometheus-host", "127.0.0.1",
         "--prometheus-port", str(prom), "--policy", "round_robin"],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                if http("GET", url + "/health", timeout=1)[0] == 200:
                    break
            except (urllib.error.URLError, OSError):
                pass
            assert router.poll() is None and time.monotonic() < deadline, "router did not start"
            time.sleep(0.1)
        st, r = completion(url, {"model": "m", "prompt": "hello from the router", "max_tokens": 6})
        assert st == 200, r
        assert r["usage"]["completion_tokens"] == 6
        sent = p.admin()["last_response_kv_transfer_params"]
        received = d.admin()["last_request_kv_transfer_params"]
        assert sent is not None and sent["do_remote_prefill"] is True
        assert received == sent
        prefill_req = p.admin()["last_request_kv_transfer_params"]
        assert prefill_req["do_remote_decode"] is True
        assert d.metric("llmserve_sim:kv_transfers_total") == 1
        assert p.metric("vllm:generation_tokens_total") == 1  # P ran with max_tokens=1
    finally:
        router.terminate()
        try:
            router.wait(5)
        except subprocess.TimeoutExpired:
            router.kill()
        log.close()
