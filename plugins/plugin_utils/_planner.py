# Copyright: llmserve.cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The llmserve plan: one pure-Python computation from the inventory to every instance, rank and port.

``build_plan(groups, hostvars)`` takes what Ansible knows (group membership in inventory order and
each host's variables) and returns a JSON-serialisable plan, or raises ``PlanError`` listing every
problem found, each naming the host and the variable. No Ansible import: plain pytest tests it.
The systems (``_plan_vllm`` for PD vLLM, ...) share this core: Inventory, Ports, Problem.
"""

from __future__ import annotations

import json
import os
import re

PLAN_VERSION = 1
ACCELERATORS = ("nvidia", "ascend_a2", "ascend_a3", "cpu")
# the variable that tells an engine which devices are its own, per accelerator (none on CPU)
DEVICE_ENV = {"nvidia": "CUDA_VISIBLE_DEVICES", "ascend_a2": "ASCEND_RT_VISIBLE_DEVICES",
              "ascend_a3": "ASCEND_RT_VISIBLE_DEVICES"}
# defaults of the variables every system reads; each system module has its own DEFAULTS beside these
DEFAULTS = {
    "llmserve_accelerator": "nvidia",
    "llmserve_reserved_ports": [],
    # env, config, token and rank-table files on the hosts (0640/0600, directories 0750)
    "llmserve_config_dir": "/etc/llmserve",
    # json-file log rotation of every container, set per container (changing Docker's daemon.json would
    # mean restarting dockerd, which stops every container on the host)
    "llmserve_docker_log_max_size": "100m",
    "llmserve_docker_log_max_file": 3,
    # read-only mounts an Ascend container needs from its host (reference/mindie.md §5)
    "llmserve_ascend_mounts": ["/usr/local/Ascend/driver:/usr/local/Ascend/driver:ro",
                               "/usr/local/dcmi:/usr/local/dcmi:ro",
                               "/usr/local/bin/npu-smi:/usr/local/bin/npu-smi:ro",
                               "/etc/hccn.conf:/etc/hccn.conf:ro"],
}
MAX_PORT = 65535


class PlanError(Exception):
    """Every problem found in the inventory; str() gives one line each."""

    def __init__(self, problems):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class Problem:
    __slots__ = ("host", "variable", "message")

    def __init__(self, host, variable, message):
        self.host, self.variable, self.message = host, variable, message

    def __str__(self):
        return "%s: %s: %s" % (self.host or "inventory", self.variable, self.message)

    def __repr__(self):
        return "Problem(%r)" % str(self)


def format_numbers(numbers):
    """[0, 1, 2, 3, 8] -> '0-3,8': the inverse of parse_devices, for people."""
    runs = []
    for n in sorted(numbers):
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    return ",".join(str(a) if a == b else "%d-%d" % (a, b) for a, b in runs)


def parse_devices(text):
    """'0-3,8,10-11' (or a list of ints) -> [0, 1, 2, 3, 8, 10, 11]; ValueError says what is wrong."""
    if isinstance(text, int) and not isinstance(text, bool):
        return [text]
    if isinstance(text, (list, tuple)):
        items = [str(t) for t in text]
    elif isinstance(text, str):
        items = text.split(",")
    else:
        raise ValueError("expected a device list such as \"0-7\" or \"0,1,2,3\", got %r" % (text,))
    devices = []
    for item in items:
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", item)
        if not match:
            raise ValueError("%r is not a device number or range (write \"0-7\" or \"0,1,2,3\", "
                             "no spaces)" % item)
        first, last = int(match.group(1)), int(match.group(2) or match.group(1))
        if last < first:
            raise ValueError("range %r runs backwards; write the lower number first" % item)
        devices.extend(range(first, last + 1))
    if len(set(devices)) != len(devices):
        raise ValueError("%r names a device twice; list each device once" % (text,))
    return devices


class Ports:
    """Every listener on every machine; a second claim on a machine's port is a problem.

    Keyed by address, not inventory name: two inventory hosts on one machine (omni-infer puts its
    proxy host C on a prefill machine) share that machine's ports.
    """

    def __init__(self, problems, address):
        self.problems, self.address = problems, address
        self.by_address = {}

    def reserve(self, host, port, owner):
        self.by_address.setdefault(self.address(host), {})[port] = dict(
            host=host, port=port, service="reserved", instance=owner)

    def claim(self, host, port, service, instance, variable):
        taken = self.by_address.setdefault(self.address(host), {})
        if not 1 <= port <= MAX_PORT:
            self.problems.append(Problem(host, variable, "port %s of %s is outside 1-65535" % (port, service)))
        elif port in taken:
            other = taken[port]
            where = "" if other["host"] == host else " on %s (same address)" % other["host"]
            self.problems.append(Problem(host, variable, "port %d of %s (%s) is already taken by %s (%s)%s; "
                                         "move one of them" % (port, service, instance, other["service"],
                                                               other["instance"], where)))
        else:
            taken[port] = dict(host=host, port=port, service=service, instance=instance)
        return port

    def listeners(self, host):
        return [dict(port=v["port"], service=v["service"], instance=v["instance"])
                for k, v in sorted(self.by_address.get(self.address(host), {}).items())
                if v["host"] == host and v["service"] != "reserved"]


class Inventory:
    """Reads variables with defaults, recording a problem for each bad one."""

    def __init__(self, groups, hostvars, defaults=None):
        self.groups = {g: list(h) for g, h in groups.items()}
        self.hostvars = hostvars
        self.defaults = DEFAULTS if defaults is None else defaults
        self.problems = []

    def get(self, host, name, default=None):
        hv = self.hostvars.get(host, {})
        if name in hv:
            return hv[name]
        return self.defaults.get(name, default)

    def integer(self, host, name, minimum=0, default=None):
        value = self.get(host, name, default)
        try:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)   # int() would silently drop the fraction
            number = int(value)
        except (TypeError, ValueError):
            self.problem(host, name, "must be a whole number, got %r" % (value,))
            return minimum
        if number < minimum or isinstance(value, bool):
            self.problem(host, name, "must be a whole number of at least %d, got %r" % (minimum, value))
            return minimum
        return number

    def required(self, host, name, what):
        value = self.get(host, name)
        if value in (None, ""):
            self.problem(host, name, "is not set; give the %s" % what)
        return value

    def devices(self, host, name):
        value = self.get(host, name)
        if value in (None, ""):
            self.problem(host, name, "is not set; list the host's devices, e.g. \"0-7\"")
            return []
        try:
            return parse_devices(value)
        except ValueError as exc:
            self.problem(host, name, str(exc))
            return []

    def address(self, host):
        return str(self.get(host, "ansible_host") or host)

    def problem(self, host, variable, message):
        self.problems.append(Problem(host, variable, message))


# variables the planner reads: ours, the connection address, and omni-infer's inventory names
OMNI_VARIABLES = frozenset(("ansible_host", "host_ip", "node_rank", "kv_rank", "node_port", "api_port",
                            "global_port_base", "base_api_port", "proxy_port", "port_offset",
                            "ascend_rt_visible_devices", "role"))


SECRET_SUFFIXES = ("_password", "_token", "_secret_key", "_api_key", "_database_url", "_jwt_secret")
# what the plan sees of a secret: that it is set, never its value (plans need no vault password)
SECRET_PLACEHOLDER = "<set>"


def wanted_variable(name):
    return name.startswith("llmserve_") or name in OMNI_VARIABLES


def is_secret_name(name):
    return name.endswith(SECRET_SUFFIXES)


def _systems():
    """Every _plan_<system> module beside this one, in name order (imported late: they import this core)."""
    import importlib
    import pkgutil
    here = os.path.dirname(os.path.abspath(__file__))
    names = sorted(m.name for m in pkgutil.iter_modules([here]) if m.name.startswith("_plan_"))
    return [importlib.import_module("." + name, __package__) for name in names]


def build_plan(groups, hostvars):
    """The plan for this inventory, or PlanError with every problem.

    Each system module (vLLM PD, MindIE, Ray, ...) claims its groups and returns its instances and
    front door; all of them share one port registry, so a collision across systems is found too.
    """
    inv = Inventory(groups, hostvars)
    ports = Ports(inv.problems, inv.address)
    for host in sorted(inv.hostvars):
        reserved = inv.get(host, "llmserve_reserved_ports") or []
        if not isinstance(reserved, (list, tuple)):
            inv.problem(host, "llmserve_reserved_ports", "must be a list of ports, e.g. [8000, 8001], got %r"
                        % (reserved,))
            reserved = []
        for port in reserved:
            try:
                ports.reserve(host, int(port), "llmserve_reserved_ports")
            except (TypeError, ValueError):
                inv.problem(host, "llmserve_reserved_ports", "%r is not a port number; list whole numbers, "
                            "e.g. [8000, 8001]" % (port,))
    instances, doors = [], []
    ran = [s for s in _systems() if any(inv.groups.get(g) for g in s.GROUPS)]
    for system in ran:
        inv.defaults = dict(DEFAULTS, **system.DEFAULTS)   # a system reads its own defaults and the core's
        part = system.plan(inv, ports)
        instances.extend(part["instances"])
        doors.extend([part["front_door"]] if part.get("front_door") else [])
    if not ran:
        inv.problem(None, "groups", "no group of a known system has hosts (e.g. prefill and decode, "
                    "or omni-infer's P, D and C)")
    inv.defaults = DEFAULTS
    engine_hosts = {h for i in instances for h in i["hosts"]}
    _check_hosts(inv, sorted(engine_hosts | {d["host"] for d in doors}), engine_hosts)
    if inv.problems:
        raise PlanError(inv.problems)
    hosts = sorted({h for i in instances for h in i["hosts"]} | {d["host"] for d in doors})
    plan = dict(
        version=PLAN_VERSION,
        hosts={h: dict(address=inv.address(h), accelerator=inv.get(h, "llmserve_accelerator"),
                       listeners=ports.listeners(h), images=_images(h, instances, doors)) for h in hosts},
        instances=instances,
        front_door=doors[0] if len(doors) == 1 else None,
        front_doors=doors,
    )
    return json.loads(json.dumps(plan))   # proves it serialises and hands out plain data


def _images(host, instances, doors):
    """The images a host runs, so the container_host stage pulls exactly these."""
    found = {m["image"] for i in instances for m in i["members"] if m["host"] == host and m.get("image")}
    found |= {d["image"] for d in doors if d["host"] == host and d.get("image")}
    found |= {m["image"] for d in doors for m in d.get("members", []) if m["host"] == host and m.get("image")}
    return sorted(found)


def _check_hosts(inv, hosts, engine_hosts):
    """Two engine hosts at one address are a copy-paste slip; a front door may share a machine."""
    seen = {}
    for host in sorted(engine_hosts):
        addr = inv.address(host)
        if addr in seen:
            inv.problem(host, "ansible_host", "address %s is also %s's; engine hosts need their own address"
                        % (addr, seen[addr]))
        seen.setdefault(addr, host)
    for host in hosts:
        acc = inv.get(host, "llmserve_accelerator")
        if acc not in ACCELERATORS:
            inv.problem(host, "llmserve_accelerator", "%r is not one of %s" % (acc, ", ".join(ACCELERATORS)))
