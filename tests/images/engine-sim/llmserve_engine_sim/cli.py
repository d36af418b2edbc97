"""`vllm serve` argv contract, rebuilt from the flag table of the real parser.

* The argparse parser is generated from vllm_serve_flags.json (dumped from
  vLLM's own `vllm serve` sub-parser by tools/dump_vllm_flags.py), so every
  flag vLLM accepts is accepted, and everything else is rejected by argparse
  with exit status 2 and vLLM's message ("unrecognized arguments: ...",
  "argument --port: invalid int value: ...", "invalid choice", ...).
* `preprocess()` is a port of FlexibleArgumentParser.parse_args(): `--model X`
  moved to the positional, `--flag=value`, underscore/dash equivalence,
  `-O3`, dotted JSON keys (`--kv-transfer-config.kv_role kv_both`) and the
  `+` list-append form, `--config file.yaml`.
* The types (`human_readable_int`, `optional_type(...)`, the pydantic
  dataclass parsers, ...) are re-implemented with the same names so
  argparse's error messages match.
* `post_validate()` repeats the checks vLLM makes after parsing and before the
  engine starts (exit status 1 there).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections import defaultdict
from typing import Any, Callable

from . import flags as _flags
from . import kvconfig


class StartupError(Exception):
    """An error vLLM raises after argument parsing (process exits with 1)."""


# --------------------------------------------------------------------------
# argparse `type=` callables, named like vLLM's so messages match
# --------------------------------------------------------------------------
human_readable_int = kvconfig.human_readable_int


def human_readable_int_or_auto(value: str) -> int:
    value = value.strip()
    if value == "-1" or value.lower() == "auto":
        return -1
    return human_readable_int(value)


def _named(fn: Callable, name: str) -> Callable:
    fn.__name__ = name
    fn.__qualname__ = name
    return fn


def parse_type(return_type: Callable[[str], Any]) -> Callable[[str], Any]:
    def _parse_type(val: str) -> Any:
        try:
            return return_type(val)
        except ValueError as e:
            raise argparse.ArgumentTypeError(
                f"Value {val} cannot be converted to {_type_repr(return_type)}."
            ) from e

    return _parse_type


def optional_type(return_type: Callable[[str], Any]) -> Callable[[str], Any]:
    def _optional_type(val: str) -> Any:
        if val == "" or val == "None":
            return None
        return parse_type(return_type)(val)

    return _optional_type


def _type_repr(t: Any) -> str:
    if isinstance(t, type):
        return repr(t)
    return f"<function {getattr(t, '__name__', 'fn')}>"


def union_dict_and_str(val: str) -> Any:
    if not re.match(r"(?s)^\s*{.*}\s*$", val):
        return str(val)
    return optional_type(json.loads)(val)


def _lower_underscore(s: str) -> str:
    return s.lower().replace("-", "_")


def _device_ids(s: str) -> list:
    return [
        int(device_id) if device_id.isdigit() else device_id
        for device_id in (part.strip() for part in s.split(","))
    ]


def _dataclass_parser(cls_name: str) -> Callable[[str], Any]:
    info = _flags.load()["dataclass_flags"].get(cls_name, {})

    def parse_dataclass(val: str) -> Any:
        if cls_name == "KVTransferConfig":
            try:
                return kvconfig.validate_json(val)
            except kvconfig.KVConfigError as e:
                raise argparse.ArgumentTypeError(str(e)) from None
        # Other config classes: JSON object whose keys are fields of the class
        # (all of vLLM's config dataclasses use extra="forbid"). Field types are
        # not checked: the collection only has to get names and JSON right.
        text = kvconfig.expand_json_human_readable_numbers(val)
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise argparse.ArgumentTypeError(
                f"1 validation error for {cls_name}\n  Invalid JSON: {e.msg} "
                f"[type=json_invalid, input_value={text!r}, input_type=str]"
            ) from None
        if not isinstance(data, dict):
            raise argparse.ArgumentTypeError(
                f"1 validation error for {cls_name}\n  Input should be an object "
                f"[type=dataclass_type, input_value={data!r}, input_type={type(data).__name__}]"
            )
        if info.get("extra") == "forbid":
            unknown = [k for k in data if k not in set(info.get("fields", []))]
            if unknown:
                n = len(unknown)
                lines = [f"{n} validation error{'s' if n > 1 else ''} for {cls_name}"]
                for k in unknown:
                    lines += [k, f"  Unexpected keyword argument [type=unexpected_keyword_argument, "
                                 f"input_value={data[k]!r}, input_type={type(data[k]).__name__}]"]
                raise argparse.ArgumentTypeError("\n".join(lines))
        return data

    return parse_dataclass


def build_type(spec: dict | None) -> Callable[[str], Any] | None:
    if spec is None:
        return None
    fn = spec["fn"]
    if fn == "int":
        return int
    if fn == "float":
        return float
    if fn == "str":
        return str
    if fn == "json.loads":
        return json.loads
    if fn == "human_readable_int":
        return human_readable_int
    if fn == "human_readable_int_or_auto":
        return human_readable_int_or_auto
    if fn == "union_dict_and_str":
        return union_dict_and_str
    if fn == "optional":
        return optional_type(build_type(spec["inner"]))
    if fn == "parse":
        return parse_type(build_type(spec["inner"]))
    if fn == "dataclass":
        return _dataclass_parser(spec["cls"])
    if fn == "lower_dash_to_underscore":
        return _named(_lower_underscore, "<lambda>")
    if fn == "device_ids":
        return _named(_device_ids, "<lambda>")
    if fn == "check_port":
        return int
    raise ValueError(f"unknown type spec {spec}")


# --------------------------------------------------------------------------
# custom actions
# --------------------------------------------------------------------------
_LORA_FIELDS = ("name", "path", "base_model_name", "is_3d_lora_weight")


class LoRAParserAction(argparse.Action):
    """Port of vllm.entrypoints.launchers.cli_args.LoRAParserAction."""

    def __call__(self, parser, namespace, values, option_string=None):
        if values is None:
            values = []
        if isinstance(values, str):
            raise TypeError("Expected values to be a list")
        lora_list = []
        for item in values:
            if item in [None, ""]:
                continue
            if "=" in item and "," not in item:
                name, path = item.split("=", 1)
                lora_list.append({"name": name, "path": path, "base_model_name": None,
                                  "is_3d_lora_weight": False})
                continue
            try:
                lora_dict = json.loads(item)
                if not isinstance(lora_dict, dict):
                    raise TypeError(
                        "LoRAModulePath() argument after ** must be a mapping, "
                        f"not {type(lora_dict).__name__}"
                    )
                for k in lora_dict:
                    if k not in _LORA_FIELDS:
                        raise TypeError(
                            f"LoRAModulePath.__init__() got an unexpected keyword argument '{k}'"
                        )
                missing = [k for k in ("name", "path") if k not in lora_dict]
                if missing:
                    plural = "s" if len(missing) > 1 else ""
                    names = " and ".join(f"'{m}'" for m in missing)
                    raise TypeError(
                        f"LoRAModulePath.__init__() missing {len(missing)} required "
                        f"positional argument{plural}: {names}"
                    )
                lora_list.append({"base_model_name": None, "is_3d_lora_weight": False, **lora_dict})
            except json.JSONDecodeError:
                parser.error(f"Invalid JSON format for --lora-modules: {item}")
            except TypeError as e:
                parser.error(f"Invalid fields for --lora-modules: {item} - {e}")
        setattr(namespace, self.dest, lora_list)


class DeprecatedLogConfigFileAction(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        print(
            "WARNING: --log-config-file is deprecated; use --logging-config.pylogging_config_file",
            file=sys.stderr,
        )
        setattr(namespace, self.dest, values)


# --------------------------------------------------------------------------
# parser construction
# --------------------------------------------------------------------------
def _default(v: Any) -> Any:
    if v == argparse.SUPPRESS:
        return argparse.SUPPRESS
    if isinstance(v, dict) and ("__repr__" in v or "__dataclass__" in v):
        return None
    return v


def add_serve_arguments(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    deprecated: list[argparse.Action] = []
    for a in _flags.load()["serve"]["actions"]:
        kind = a["action"]
        if kind == "help":
            continue  # argparse already added -h/--help
        opts = a["declared"]
        kwargs: dict[str, Any] = {"dest": a["dest"]} if opts else {}
        default = _default(a["default"])
        if kind == "store":
            kwargs.update(default=default)
            if a["nargs"] is not None:
                kwargs["nargs"] = a["nargs"]
            if a["const"] is not None:
                kwargs["const"] = a["const"]
            t = build_type(a["type"])
            if t is not None:
                kwargs["type"] = t
            if a["choices"] is not None:
                kwargs["choices"] = a["choices"]
            if not opts:  # positional
                kwargs.pop("dest", None)
                act = parser.add_argument(a["dest"], **kwargs)
                continue
            if a["required"]:
                kwargs["required"] = True
        elif kind in ("store_true", "store_false"):
            kwargs.update(action=kind, default=default)
        elif kind == "boolean_optional":
            kwargs.update(action=argparse.BooleanOptionalAction, default=default)
        elif kind == "append":
            kwargs.update(action="append", default=default)
            t = build_type(a["type"])
            if t is not None:
                kwargs["type"] = t
        elif kind == "lora_modules":
            kwargs.update(action=LoRAParserAction, nargs=a["nargs"], default=default,
                          type=build_type(a["type"]))
        elif kind == "deprecated_log_config_file":
            kwargs.update(action=DeprecatedLogConfigFileAction, default=default)
        else:
            raise ValueError(f"unsupported action kind {kind}")
        act = parser.add_argument(*opts, **kwargs)
        if a.get("deprecated"):
            deprecated.append(act)
    return deprecated


class _Parser(argparse.ArgumentParser):
    pass


def build_parsers() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    data = _flags.load()
    top = _Parser(prog="vllm", description="vLLM CLI (llmserve engine simulator)")
    top.add_argument("-v", "--version", action="version", version=data["vllm_version"])
    sub = top.add_subparsers(required=False, dest="subparser")
    serve = None
    for name in data["top_level"]["subcommands"]:
        if name == "serve":
            serve = sub.add_parser(
                "serve",
                usage=data["serve"]["usage"],
                help="Launch a local OpenAI-compatible API server (simulated).",
                description="llmserve engine simulator emulating `vllm serve` "
                f"{data['vllm_version']}.",
            )
            serve._sim_deprecated = add_serve_arguments(serve)  # type: ignore[attr-defined]
        else:
            p = sub.add_parser(name, add_help=False)
            p.add_argument("rest", nargs=argparse.REMAINDER)
    assert serve is not None
    return top, serve


# --------------------------------------------------------------------------
# FlexibleArgumentParser.parse_args() preprocessing (port)
# --------------------------------------------------------------------------
def _load_yaml_subset(path: str) -> dict:
    """Tiny YAML subset reader for --config (flat and nested mappings, block
    lists, flow collections written as JSON, scalars)."""
    with open(path, encoding="utf-8") as f:
        raw_lines = f.read().splitlines()
    lines = []
    for ln in raw_lines:
        s = ln.split(" #", 1)[0].rstrip() if not ln.lstrip().startswith("#") else ""
        if s.strip() and s.strip() != "---":
            lines.append(s)

    def scalar(v: str) -> Any:
        v = v.strip()
        if v == "":
            return None
        if (v[0] == v[-1] == '"') or (v[0] == v[-1] == "'"):
            return v[1:-1]
        low = v.lower()
        if low in ("true", "yes", "on"):
            return True
        if low in ("false", "no", "off"):
            return False
        if low in ("null", "~", "none"):
            return None
        if v[0] in "[{":
            try:
                return json.loads(v)
            except json.JSONDecodeError:
                return v
        try:
            return int(v)
        except ValueError:
            pass
        try:
            return float(v)
        except ValueError:
            return v

    def block(i: int, indent: int) -> tuple[Any, int]:
        if i < len(lines) and lines[i].strip().startswith("- "):
            out_l = []
            while i < len(lines):
                ind = len(lines[i]) - len(lines[i].lstrip())
                if ind < indent or not lines[i].strip().startswith("- "):
                    break
                out_l.append(scalar(lines[i].strip()[2:]))
                i += 1
            return out_l, i
        out: dict = {}
        while i < len(lines):
            ln = lines[i]
            ind = len(ln) - len(ln.lstrip())
            if ind < indent:
                break
            key, _, rest = ln.strip().partition(":")
            i += 1
            if rest.strip() == "":
                if i < len(lines):
                    nind = len(lines[i]) - len(lines[i].lstrip())
                    if nind > ind or lines[i].strip().startswith("- "):
                        out[key.strip()], i = block(i, nind)
                        continue
                out[key.strip()] = None
            else:
                out[key.strip()] = scalar(rest)
        return out, i

    data, _ = block(0, 0)
    if not isinstance(data, dict):
        raise ValueError(f"config file {path} is not a mapping")
    return data


def _config_file_args(path: str, option_strings: set[str]) -> list[str]:
    extension = path.split(".")[-1]
    if extension not in ("yaml", "yml"):
        raise ValueError(f"Config file must be of a yaml/yml type. {extension} supplied")
    config = _load_yaml_subset(path)
    out: list[str] = []
    for key, value in config.items():
        if isinstance(value, bool):
            if value:
                out.append("--" + key)
            elif (no_key := f"--no-{key}") in option_strings:
                out.append(no_key)
        elif isinstance(value, list):
            if value:
                out.append("--" + key)
                out.extend(str(item) for item in value)
        elif isinstance(value, dict):
            out += ["--" + key, json.dumps(value)]
        else:
            out += ["--" + key, str(value)]
    return out


def _pull_args_from_config(args: list[str], option_strings: set[str]) -> list[str]:
    assert args.count("--config") <= 1, "More than one config file specified!"
    index = args.index("--config")
    if index == len(args) - 1:
        raise ValueError("No config file specified! Please check your command-line arguments.")
    config_args = _config_file_args(args[index + 1], option_strings)
    if args[0].startswith("-"):
        return config_args + args[0:index] + args[index + 2:]
    if args[0] == "serve":
        model_in_cli = len(args) > 1 and not args[1].startswith("-")
        model_in_config = any(a == "--model" for a in config_args)
        if not model_in_cli and not model_in_config:
            raise ValueError(
                "No model specified! Please specify model either "
                "as a positional argument or in a config file."
            )
        if model_in_cli:
            return args[:2] + config_args + args[2:index] + args[index + 2:]
        return args[:1] + config_args + args[1:index] + args[index + 2:]
    return [args[0]] + config_args + args[1:index] + args[index + 2:]


def preprocess(args: list[str], option_strings: set[str] | None = None) -> list[str]:
    """Port of FlexibleArgumentParser.parse_args() argv rewriting (vLLM 0.32)."""
    args = list(args)
    warnings: list[str] = []
    if args and args[0] == "serve":
        model_idx = next(
            (i for i, arg in enumerate(args) if re.match(r"^--model(=.+|$)", arg)), None
        )
        if model_idx is not None:
            warnings.append(
                "With `vllm serve`, you should provide the model as a positional argument "
                "or in a config file instead of via the `--model` option. The `--model` "
                "option will be removed in a future version."
            )
            if args[model_idx] == "--model":
                model_tag = args[model_idx + 1] if model_idx + 1 < len(args) else ""
                rest = model_idx + 2
            else:
                model_tag = args[model_idx].removeprefix("--model=")
                rest = model_idx + 1
            args = ["serve", model_tag, *args[1:model_idx], *args[rest:]]
        if (
            len(args) > 1
            and args[1].startswith("-")
            and not any(re.match(r"^--config(=.+|$)", a) for a in args)
            and any(re.match(r"^--served[-_]model[-_]name(=.+|$)", a) for a in args)
        ):
            raise StartupError(
                "`model` should be provided as the first positional argument when "
                "using `vllm serve`. i.e. `vllm serve <model> --<arg> <value>`."
            )
    if "--config" in args:
        try:
            args = _pull_args_from_config(args, option_strings or set())
        except (ValueError, OSError, AssertionError) as e:
            raise StartupError(str(e)) from None

    pattern = re.compile(r"(?<=--)[^\.]*")

    def repl(m: re.Match) -> str:
        return m.group(0).replace("_", "-")

    processed: list[str] = []
    for i, arg in enumerate(args):
        if arg.startswith("--help="):
            processed.append("--help")
        elif arg.startswith("--"):
            if "=" in arg:
                key, value = arg.split("=", 1)
                processed.append(f"{pattern.sub(repl, key, count=1)}={value}")
            else:
                processed.append(pattern.sub(repl, arg, count=1))
        elif arg.startswith("-O") and arg != "-O":
            level = arg[3:] if arg[2] == "=" else arg[2:]
            processed += ["--optimization-level", level]
        elif arg == "-O" and i + 1 < len(args) and args[i + 1] in {"0", "1", "2", "3"}:
            processed.append("--optimization-level")
        else:
            processed.append(arg)

    def nested(keys: list[str], value: Any) -> Any:
        for key in reversed(keys):
            value = {key: value}
        return value

    def merge(orig: dict, upd: dict) -> set[str]:
        dups: set[str] = set()
        for k, v in upd.items():
            if isinstance(v, dict) and isinstance(orig.get(k), dict):
                dups |= {f"{k}.{d}" for d in merge(orig[k], v)}
            elif isinstance(v, list) and isinstance(orig.get(k), list):
                orig[k] += v
            else:
                if k in orig:
                    dups.add(k)
                orig[k] = v
        return dups

    delete: set[int] = set()
    dict_args: dict[str, dict] = defaultdict(dict)
    duplicates: set[str] = set()
    seen: set[str] = set()
    for i, parg in enumerate(processed):
        if i in delete:
            continue
        if parg.startswith("--") and "." not in parg:
            name = parg.split("=", 1)[0]
            if name in seen:
                duplicates.add(name)
            else:
                seen.add(name)
            continue
        if parg.startswith("-") and "." in parg:
            if "=" in parg:
                parg, value_str = parg.split("=", 1)
                if "." not in parg:
                    continue
            else:
                if i + 1 >= len(processed):
                    raise StartupError(f"list index out of range (no value for {parg})")
                value_str = processed[i + 1]
                delete.add(i + 1)
            if parg.endswith("+"):
                parg = parg[:-1]
                value_str = json.dumps(list(value_str.split(",")))
            key, *keys = parg.split(".")
            try:
                value: Any = json.loads(value_str)
            except json.JSONDecodeError:
                try:
                    value = human_readable_int(value_str)
                except (ValueError, argparse.ArgumentTypeError):
                    value = value_str
            duplicates |= {f"{key}.{d}" for d in merge(dict_args[key], nested(keys, value))}
            delete.add(i)
    processed = [a for i, a in enumerate(processed) if i not in delete]
    if duplicates:
        warnings.append("Found duplicate keys " + ", ".join(sorted(duplicates)))
    for dict_arg, dict_value in dict_args.items():
        processed += [dict_arg, json.dumps(dict_value)]
    for w in warnings:
        print(f"WARNING {w}", file=sys.stderr)
    return processed


# --------------------------------------------------------------------------
# entry points
# --------------------------------------------------------------------------
def parse_vllm_argv(argv: list[str]) -> argparse.Namespace:
    """Parse argv as `vllm <argv...>` would. SystemExit(2) on argparse errors,
    StartupError for the errors vLLM raises as exceptions (exit 1)."""
    top, serve = build_parsers()
    processed = preprocess(argv, set(serve._option_string_actions))
    ns = top.parse_args(processed)
    for act in getattr(serve, "_sim_deprecated", []):
        if getattr(ns, act.dest, None) != act.default:
            print(f"WARNING argument '{act.dest}' is deprecated", file=sys.stderr)
    return ns


def _model_name(ns: argparse.Namespace) -> str:
    return ns.model_tag if ns.model_tag is not None else ns.model


def post_validate(ns: argparse.Namespace, env: dict | None = None) -> None:
    """All checks vLLM 0.32 makes after parsing (exit status 1 on failure)."""
    validate_parsed(ns, env)
    startup_checks(ns)


def validate_parsed(ns: argparse.Namespace, env: dict | None = None) -> None:
    """vllm.entrypoints.launchers.cli_args.validate_parsed_serve_args."""
    env = os.environ if env is None else env
    if getattr(ns, "model_tag", None) is not None:
        ns.model = ns.model_tag
    # validate_parsed_serve_args -> validate_chat_template
    ct = ns.chat_template
    if ct is not None and not any(c in ct for c in "{}\n") and not os.path.exists(ct):
        if ct not in _flags.load().get("builtin_chat_templates", []):
            raise StartupError(
                f"The supplied chat template string ({ct}) appears path-like, but doesn't exist!"
            )
    # validate_grpc_port_arg
    if ns.grpc_port is not None:
        if ns.grpc:
            raise StartupError("--grpc and --grpc-port are mutually exclusive. ...")
        if env.get("VLLM_USE_RUST_FRONTEND", "0") not in ("1", "true", "True"):
            raise StartupError("--grpc-port requires VLLM_USE_RUST_FRONTEND=1 vllm serve")


def startup_checks(ns: argparse.Namespace) -> None:
    """ServeSubcommand.cmd() checks and engine start-up (KV connector creation)."""
    if ns.headless and ns.api_server_count is not None and ns.api_server_count > 0:
        raise StartupError(
            f"--api-server-count={ns.api_server_count} cannot be used with --headless "
            "(no API servers are started in headless mode)."
        )
    is_external_lb = ns.data_parallel_external_lb or ns.data_parallel_rank is not None
    if not ns.data_parallel_hybrid_lb and not ns.data_parallel_multi_port_external_lb:
        is_hybrid_lb, is_multi_port = ns.data_parallel_start_rank is not None, False
    else:
        is_hybrid_lb = ns.data_parallel_hybrid_lb
        is_multi_port = ns.data_parallel_multi_port_external_lb
    if sum([is_multi_port, is_external_lb, is_hybrid_lb]) > 1:
        raise StartupError(
            "Cannot use more than one data parallel load balancing mode. "
            "Choose one of: --data-parallel-multi-port-external-lb, "
            "--data-parallel-external-lb (or --data-parallel-rank), "
            "--data-parallel-hybrid-lb (or --data-parallel-start-rank)."
        )
    # engine start-up: KV connector creation (KVConnectorFactory)
    kv = ns.kv_transfer_config
    if kv is not None:
        name = kv.get("kv_connector")
        if name is None:
            raise StartupError("Connector name is not set in KVTransferConfig")
        mod = kv.get("kv_connector_module_path")
        if mod is not None and not mod:
            raise StartupError("kv_connector_module_path cannot be an empty string.")
        if not mod and name not in kvconfig.known_connectors():
            raise StartupError(f"Unsupported connector type: {name}")
