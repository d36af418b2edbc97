# Copyright: llmserve.cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The llmserve plan: one pure-Python computation from the inventory to every instance, rank and port.

``build_plan(groups, hostvars)`` takes what Ansible knows (group membership in inventory order and
each host's variables) and returns a JSON-serialisable plan, or raises ``PlanError`` listing every
problem found, each naming the host and the variable. It imports nothing of Ansible but its argument
spec validator (ansible.module_utils), so plain pytest tests it.
The systems (``_plan_vllm`` for PD vLLM, ...) share this core: Inventory, Ports, Problem.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import os
import re

import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from . import _workloads

PLAN_VERSION = 2
ACCELERATORS = ("nvidia", "ascend_a2", "ascend_a3", "cpu")
# NPU numbers per host: 0-7 on A2, 0-15 (8 chips of 2 dies) on A3; GPU servers vary
ASCEND_DEVICES = {"ascend_a2": 8, "ascend_a3": 16}
# Every llmserve_* variable a user may set, with its type, default and description: the argument spec of the
# role llmserve.cluster.defaults (ansible-doc -t role llmserve.cluster.defaults shows it). It lies two folders up
# from this file, in a checkout as in an installed collection (ansible_collections/llmserve/cluster/...).
SPEC_FILE = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir,
                                          "roles", "defaults", "meta", "argument_specs.yml"))


def load_spec(path=SPEC_FILE, entry="main"):
    """{variable: option} of an entry point of the argument spec (type, default, choices, elements, ...): main has
    the llmserve_* variables, inventory the inventory's own names the plan reads (ansible_host, omni-infer's)."""
    with open(path, "rb") as source:
        document = yaml.load(source, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    return document["argument_specs"][entry]["options"]


SPEC = load_spec()
# the type of every variable the plan reads, ours and the inventory's own
TYPES = dict(SPEC, **load_spec(entry="inventory"))
# what Inventory.get falls back to: one table for every system
DEFAULTS = {name: option["default"] for name, option in SPEC.items() if option.get("default") is not None}
# what the collection itself sets while it runs (the facts of the plan, ranktable and npu_facts modules, the files
# a stage changed): they reach hostvars by the next stage's plan, a user sets none of them
FACTS = frozenset(("llmserve_plan", "llmserve_ranktables", "llmserve_npu", "llmserve_changed_paths", "llmserve_state"))
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
            taken[port] = dict(host=host, port=port, service=service, instance=instance, variable=variable)
        return port

    def listeners(self, host):
        return [dict(port=v["port"], service=v["service"], instance=v["instance"], variable=v["variable"])
                for k, v in sorted(self.by_address.get(self.address(host), {}).items())
                if v["host"] == host and v["service"] != "reserved"]


class Inventory:
    """Reads variables with defaults, recording a problem for each bad one and which host each name was read on."""

    def __init__(self, groups, hostvars, defaults=None):
        self.groups = {g: list(h) for g, h in groups.items()}
        self.hostvars = hostvars
        self.defaults = DEFAULTS if defaults is None else defaults
        self.problems = []
        self.reads = {}     # host -> names read on it (a value set elsewhere is ignored: see _check_misplaced)
        self.said = set()   # (variable, value) of the mistakes said once for every host that shares them

    def get(self, host, name, default=None):
        self.reads.setdefault(host, set()).add(name)
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
            numbers = parse_devices(value)
        except ValueError as exc:
            self.problem(host, name, str(exc))
            return []
        accelerator = self.get(host, "llmserve_accelerator")
        most = ASCEND_DEVICES.get(accelerator) if isinstance(accelerator, str) else None
        beyond = [n for n in numbers if most and n >= most]
        if beyond:
            self.problem(host, name, "device %d does not exist on an %s host (NPUs 0-%d)" % (beyond[0], accelerator, most - 1))
            return [n for n in numbers if n < most]
        return numbers

    def address(self, host):
        return str(self.get(host, "ansible_host") or host)

    def once(self, host, variable, value, message):
        """A problem of a value many hosts share (each instance reads it from its own master): said of the first."""
        if (variable, repr(value)) not in self.said:
            self.said.add((variable, repr(value)))
            self.problem(host, variable, message)

    def problem(self, host, variable, message):
        """Record a problem; the same one found again (by another member of the instance) is said once."""
        if not any((p.host, p.variable, p.message) == (host, variable, message) for p in self.problems):
            self.problems.append(Problem(host, variable, message))


# variables the planner reads: ours, the connection address, and omni-infer's inventory and playbook names (the
# defaults role's spec, entry point inventory)
OMNI_VARIABLES = frozenset(load_spec(entry="inventory"))


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
    typed, mistyped = _typed(hostvars)   # what the planner reads: each set value as its spec's type
    inv = Inventory(groups, typed)
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
        try:
            part = system.plan(inv, ports)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, StopIteration):
            if not inv.problems:
                raise   # a bug of the planner's own: let it show
            # planning went on past a problem and tripped over it: the problems found so far say what to fix
            raise PlanError(inv.problems) from None
        instances.extend(part["instances"])
        doors.extend([part["front_door"]] if part.get("front_door") else [])
    if not ran:
        inv.problem(None, "groups", "no group of a known system has hosts (e.g. prefill and decode, "
                    "or omni-infer's P, D and C)")
    engine_hosts = {h for i in instances for h in i["hosts"]}
    _check_hosts(inv, sorted(engine_hosts | {d["host"] for d in doors}), instances)
    _check_variables(inv, hostvars, mistyped, instances)
    _check_names(inv, sorted(engine_hosts | {d["host"] for d in doors}))
    if inv.problems:
        raise PlanError(inv.problems)
    hosts = sorted({h for i in instances for h in i["hosts"]} | {d["host"] for d in doors})
    workloads = _workloads.build(inv, instances, doors)
    for host, items in sorted(workloads.items()):   # whatever a name was made of, Docker and the files take it
        for w in items:
            if not DOCKER_NAME.match(w["name"]):
                inv.problem(host, "workload", "%r is not a valid container name; %s" % (w["name"], NAME_RULE))
    # two inventory hosts on one machine may not both start one container or write one file
    shared = _clashes(inv, ((host, thing) for host, items in sorted(workloads.items()) for w in items
                            for thing in [w["name"]] + [f["path"] for f in w["files"]]
                            + [p for p in w["restart_after"] if p[:1] == "/"]))
    for (host, first), things in shared.items():
        inv.problem(host, "ansible_host", "address %s is also %s's, and both would put %s on that machine; put one "
                    "inventory host in both groups, or give each its own machine" % (inv.address(host), first, things[0]))
    if inv.problems:
        raise PlanError(inv.problems)
    peers = _peers(inv, ports, hosts, instances, doors)
    plan = dict(
        version=PLAN_VERSION,
        hosts={h: dict(address=inv.address(h), accelerator=inv.get(h, "llmserve_accelerator"),
                       listeners=ports.listeners(h), peers=peers.get(h, []), images=_images(h, instances, doors),
                       workloads=workloads.get(h, []),
                       groups=_workloads.groups(workloads.get(h, []), inv.get(h, "llmserve_accelerator")))
               for h in hosts},
        instances=instances,
        front_door=doors[0] if len(doors) == 1 else None,
        front_doors=doors,
    )
    return json.loads(json.dumps(plan))   # proves it serialises and hands out plain data


