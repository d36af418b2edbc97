#!/usr/bin/python
# Copyright: llmserve.cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: port_check
short_description: Tell whether the ports a host's workloads will listen on are free, or held by those workloads
version_added: 0.1.0
description:
  - Reads the host's TCP listening sockets (C(/proc/net/tcp) and C(tcp6)) and the processes that hold them, and
    fails when a planned port is held by a process that is not one of O(containers) or O(units) (the plan's own
    workloads on the host, which a re-deploy replaces), naming the port, its service and instance, the variable
    that sets it, and the process (PID and command line).
  - A process belongs to a container or unit when it is its main process (Docker's C(State.Pid), systemd's
    C(MainPID)) or descends from it, so containers on the host network count as their own, and C(docker-proxy)
    does not.
  - Changes nothing.
author:
  - llmserve.cluster maintainers (@llmserve)
attributes:
  check_mode:
    support: full
    description: Only reads, in check mode too.
  diff_mode:
    support: none
    description: Nothing to show.
  idempotent:
    support: full
    description: Only reads.
options:
  listeners:
    description: The ports the host's workloads will listen on (the plan's C(hosts[host].listeners)).
    type: list
    elements: dict
    required: true
    suboptions:
      port:
        description: TCP port.
        type: int
        required: true
      service:
        description: What listens there.
        type: str
        default: ""
      instance:
        description: The plan's instance.
        type: str
        default: ""
      variable:
        description: The inventory variable that sets the port, named in the failure.
        type: str
  containers:
    description: Names of the plan's containers on the host; a port one of them holds is theirs.
    type: list
    elements: str
    default: []
  units:
    description: Names of the plan's systemd units on the host (a Ray node run as a service); as O(containers).
    type: list
    elements: str
    default: []
  proc:
    description: Where the process table is mounted.
    type: path
    default: /proc
extends_documentation_fragment:
  - llmserve.cluster.docker_daemon
notes:
  - Needs root to see every process's sockets; without it a port held by another user's process is reported as
    held by an unknown process.
"""

EXAMPLES = r"""
- name: Are this host's planned ports free (or ours)?
  llmserve.cluster.port_check:
    listeners: "{{ llmserve_plan.hosts[inventory_hostname].listeners }}"
    containers: "{{ llmserve_plan.hosts[inventory_hostname].workloads | selectattr('container') | map(attribute='name') }}"
    units: "{{ llmserve_plan.hosts[inventory_hostname].workloads | selectattr('service') | map(attribute='service.unit') }}"
"""

RETURN = r"""
listeners:
  description: Each planned port and who holds it.
  returned: always
  type: list
  elements: dict
  sample: [{port: 8000, service: vllm-api, instance: prefill-node1, state: ours, pid: 4242,
            owner: llmserve-prefill-node1, process: "vllm serve /models/tiny-llama --port 8000"}]
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.llmserve.cluster.plugins.module_utils.docker_api import (
    DOCKER_ARGS, Daemon, DockerError, NotFound)


def listening(proc):
    """{port: {socket inode}} of the TCP sockets in LISTEN state, IPv4 and IPv6."""
    found = {}
    for table in ("tcp", "tcp6"):
        try:
            with open(os.path.join(proc, "net", table)) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) > 9 and fields[3] == "0A":
                found.setdefault(int(fields[1].rsplit(":", 1)[1], 16), set()).add(fields[9])
    return found


def holders(proc, inodes):
    """{inode: pid} of the processes holding those sockets."""
    wanted = {"socket:[%s]" % inode: inode for inode in inodes}
    found = {}
    for pid in (p for p in os.listdir(proc) if p.isdigit()):
        fd_dir = os.path.join(proc, pid, "fd")
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(os.path.join(fd_dir, fd))
            except OSError:
                continue
            if target in wanted:
                found.setdefault(wanted[target], int(pid))
    return found


def parent(proc, pid):
    try:
        with open(os.path.join(proc, str(pid), "stat")) as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def command_line(proc, pid):
    try:
        with open(os.path.join(proc, str(pid), "cmdline"), "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()[:160]
    except OSError:
        return "?"


def owner_of(proc, pid, mains):
    """The container or unit (of {main pid: name}) whose main process is pid or one of its ancestors, or None."""
    seen = set()
    while pid > 1 and pid not in seen:
        if pid in mains:
            return mains[pid]
        seen.add(pid)
        pid = parent(proc, pid)
    return None


def main():
    module = AnsibleModule(
        argument_spec=dict(
            listeners=dict(type="list", elements="dict", required=True, options=dict(
                port=dict(type="int", required=True), service=dict(type="str", default=""),
                instance=dict(type="str", default=""), variable=dict(type="str"))),
            containers=dict(type="list", elements="str", default=[]),
            units=dict(type="list", elements="str", default=[]),
            proc=dict(type="path", default="/proc"),
            **DOCKER_ARGS),
        supports_check_mode=True,
    )
    p = module.params
    mains = {}
    if p["containers"]:
        try:
            daemon = Daemon(module)
            for name in p["containers"]:
                try:
                    state = daemon.get_json("/containers/%s/json" % name).get("State") or {}
                except NotFound:
                    continue
                if state.get("Pid"):
                    mains[state["Pid"]] = name
        except (DockerError, OSError) as e:
            module.fail_json(msg="cannot ask the Docker daemon at %s which processes are the plan's containers: %s"
                             % (p["docker_host"], e))
    for unit in p["units"]:
        rc, out, err = module.run_command(["systemctl", "show", "--property", "MainPID", "--value", unit])
        if rc == 0 and out.strip().isdigit() and int(out) > 0:
            mains[int(out)] = unit
    sockets = listening(p["proc"])
    owners = holders(p["proc"], set().union(*[sockets.get(x["port"], set()) for x in p["listeners"]]))
    result, taken = [], []
    for x in p["listeners"]:
        pids = sorted({owners.get(inode, 0) for inode in sockets.get(x["port"], ())})
        entry = dict(port=x["port"], service=x["service"], instance=x["instance"], state="free")
        if pids:
            pid = pids[0]
            name = owner_of(p["proc"], pid, mains) if pid else None
            entry.update(state="ours" if name else "taken", pid=pid, owner=name,
                         process=command_line(p["proc"], pid) if pid else "?")
            if not name:
                taken.append("port %d (%s of %s) is held by %s; stop it, or move the port%s" % (
                    x["port"], x["service"], x["instance"],
                    "PID %d (%s)" % (pid, entry["process"]) if pid else "a process this user cannot see",
                    " (%s)" % x["variable"] if x["variable"] else ""))
        result.append(entry)
    if taken:
        module.fail_json(msg="; ".join(taken), listeners=result)
    module.exit_json(changed=False, listeners=result)


if __name__ == "__main__":
    main()
