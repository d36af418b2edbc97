# Copyright: llmserve.cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Expand a compact topology file into the llmserve inventory model (the inventory plugin
``llmserve.cluster.topology`` is a thin layer over this; no Ansible import, plain pytest tests it).

``expand(config)`` takes the file's mapping and returns::

    {"groups":     {"prefill": [host, ...], "decode": [...], "proxy": [...]},   # inventory order
     "group_vars": {"all": {...}, "prefill": {...}, "decode": {...}, "proxy": {...}},
     "hosts":      {host: {variable: value}},                                     # file order
     "instances":  [{"name": "prefill-0", "role": "prefill", "hosts": [...]}]}

Hosts are consumed in the order listed: the prefill instances, then the decode instances, then
the proxy host. Every host of an instance gets ``llmserve_instance: "<index>"``, so the planner
names the instances ``prefill-0``, ``prefill-1``, ``decode-0``. A wrong file raises
``TopologyError`` with every problem found, one line each: ``<key>: <what is wrong>; <what to do>``.
"""

from __future__ import annotations

import difflib
import itertools
import re
from collections.abc import Mapping

from ._planner import ACCELERATORS, parse_devices
from ._plan_vllm import KV_CONNECTORS

PLUGIN_NAMES = ("llmserve.cluster.topology",)
ROLES = ("prefill", "decode")
# top-level settings: each becomes the variable llmserve_<key> on the group all
SETTINGS = {
    "model": "str",
    "served_model_name": "str",
    "image": "str",
    "accelerator": "str",
    "kv_connector": "str",
    "kv_shared_path": "str",
    "kv_extra_config": "dict",
    "vllm_extra_args": "list",
    "vllm_env": "dict",
}
# keys the inventory plugin itself reads (constructed features); the expansion ignores them
PLUGIN_KEYS = ("plugin", "compose", "groups", "keyed_groups", "strict", "leading_separator", "use_extra_vars")
TOP_KEYS = tuple(SETTINGS) + ("hosts", "prefill", "decode", "proxy", "vars") + PLUGIN_KEYS
ROLE_KEYS = ("instances", "hosts_per_instance", "devices", "tensor_parallel_size", "pipeline_parallel_size", "vars")
# role keys that are variables of the role's group
ROLE_VARIABLES = {"devices": "llmserve_devices", "tensor_parallel_size": "llmserve_tensor_parallel_size",
                  "pipeline_parallel_size": "llmserve_pipeline_parallel_size"}
PROXY_KEYS = ("hosts", "colocate", "vars")
HOST_KEYS = ("name", "address", "vars")
# variables the layout sets; a vars section may not set them
LAYOUT_VARIABLES = {"llmserve_instance": "the layout numbers the instances",
                    "ansible_host": "give the address as the host's address"}
RESERVED_NAMES = ("all", "ungrouped", "prefill", "decode", "proxy")
_RANGE = re.compile(r"\[(\d+):(\d+)(?::(\d+))?\]")
_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class TopologyError(ValueError):
    """Every problem in a topology file; str() gives one line each."""

    def __init__(self, problems):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_templated(value):
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def _unknown(problems, where, keys, known):
    for key in keys:
        if key in known:
            continue
        close = difflib.get_close_matches(str(key), known, n=1)
        hint = "did you mean %r?" % close[0] if close else "known keys: %s" % ", ".join(known)
        problems.append("%s%s: unknown key; %s" % (where, key, hint))


def expand_pattern(text):
    """'gpu[01:03]' -> ['gpu01', 'gpu02', 'gpu03']; '10.0.[0:1].[1:2]' -> 4 names; ValueError if bad."""
    parts, ranges, pos = [], [], 0
    for match in _RANGE.finditer(text):
        parts.append(text[pos:match.start()])
        first, last, step = match.group(1), match.group(2), int(match.group(3) or 1)
        if int(last) < int(first) or step < 1:
            raise ValueError("range [%s] must count upwards in steps of at least 1" % match.group(0)[1:-1])
        width = len(first) if first.startswith("0") and len(first) > 1 else 0
        ranges.append(["%0*d" % (width, n) for n in range(int(first), int(last) + 1, step)])
        pos = match.end()
    parts.append(text[pos:])
    if any("[" in p or "]" in p for p in parts):
        raise ValueError("%r has a bracket that is not a range such as [1:8] or [01:16]" % text)
    names = []
    for combo in itertools.product(*ranges):
        names.append("".join(p + c for p, c in zip(parts, combo + ("",))))
    return names


def _check_vars(problems, where, value, taken=None):
    """A vars mapping: variable names only, not the ones the layout sets, not given twice."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        problems.append("%s: must be a mapping of variable: value, got %s" % (where, type(value).__name__))
        return {}
    for name in value:
        if not isinstance(name, str) or not _VARIABLE.fullmatch(name):
            problems.append("%s: %r is not a variable name (letters, digits and _, not starting with a digit)"
                            % (where, name))
        elif name in LAYOUT_VARIABLES:
            problems.append("%s.%s: is set by the topology (%s); remove it" % (where, name, LAYOUT_VARIABLES[name]))
        elif taken and name in taken:
            problems.append("%s.%s: is also given as %s; keep one of them" % (where, name, taken[name]))
    return dict(value)