# Who opens a connection to a listener, by its service: the preflight stage checks each such path before any engine
# starts. Ports only clients outside the cluster use (front doors, dashboards, metrics) are not listed.
SAME_INSTANCE = ("vllm-dp-rpc", "vllm-master", "omni-node-port")     # the other hosts of a multi-host engine
FROM_DECODE = ("nixl-side-channel", "mooncake-bootstrap", "llmdatadist-rpc")   # decode reads prefill's KV
FROM_FRONT_DOOR = ("vllm-api",)                                      # the front door sends it requests
# the instance kinds whose hosts connect to a listener of this service (reference/mindie.md 1, the Xinference and
# GPUStack plans): every other node of a Ray cluster; MindIE's Controller polls the Servers and drives the
# Coordinator, the Coordinator forwards requests to the Servers and raises alarms at the Controller, prefill and decode
# Servers exchange KV; Xinference's supervisor and workers call each other; GPUStack's servers use the database and
# the workers, its workers register through the load balancer, which forwards to the servers
RAY = ("ray_head", "ray_worker")
FROM_KINDS = {
    "ray-gcs": RAY, "ray-node-manager": RAY, "ray-object-manager": RAY,
    "mindie-server": ("mindie_controller", "mindie_coordinator"),
    "mindie-server-management": ("mindie_controller",),
    "mindie-server-metrics": ("mindie_controller",),
    "mindie-server-inter-comm": ("mindie_server",),
    "mindie-coordinator-manage": ("mindie_controller",),
    "mindie-coordinator-external": ("mindie_controller",),
    "mindie-controller-alarm": ("mindie_coordinator",),
    "xinference-supervisor-rpc": ("xinference_worker",),
    "xinference-worker-rpc": ("xinference_supervisor",),
    "postgresql": ("gpustack_server",),
    "gpustack-http": ("gpustack_lb",),
    "gpustack-lb": ("gpustack_worker",),
    "gpustack-worker": ("gpustack_server",),
}


