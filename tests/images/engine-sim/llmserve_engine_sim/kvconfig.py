"""Stdlib re-implementation of vLLM's `--kv-transfer-config` parsing.

vLLM parses the flag with `TypeAdapter(KVTransferConfig).validate_json(val)`
(pydantic, lax mode, `extra="forbid"`), after expanding bare human-readable
numbers (`14k` -> 14000) outside JSON strings, and then runs
`KVTransferConfig.__post_init__`. The field table (names, types, defaults)
comes from vllm_serve_flags.json, dumped from the real class; the reference
cases in that file are replayed by the unit tests to keep this honest.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from . import flags as _flags

PYDANTIC_DOCS = "https://errors.pydantic.dev/2.14/v/"

_BOOL_TRUE = {"1", "on", "t", "true", "y", "yes"}
_BOOL_FALSE = {"0", "off", "f", "false", "n", "no"}


class KVConfigError(ValueError):
    """Raised with a pydantic-style multi-line message."""


def human_readable_int(value: str) -> int:
    """Port of vllm.utils.argparse_utils.human_readable_int."""
    value = value.strip()
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([kKmMgGtT])", value)
    if match:
        decimal = {"k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
        binary = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
        number, suffix = match.groups()
        if suffix in decimal:
            return int(float(number) * decimal[suffix])
        try:
            return int(number) * binary[suffix]
        except ValueError as e:
            import argparse

            raise argparse.ArgumentTypeError(
                "Decimals are not allowed "
                f"with binary suffixes like {suffix}. Did you mean to use "
                f"{number}{suffix.lower()} instead?"
            ) from e
    return int(value)


def expand_json_human_readable_numbers(val: str) -> str:
    """Port of vllm.engine.arg_utils._expand_json_human_readable_numbers."""
    parts = re.split(r'("(?:[^"\\]|\\.)*")', val)
    for i in range(0, len(parts), 2):
        parts[i] = re.sub(
            r"\b\d+(?:\.\d+)?[kKmMgGtT]\b",
            lambda m: str(human_readable_int(m.group())),
            parts[i],
        )
    return "".join(parts)


def _py_repr(v: Any) -> str:
    return repr(v)


def _input_type(v: Any) -> str:
    return type(v).__name__ if v is not None else "NoneType"


def _err(loc: str | None, msg: str, etype: str, value: Any) -> dict:
    return {"loc": loc, "msg": msg, "type": etype, "input": value}


def _format(errors: list[dict], title: str = "KVTransferConfig") -> str:
    n = len(errors)
    lines = [f"{n} validation error{'s' if n != 1 else ''} for {title}"]
    for e in errors:
        if e["loc"]:
            lines.append(e["loc"])
        iv = e["input"]
        ivs = _py_repr(iv)
        if isinstance(iv, str) and len(ivs) > 50:
            ivs = ivs[:25] + "..." + ivs[-24:]
        lines.append(
            f"  {e['msg']} [type={e['type']}, input_value={ivs}, input_type={_input_type(iv)}]"
        )
        lines.append(f"    For further information visit {PYDANTIC_DOCS}{e['type']}")
    return "\n".join(lines)


def _validate_field(name: str, spec: dict, value: Any) -> tuple[Any, dict | None]:
    kind = spec["kind"]
    if value is None:
        if spec.get("nullable"):
            return None, None
        if kind == "literal":
            return None, _literal_error(name, spec["values"], value)
        names = {"str": ("string_type", "Input should be a valid string"),
                 "int": ("int_type", "Input should be a valid integer"),
                 "bool": ("bool_type", "Input should be a valid boolean"),
                 "dict": ("dict_type", "Input should be an object"),
                 "float": ("float_type", "Input should be a valid number"),
                 "list": ("list_type", "Input should be a valid list")}
        et, msg = names[kind]
        return None, _err(name, msg, et, value)
    if kind == "str":
        if isinstance(value, str):
            return value, None
        return None, _err(name, "Input should be a valid string", "string_type", value)
    if kind == "int":
        if isinstance(value, bool):
            return int(value), None
        if isinstance(value, int):
            return value, None
        if isinstance(value, float):
            if value.is_integer():
                return int(value), None
            return None, _err(
                name,
                "Input should be a valid integer, got a number with a fractional part",
                "int_from_float",
                value,
            )
        if isinstance(value, str):
            s = value.strip()
            if re.fullmatch(r"[+-]?\d+", s):
                return int(s), None
            return None, _err(
                name,
                "Input should be a valid integer, unable to parse string as an integer",
                "int_parsing",
                value,
            )
        return None, _err(name, "Input should be a valid integer", "int_type", value)
    if kind == "bool":
        if isinstance(value, bool):
            return value, None
        if isinstance(value, (int, float)):
            if value in (0, 1):
                return bool(value), None
            return None, _err(
                name, "Input should be a valid boolean, unable to interpret input",
                "bool_parsing", value,
            )
        if isinstance(value, str):
            low = value.strip().lower()
            if low in _BOOL_TRUE:
                return True, None
            if low in _BOOL_FALSE:
                return False, None
            return None, _err(
                name, "Input should be a valid boolean, unable to interpret input",
                "bool_parsing", value,
            )
        return None, _err(name, "Input should be a valid boolean", "bool_type", value)
    if kind == "dict":
        if isinstance(value, dict):
            return value, None
        return None, _err(name, "Input should be an object", "dict_type", value)
    if kind == "list":
        if isinstance(value, list):
            return value, None
        return None, _err(name, "Input should be a valid list", "list_type", value)
    if kind == "literal":
        if value in spec["values"] and type(value) is type(spec["values"][0]):
            return value, None
        return None, _literal_error(name, spec["values"], value)
    raise AssertionError(f"unknown field kind {kind}")


def _literal_error(name: str, values: list, value: Any) -> dict:
    rendered = [repr(v) for v in values]
    if len(rendered) > 1:
        expected = ", ".join(rendered[:-1]) + " or " + rendered[-1]
    else:
        expected = rendered[0]
    return _err(name, f"Input should be {expected}", "literal_error", value)


def validate_obj(data: Any, raw_for_errors: Any = None) -> dict:
    """Validate an already-decoded JSON value as KVTransferConfig."""
    info = _flags.load()["kv_transfer_config"]
    fields: dict = info["fields"]
    if not isinstance(data, dict):
        raise KVConfigError(
            _format([_err(None, "Input should be an object", "dataclass_type", data)])
        )
    errors = []
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key not in fields:
            if info.get("extra") == "forbid":
                errors.append(
                    _err(key, "Unexpected keyword argument", "unexpected_keyword_argument", value)
                )
            continue
        v, e = _validate_field(key, fields[key]["type"], value)
        if e:
            errors.append(e)
        else:
            out[key] = v
    if errors:
        raise KVConfigError(_format(errors))
    result: dict[str, Any] = {}
    for name, f in fields.items():
        if name in out:
            result[name] = out[name]
        else:
            d = f["default"]
            result[name] = json.loads(json.dumps(d))  # deep copy
    # __post_init__
    roles = [v for v in fields["kv_role"]["type"]["values"]]
    roles_t = "(" + ", ".join(repr(r) for r in roles) + ")"
    if result["engine_id"] is None:
        result["engine_id"] = str(uuid.uuid4())
    post_msg = None
    if result["kv_role"] is not None and result["kv_role"] not in roles:
        post_msg = f"Unsupported kv_role: {result['kv_role']}. Supported roles are {roles_t}"
    elif result["kv_connector"] is not None and result["kv_role"] is None:
        post_msg = (
            "Please specify kv_role when kv_connector "
            f"is set, supported roles are {roles_t}"
        )
    if post_msg:
        raise KVConfigError(_format([_err(None, f"Value error, {post_msg}", "value_error", data)]))
    return result


def validate_json(val: str) -> dict:
    """Equivalent of TypeAdapter(KVTransferConfig).validate_json(expand(val))."""
    text = expand_json_human_readable_numbers(val)
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except (json.JSONDecodeError, ValueError) as e:
        msg = getattr(e, "msg", str(e))
        raise KVConfigError(
            _format([_err(None, f"Invalid JSON: {msg}", "json_invalid", text)])
        ) from None
    return validate_obj(data)


def _reject_constant(name: str):
    raise ValueError(f"invalid constant {name}")


def known_connectors() -> list[str]:
    return list(_flags.load()["kv_transfer_config"]["registered_connectors"])