def _count(problems, where, value, default, minimum=1):
    if value is None:
        return default
    if not _is_int(value) or value < minimum:
        problems.append("%s: must be a whole number of at least %d, got %r" % (where, minimum, value))
        return None
    return value


def _settings(problems, config):
    result = {}
    for key, kind in SETTINGS.items():
        if key not in config:
            continue
        value = config[key]
        if kind == "str" and (not isinstance(value, str) or not value.strip()):
            problems.append("%s: must be a non-empty string, got %r; quote it" % (key, value))
            continue
        if kind == "dict" and not isinstance(value, Mapping):
            problems.append("%s: must be a mapping, got %s" % (key, type(value).__name__))
            continue
        if kind == "list":
            if not isinstance(value, (list, tuple)) or any(isinstance(a, (Mapping, list, tuple)) or a is None
                                                           for a in value):
                problems.append("%s: must be a list of strings, e.g. [--enforce-eager, --max-model-len, \"4096\"]"
                                % key)
                continue
        if key == "accelerator" and value not in ACCELERATORS:
            problems.append("accelerator: %r is not one of %s" % (value, ", ".join(ACCELERATORS)))
            continue
        if key == "kv_connector" and value not in KV_CONNECTORS and not _is_templated(value):
            problems.append("kv_connector: %r is not a KV connector llmserve knows (%s)"
                            % (value, ", ".join(sorted(KV_CONNECTORS))))
            continue
        result["llmserve_" + key] = value
    return result


def _role(problems, config, role, all_vars):
    """One of prefill/decode -> (instances, hosts_per_instance, group vars) or None if unusable."""
    where = role
    section = config.get(role)
    if section is None:
        problems.append("%s: is missing; give at least {instances: 1, devices: \"0-7\"}" % role)
        return None
    if not isinstance(section, Mapping):
        problems.append("%s: must be a mapping such as {instances: 1, hosts_per_instance: 1, devices: \"0-7\"}, "
                        "got %r" % (role, section))
        return None
    _unknown(problems, where + ".", section, ROLE_KEYS)
    before = len(problems)
    instances = _count(problems, where + ".instances", section.get("instances"), 1)
    per_instance = _count(problems, where + ".hosts_per_instance", section.get("hosts_per_instance"), 1)
    group_vars = {}
    for key, variable in ROLE_VARIABLES.items():
        if key not in section:
            continue
        value = section[key]
        if value is None:
            problems.append("%s.%s: is empty; give a value or remove the key" % (role, key))
            continue
        if key == "devices":
            if not _is_templated(value):
                try:
                    parse_devices(value)
                except ValueError as exc:
                    problems.append("%s.devices: %s" % (role, exc))
                    continue
        elif _count(problems, "%s.%s" % (role, key), value, 1) is None:
            continue
        group_vars[variable] = value
    taken = {v: "%s.%s" % (role, k) for k, v in ROLE_VARIABLES.items() if k in section}
    group_vars.update(_check_vars(problems, role + ".vars", section.get("vars"), taken))
    if len(problems) == before:
        _check_split(problems, role, group_vars, all_vars)
    if instances is None or per_instance is None:
        return None
    return instances, per_instance, group_vars