def _peers(inv, ports, hosts, instances, doors):
    """{host: [the listeners of other hosts it connects to, with their host and address]}."""
    by_name = {i["name"]: i for i in instances}
    of_kind = {}
    for i in instances:
        of_kind.setdefault(i["kind"], set()).update(i["hosts"])
    if "gpustack_lb" not in of_kind:   # with no load balancer of ours, workers register at the server itself
        of_kind["gpustack_lb"] = of_kind.get("gpustack_worker", set())
    found = {}
    for target in hosts:
        for listener in ports.listeners(target):
            service, instance = listener["service"], by_name.get(listener["instance"])
            if service in SAME_INSTANCE and instance:
                clients = instance["hosts"]
            elif service in FROM_DECODE and instance and instance["kind"] == "vllm_prefill":
                clients = sorted(of_kind.get("vllm_decode", ()))
            elif service in FROM_FRONT_DOOR:
                clients = [d["host"] for d in doors]
            elif service in FROM_KINDS:
                clients = sorted(set().union(*(of_kind.get(kind, set()) for kind in FROM_KINDS[service])))
            else:
                continue
            for client in clients:
                if inv.address(client) != inv.address(target):
                    found.setdefault(client, []).append(dict(listener, peer=target, address=inv.address(target)))
    return {h: sorted(items, key=lambda x: (x["peer"], x["port"])) for h, items in found.items()}


def _images(host, instances, doors):
    """The images a host runs, so the container_host stage pulls exactly these."""
    found = {m["image"] for i in instances for m in i["members"] if m["host"] == host and m.get("image")}
    found |= {d["image"] for d in doors if d["host"] == host and d.get("image")}
    found |= {m["image"] for d in doors for m in d.get("members", []) if m["host"] == host and m.get("image")}
    return sorted(found)


# what Docker accepts as a container name; the plan also names files after its workloads
DOCKER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*$")
NAME_RULE = "container and file names are made of it: use letters, digits, '.', '_' and '-', starting with a letter or digit"


def _check_names(inv, hosts):
    """Host names and instance names become container and file names (llmserve-prefill-<host>, <name>.env)."""
    for host in hosts:
        if not DOCKER_NAME.match(host):
            inv.problem(host, "inventory name", "%r cannot name a container; %s" % (host, NAME_RULE))
        instance = inv.get(host, "llmserve_instance")
        if instance is not None and not DOCKER_NAME.match(str(instance)):
            inv.problem(host, "llmserve_instance", "%r cannot name a container; %s" % (instance, NAME_RULE))


HOST_NAME = re.compile(r"(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")


def is_address(text):
    """An IPv4 or IPv6 address, or a host name (RFC 1123) whose last label is not all digits (10.1.0.312 is a typo
    of an address, not a name)."""
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return bool(HOST_NAME.match(text)) and not text.rsplit(".", 1)[-1].isdigit()


def _clashes(inv, owned):
    """{(host, the host that had it first): [what both put on one machine]}, from (host, thing) pairs: two inventory
    hosts at one address are one machine, whose devices, containers and files each can hold once."""
    first, clashes = {}, {}
    for host, thing in owned:
        other = first.setdefault((inv.address(host), thing), host)
        if other != host:
            clashes.setdefault((host, other), []).append(thing)
    return clashes


