# Copyright: llmserve.cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Helpers shared by the cluster systems (Ray, Xinference, GPUStack) of the plan.

Not a system itself (its name does not start with ``_plan_``), so the core does not run it.

Secrets never enter the plan. A member's ``secret_env`` maps an environment variable to where its
value comes from, and the roles resolve it on the controller at deploy time:

- ``{"variable": "llmserve_x_token", "host": "<inventory_hostname>"}``: the value of that
  inventory variable as that host sees it (keep it in ansible-vault);
- the same with ``"format": "postgresql://u:{}@10.0.0.5:5432/db"``: that value, URL-quoted, put
  in place of ``{}``;
- ``{"host": "<inventory_hostname>", "file": "/var/lib/x/token"}``: the content of a file that the
  system wrote on that host (e.g. GPUStack's generated registration token).

Port ranges (Ray's worker ports, GPUStack's inference and Ray ranges) are too long to list as
listeners: each port is reserved in the shared registry, so any other claim on it is a problem,
and the member lists the range under ``port_ranges``.
"""

from __future__ import annotations

import re

TRUE_WORDS = ("true", "yes", "on", "1")
FALSE_WORDS = ("false", "no", "off", "0")


def secret(variable, host, fmt=None):
    """A secret_env entry: the value of an inventory variable of a host, optionally placed into a format."""
    entry = {"variable": variable, "host": host}
    if fmt is not None:
        entry["format"] = fmt
    return entry


def is_set(inv, host, name):
    """True when the inventory itself gives the variable (a default does not count)."""
    value = inv.hostvars.get(host, {}).get(name)
    return value is not None and value != ""


def boolean(inv, host, name):
    value = inv.get(host, name)
    if isinstance(value, bool):
        return value
    if str(value).lower() in TRUE_WORDS:
        return True
    if str(value).lower() in FALSE_WORDS:
        return False
    inv.problem(host, name, "must be true or false, got %r" % (value,))
    return False


def strings(inv, host, name):
    """A list of strings (extra arguments); a problem when the variable is not a list."""
    value = inv.get(host, name) or []
    if not isinstance(value, (list, tuple)):
        inv.problem(host, name, "must be a list of arguments, e.g. [--flag, value], got %r" % (value,))
        return []
    return [str(v) for v in value]


def mapping(inv, host, name):
    """A dict of environment variables or config keys, with string values."""
    value = inv.get(host, name) or {}
    if not isinstance(value, dict):
        inv.problem(host, name, "must be a mapping of NAME: value, got %r" % (value,))
        return {}
    return {str(k): str(v) for k, v in value.items()}


def port(inv, ports, host, variable, service, instance):
    """Read a port variable of a host and claim it on the host's machine."""
    return ports.claim(host, inv.integer(host, variable, 1), service, instance, variable)


def port_range(inv, host, variable, last_variable=None):
    """'40000-40063' (one variable) or two variables (first, last) -> (first, last), or None when bad."""
    if last_variable:
        first, last = inv.integer(host, variable, 1), inv.integer(host, last_variable, 1)
        if last < first:
            inv.problem(host, last_variable, "%d is below %s %d; the range runs backwards" % (last, variable, first))
            return None
        return first, last
    value = inv.get(host, variable)
    match = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", str(value))
    if not match or int(match.group(2)) < int(match.group(1)):
        inv.problem(host, variable, "must be a port range such as \"40000-40063\" (first-last, inclusive), got %r"
                    % (value,))
        return None
    return int(match.group(1)), int(match.group(2))


def claim_range(inv, ports, host, span, service, instance, variable):
    """Reserve every port of span = (first, last) on the host's machine; a port already used is a problem.

    The ports are reserved, not claimed, so the host's listeners stay short; the member carries
    the range instead (see the module docstring)."""
    if span is None:
        return None
    first, last = span
    if first < 1 or last > 65535:
        inv.problem(host, variable, "range %d-%d of %s is outside 1-65535" % (first, last, service))
        return None
    taken = ports.by_address.get(ports.address(host), {})
    clashes = [taken[p] for p in range(first, last + 1) if p in taken]
    for other in clashes[:3]:
        where = "" if other["host"] == host else " on %s (same address)" % other["host"]
        inv.problem(host, variable, "range %d-%d of %s (%s) holds port %d, already taken by %s (%s)%s; move one "
                    "of them" % (first, last, service, instance, other["port"], other["service"], other["instance"],
                                 where))
    if clashes:
        return None
    owner = "%s (%s)" % (service, instance)
    for number in range(first, last + 1):
        ports.reserve(host, number, owner)
    return dict(first=first, last=last, service=service)


def one_value(inv, hosts, name, lead, why):
    """The lead host's value of a variable that every host must share (e.g. the image: one version)."""
    value = inv.get(lead, name)
    for host in hosts:
        if host != lead and is_set(inv, host, name) and inv.get(host, name) != value:
            inv.problem(host, name, "%r differs from %r on %s; %s" % (inv.get(host, name), value, lead, why))
    return value


def single(inv, group, what, required=True):
    """The one host of a group that must hold exactly one (or, when not required, at most one)."""
    hosts = inv.groups.get(group, [])
    if len(hosts) > 1:
        inv.problem(None, group, "has %d hosts (%s); %s runs on exactly one host" % (len(hosts), ", ".join(hosts), what))
    elif not hosts and required:
        inv.problem(None, group, "has no host; put the host that runs the %s in it" % what)
    return hosts[0] if hosts else None


def not_in_both(inv, group_a, group_b, why):
    both = [h for h in inv.groups.get(group_a, []) if h in inv.groups.get(group_b, [])]
    for host in both:
        inv.problem(host, "groups", "is in both %s and %s; %s" % (group_a, group_b, why))
    return both


ASCEND_DEVICE_NODES = ("/dev/davinci_manager", "/dev/devmm_svm", "/dev/hisi_hdc")


def ascend_devices(inv, host, numbers):
    """The device nodes and read-only driver mounts an Ascend container needs, or none on other accelerators:
    /dev/davinci0 up to the highest device planned on the host (so the numbers in ASCEND_RT_VISIBLE_DEVICES
    mean the same inside as on the host), the driver's own nodes, and llmserve_ascend_mounts."""
    if inv.get(host, "llmserve_accelerator") not in ("ascend_a2", "ascend_a3"):
        return [], []
    top = max(list(numbers) or [-1])
    nodes = ["/dev/davinci%d" % n for n in range(top + 1)] + list(ASCEND_DEVICE_NODES)
    return ["%s:%s:rwm" % (n, n) for n in nodes], [str(v) for v in inv.get(host, "llmserve_ascend_mounts") or []]


# the variable that tells an engine which devices are its own, per accelerator (none on CPU)
DEVICE_ENV = {"nvidia": "CUDA_VISIBLE_DEVICES", "ascend_a2": "ASCEND_RT_VISIBLE_DEVICES",
              "ascend_a3": "ASCEND_RT_VISIBLE_DEVICES"}


def device_env(inv, host, numbers, in_container=True):
    """{variable: devices} that tells an engine its devices, or {} (CPU, or no devices planned). Ascend: the host's
    numbers (the container has /dev/davinci0 up to the highest planned, so they keep their meaning). NVIDIA in a
    container: 0 up to n-1, because Docker's device request gives it exactly its GPUs and CUDA numbers them from 0
    (the host's numbers 4-7 would name GPUs it does not have); on the host itself (a systemd unit), the host's."""
    variable = DEVICE_ENV.get(inv.get(host, "llmserve_accelerator"))
    if not variable or not numbers:
        return {}
    shown = range(len(numbers)) if variable == "CUDA_VISIBLE_DEVICES" and in_container else numbers
    return {variable: ",".join(str(n) for n in shown)}


def device_requests(inv, host, numbers):
    """Docker's request for the NVIDIA GPUs a container uses (none on other accelerators or without devices)."""
    if inv.get(host, "llmserve_accelerator") != "nvidia" or not numbers:
        return []
    return [{"driver": "nvidia", "device_ids": [str(n) for n in numbers], "capabilities": [["gpu"]]}]


def config_file(inv, host, name):
    """The path of a file the collection writes for a workload, in the host's llmserve_config_dir."""
    return "%s/%s" % (inv.get(host, "llmserve_config_dir"), name)


def log_options(inv, host):
    """Docker's json-file rotation for every container of the plan (no daemon restart needed)."""
    return {"max-size": str(inv.get(host, "llmserve_docker_log_max_size")),
            "max-file": str(inv.integer(host, "llmserve_docker_log_max_file", 1))}


def host_port(address, number):
    """address:port, an IPv6 address in brackets ([fd00::1]:8000), as URLs, nginx and Ray's addresses want it."""
    return "%s:%d" % ("[%s]" % address if ":" in address else address, number)


def url(address, number, path="", tls=False):
    return "%s://%s%s" % ("https" if tls else "http", host_port(address, number), path)