def _check_split(problems, role, group_vars, all_vars):
    """The role's devices must split into groups of TP x PP (when they are literal values)."""
    def pick(name, default):
        return group_vars.get(name, all_vars.get(name, default))
    devices = pick("llmserve_devices", None)
    tp, pp = pick("llmserve_tensor_parallel_size", 1), pick("llmserve_pipeline_parallel_size", 1)
    if devices is None or not _is_int(tp) or not _is_int(pp) or _is_templated(devices):
        return
    try:
        count = len(parse_devices(devices))
    except ValueError:
        return   # reported where it is given
    if count % (tp * pp):
        problems.append("%s.devices: %d devices per host cannot be split into groups of tensor_parallel_size %d x "
                        "pipeline_parallel_size %d; change devices or the parallel sizes" % (role, count, tp, pp))


def _proxy(problems, config):
    """-> (hosts it takes from the list, colocate, group vars) or None."""
    section = config.get("proxy")
    if section is None:
        return 1, False, {}
    if not isinstance(section, Mapping):
        problems.append("proxy: must be a mapping, {hosts: 1} or {colocate: true}, got %r" % (section,))
        return None
    _unknown(problems, "proxy.", section, PROXY_KEYS)
    colocate = section.get("colocate", False)
    if not isinstance(colocate, bool):
        problems.append("proxy.colocate: must be true or false, got %r" % (colocate,))
        return None
    group_vars = _check_vars(problems, "proxy.vars", section.get("vars"))
    if colocate:
        if section.get("hosts") not in (None, 0):
            problems.append("proxy: colocate: true puts the router on the first prefill host; remove hosts, "
                            "or remove colocate to give the router its own host")
            return None
        return 0, True, group_vars
    count = section.get("hosts", 1)
    if count != 1 or not _is_int(count):
        problems.append("proxy.hosts: must be 1 (one router is the front door), got %r; or use colocate: true"
                        % (count,))
        return None
    return 1, False, group_vars


def _hosts(problems, config):
    """-> [(name, address or None, vars)] in order, or None if unusable."""
    items = config.get("hosts")
    if items is None:
        problems.append("hosts: is missing; list the machines in order, e.g. [10.0.0.1, {name: gpu2, address: "
                        "10.0.0.2}]")
        return None
    if not isinstance(items, (list, tuple)) or not items:
        problems.append("hosts: must be a non-empty list of addresses or {name, address, vars} mappings")
        return None
    hosts = []
    for index, item in enumerate(items):
        where = "hosts[%d]" % index
        if isinstance(item, str):
            name, address, host_vars = item, item, {}
        elif isinstance(item, Mapping):
            _unknown(problems, where + ".", item, HOST_KEYS)
            name, address = item.get("name"), item.get("address")
            if name is None and address is None:
                problems.append("%s: give a name, an address or both" % where)
                continue
            host_vars = _check_vars(problems, where + ".vars", item.get("vars"))
        else:
            problems.append("%s: must be an address or a {name, address, vars} mapping, got %r" % (where, item))
            continue
        expanded = {}
        for key, value in (("name", name), ("address", address)):
            if value is None:
                continue
            if not isinstance(value, str) or not value or any(c.isspace() for c in value) or "," in value:
                problems.append("%s.%s: %r is not a host name or address (no spaces or commas)" % (where, key, value))
                continue
            try:
                expanded[key] = expand_pattern(value)
            except ValueError as exc:
                problems.append("%s.%s: %s" % (where, key, exc))
        if len(expanded) != (name is not None) + (address is not None):
            continue
        names = expanded.get("name") or expanded["address"]
        addresses = expanded.get("address") or [None] * len(names)
        if len(names) != len(addresses):
            problems.append("%s: name expands to %d hosts but address to %d; make the ranges the same length"
                            % (where, len(names), len(addresses)))
            continue
        for one_name, one_address in zip(names, addresses):
            hosts.append((where, one_name, one_address, host_vars))
    seen_names, seen_addresses = {}, {}
    for where, name, address, dummy in hosts:
        if name in RESERVED_NAMES:
            problems.append("%s: %r is a group name of the inventory; name the host differently" % (where, name))
        if name in seen_names:
            problems.append("%s: host name %r is listed twice (also %s); every host appears once"
                            % (where, name, seen_names[name]))
        seen_names.setdefault(name, where)
        machine = address or name
        if machine in seen_addresses and seen_addresses[machine][1] != name:
            problems.append("%s: address %s is also %s's; each host of the layout is its own machine (the router can "
                            "share the first prefill host with proxy: {colocate: true})"
                            % (where, machine, seen_addresses[machine][1]))
        seen_addresses.setdefault(machine, (where, name))
    return [(n, a, v) for dummy, n, a, v in hosts]