def _check_hosts(inv, hosts, instances):
    """Inventory hosts may share a machine (omni-infer's P and D on one node, apart by port_offset; the front door on
    an engine's machine): the Ports registry keeps their ports apart, and here no device goes to two of them."""
    shared = _clashes(inv, ((m["host"], device) for inst in instances for m in inst["members"]
                            for device in m.get("devices") or []))
    for (host, first), devices in shared.items():
        devices = set(devices)
        variable = "ascend_rt_visible_devices" if inv.get(host, "ascend_rt_visible_devices") is not None \
            else "llmserve_devices"
        inv.problem(host, variable, "device%s %s %s also %s's, and both hosts are the machine at %s (one ansible_host): "
                    "if they are two machines give each its own address; if one, give each its own devices"
                    % ("s" if len(devices) > 1 else "", format_numbers(devices), "are" if len(devices) > 1 else "is",
                       first, inv.address(host)))
    for host in hosts:
        addr = inv.address(host)
        if not is_address(addr):
            inv.problem(host, "ansible_host" if inv.get(host, "ansible_host") else "inventory name",
                        "%r is neither an IP address nor a host name; the engines bind to it and every URL names it. "
                        "Give the host's address, e.g. ansible_host: 10.0.0.11 (a port goes in ansible_port)" % addr)
    for host in hosts:
        acc = inv.get(host, "llmserve_accelerator")
        if acc not in ACCELERATORS:
            inv.problem(host, "llmserve_accelerator", "%r is not one of %s" % (acc, ", ".join(ACCELERATORS)))


# ---------------------------------------------------------------- the variables themselves (roles/defaults)

# how a message names a type, and an example value when the spec's default shows none
TYPE_WORDS = {"int": ("a whole number", 1), "bool": ("true or false", True), "float": ("a number", 0.5),
              "str": ("a string", "text"), "path": ("a path", "/srv/llmserve"), "dict": ("a mapping", {"NAME": "value"}),
              "list": ("a list", ["--flag", "value"]), "raw": ("a value", "text"),
              "bytes": ("a size in bytes, or with a unit", "2G")}
ELEMENT_WORDS = {"int": ("whole numbers", [8000, 8001]), "str": ("strings", ["--flag", "value"]),
                 "dict": ("mappings", [{"name": "value"}])}
_VALIDATORS = {}


def _convert(name, value, choices=True):
    """(True, value as Ansible converts a module option of the spec's type) or (False, None) when it cannot.

    Scalars convert as Ansible converts them ("8001" -> 8001, "yes" -> true). A list must be a list and a mapping a
    mapping: Ansible's split of a string at commas (deprecated in ansible-core) would cut an argument such as
    "--x=a,b" in two, and its reading of "A=1" as {A: "1"} is not what anyone means in an inventory. Nor is a
    string made of a list or a mapping."""
    option = TYPES[name]
    kind = option.get("type", "str")
    wanted = {"list": list, "dict": dict}.get(kind)
    if wanted and not isinstance(value, wanted) or kind in ("str", "path") and isinstance(value, (list, dict)):
        return False, None
    validator = _VALIDATORS.get((name, choices))
    if validator is None:
        keys = ("type", "elements", "choices") if choices else ("type", "elements")
        spec = {key: option[key] for key in keys if key in option}
        validator = _VALIDATORS[name, choices] = ArgumentSpecValidator({name: spec})
    result = validator.validate({name: value})
    if result.error_messages:
        return False, None
    return True, result.validated_parameters[name]


def _typed(hostvars):
    """Each host's variables with every llmserve_* value it sets converted to the spec's type ("8001" -> 8001),
    and [(host, name, value)] of those that do not convert. A value of the right type but not one of the choices
    stays, converted, for the planner's own more telling checks; one of the wrong type is taken out (the planner
    goes on with the default, so every other problem is found too and nothing reads a list where it wants a name),
    and the type problem names it."""
    typed, mistyped, seen = {}, [], {}
    for host, variables in hostvars.items():
        typed[host] = converted = dict(variables)
        for name, value in variables.items():
            # null and "" mean "not given" to the planner; a secret arrives as SECRET_PLACEHOLDER, never its value
            if name not in TYPES or value is None or (isinstance(value, str) and value in ("", SECRET_PLACEHOLDER)):
                continue
            key = (name, type(value).__name__, repr(value))
            if key not in seen:
                seen[key] = _convert(name, value)
            ok, good = seen[key]
            if not ok:
                mistyped.append((host, name, value))
                ok, good = _convert(name, value, choices=False) if "choices" in TYPES[name] else (False, None)
            if ok:
                converted[name] = good
            else:
                del converted[name]
    return typed, mistyped


def _show(value):
    """A value as one would write it in YAML."""
    if isinstance(value, (list, dict)):
        return yaml.safe_dump(value, default_flow_style=True, width=10 ** 6).strip()
    return json.dumps(value)


def example(option):
    """An example value of a variable, as YAML: the "e.g. V(...)" of its description, else its default, else one of
    its type."""
    text = str(option.get("description", ""))
    at = text.find("e.g. V(")
    if at >= 0:
        depth = 0
        for end in range(at + len("e.g. V("), len(text)):
            depth += {"(": 1, ")": -1}.get(text[end], 0)
            if depth < 0:
                return text[at + len("e.g. V("):end]
    default = option.get("default")
    if default not in (None, "", [], {}):
        return _show(default)
    if option.get("elements") in ELEMENT_WORDS:
        return _show(ELEMENT_WORDS[option["elements"]][1])
    return _show(TYPE_WORDS.get(option.get("type", "str"), TYPE_WORDS["raw"])[1])


def type_message(name, value):
    """What a variable must be, with an example, and what it is (never a secret's value)."""
    option = TYPES[name]
    kind = option.get("type", "str")
    words = TYPE_WORDS.get(kind, TYPE_WORDS["raw"])[0]
    if option.get("elements"):
        words += " of " + ELEMENT_WORDS.get(option["elements"], ("values",))[0]
    got = "a %s" % type(value).__name__ if option.get("no_log") else repr(value)
    if option.get("choices"):
        return "must be one of %s, got %s" % (", ".join(map(str, option["choices"])), got)
    return "must be %s (%s), e.g. %s, got %s" % (words, kind, example(option), got)


def _check_variables(inv, given, mistyped, instances):
    """Problems of the variables themselves, after planning:
    - a value that is not of its spec's type (one not among its choices only unless the planner said so of the same
      variable and value already);
    - an llmserve_* name the spec does not know ("did you mean ...?");
    - a variable read on the master of a multi-host instance, set to another value on one of its other hosts,
      where the plan reads it nowhere: it would be silently ignored."""
    # a value of the wrong type was taken out before planning: what the planner said of that variable there came
    # from the default, not from what the user wrote; the type problem replaces it
    removed = {(host, name) for host, name, value in mistyped if name not in inv.hostvars.get(host, {})}
    inv.problems[:] = [p for p in inv.problems if (p.host, p.variable) not in removed]
    said = {(p.variable, repr(given.get(p.host, {}).get(p.variable))) for p in inv.problems if p.host}
    flagged = {p.variable for p in inv.problems}
    # a mistake shared by many hosts is said once, of the first of them in the inventory's order
    order = {h: i for i, h in enumerate(dict.fromkeys(h for hosts in inv.groups.values() for h in hosts))}
    for host, name, value in sorted(mistyped, key=lambda m: (m[1], order.get(m[0], len(order)), m[0])):
        if (name, repr(value)) not in said:     # one problem for a mistake shared by many hosts
            said.add((name, repr(value)))
            inv.problem(host, name, type_message(name, value))
    unknown = {}
    for host in sorted(given):
        for name in given[host]:
            if name.startswith("llmserve_") and name not in SPEC and name not in FACTS and name not in flagged:
                unknown.setdefault(name, []).append(host)
    suffixes = {known[len("llmserve_"):]: known for known in SPEC}
    for name, hosts in sorted(unknown.items()):
        close = difflib.get_close_matches(name[len("llmserve_"):], list(suffixes), n=1)
        hint = ("did you mean %s?" % suffixes[close[0]] if close else
                "ansible-doc -t role llmserve.cluster.defaults lists the variables")
        more = " (also set on %s)" % ", ".join(hosts[1:4] + ["..."] * (len(hosts) > 4)) if len(hosts) > 1 else ""
        inv.problem(hosts[0], name, "is not a variable llmserve knows%s; %s" % (more, hint))
    _check_misplaced(inv, instances)


def _check_misplaced(inv, instances):
    """A variable the planner read on an instance's master but never on another host of the instance, set there to
    another value, is ignored there: say so (e.g. llmserve_tensor_parallel_size on a headless data-parallel host)."""
    reported = {(p.host, p.variable) for p in inv.problems}
    for inst in instances:
        master = inst["master"]
        for host in inst["hosts"]:
            if host == master:
                continue
            mine, read = inv.hostvars.get(host, {}), inv.reads.get(host, set())
            for name in sorted(inv.reads.get(master, set())):
                if name in mine and name not in read and (host, name) not in reported and \
                        mine[name] != inv.get(master, name):
                    reported.add((host, name))
                    inv.problem(host, name, "is read from %s, the master of %s; here it is ignored. Set it on %s "
                                "(or for the whole group)" % (master, inst["name"], master))