def expand(config):
    """The llmserve inventory for a topology mapping; TopologyError lists every problem."""
    problems = []
    if not isinstance(config, Mapping):
        raise TopologyError(["topology: the file must be a YAML mapping with plugin: %s" % PLUGIN_NAMES[0]])
    _unknown(problems, "", config, TOP_KEYS)
    all_vars = _settings(problems, config)
    all_vars.update(_check_vars(problems, "vars", config.get("vars"),
                                {"llmserve_" + k: k for k in SETTINGS if k in config}))
    roles = {role: _role(problems, config, role, all_vars) for role in ROLES}
    proxy = _proxy(problems, config)
    hosts = _hosts(problems, config)
    if problems or hosts is None or proxy is None or None in roles.values():
        raise TopologyError(problems or ["topology: the layout could not be read"])

    proxy_count, colocate, proxy_vars = proxy
    wanted = [(role, roles[role][0], roles[role][1]) for role in ROLES]
    needed = sum(n * per for dummy, n, per in wanted) + proxy_count
    if len(hosts) != needed:
        layout = ", ".join("%s %d x %d" % (role, n, per) for role, n, per in wanted)
        layout += ", proxy %d" % proxy_count if proxy_count else ", proxy colocated"
        if len(hosts) < needed:
            fix = "add %d host(s) to hosts or shrink the layout" % (needed - len(hosts))
        else:
            fix = "remove %d host(s) from hosts or grow the layout" % (len(hosts) - needed)
        raise TopologyError(["hosts: the layout (%s) needs %d hosts but %d are listed; %s"
                             % (layout, needed, len(hosts), fix)])

    result = dict(groups={"prefill": [], "decode": [], "proxy": []},
                  group_vars={"all": all_vars, "prefill": roles["prefill"][2], "decode": roles["decode"][2],
                              "proxy": proxy_vars},
                  hosts={}, instances=[])
    queue = list(hosts)
    for role, count, per in wanted:
        for index in range(count):
            members = []
            for dummy in range(per):
                name, address, host_vars = queue.pop(0)
                variables = {"ansible_host": address} if address is not None else {}
                variables["llmserve_instance"] = str(index)
                variables.update(host_vars)
                result["hosts"][name] = variables
                result["groups"][role].append(name)
                members.append(name)
            result["instances"].append(dict(name="%s-%d" % (role, index), role=role, hosts=members))
    if colocate:
        result["groups"]["proxy"].append(result["groups"]["prefill"][0])
    else:
        name, address, host_vars = queue.pop(0)
        variables = {"ansible_host": address} if address is not None else {}
        variables.update(host_vars)
        result["hosts"][name] = variables
        result["groups"]["proxy"].append(name)
    return result
