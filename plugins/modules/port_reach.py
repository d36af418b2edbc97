#!/usr/bin/python
# Copyright: llmserve.cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: port_reach
short_description: Check that a host reaches the ports of its peers, before anything listens there
version_added: 0.1.0
description:
  - "Two halves of one check, run on every host of a cluster at once (the preflight stage): with O(serve), the host
    listens on those of its ports that nothing holds yet, until O(stop_file) appears or O(timeout) has passed (run
    it with C(async)); with O(connect), the host opens a TCP connection to each peer port, retrying for O(wait)
    seconds, and fails naming every host pair and port it cannot reach."
  - A refused connection to a port something listens on, or one that times out, is what a firewall or a security
    group between the hosts does; the failure says which path to open.
author:
  - llmserve.cluster maintainers (@llmserve)
attributes:
  check_mode:
    support: full
    description: Listens and connects in check mode too; both change nothing.
  diff_mode:
    support: none
    description: Nothing to show.
  idempotent:
    support: full
    description: Changes nothing.
options:
  serve:
    description:
      - The ports to listen on. A port in use is left alone (it is the plan's own workload, which preflight's port
        check proved). A connection that comes is accepted and closed; others may come from anything that already
        talks to the port (a router's health checks), so the listeners stay until told to stop.
    type: list
    elements: int
    default: []
  stop_file:
    description: With O(serve), the file whose appearance ends the listening (removed when it starts and ends).
    type: path
    default: /run/llmserve-port-reach.stop
  connect:
    description: The peer ports to reach (the plan's C(hosts[host].peers)).
    type: list
    elements: dict
    default: []
    suboptions:
      peer:
        description: The peer's inventory host.
        type: str
        required: true
      address:
        description: Its address.
        type: str
        required: true
      port:
        description: The port.
        type: int
        required: true
      service:
        description: What listens there.
        type: str
        default: ""
      instance:
        description: The plan's instance it belongs to.
        type: str
        default: ""
      variable:
        description: The inventory variable that sets the port.
        type: str
        default: ""
  timeout:
    description: With O(serve), the seconds to listen at the most.
    type: int
    default: 60
  wait:
    description: With O(connect), the seconds to keep trying a port that refuses (its peer may not listen yet).
    type: int
    default: 15
  host:
    description: This host's inventory name, for the messages.
    type: str
    default: this host
notes:
  - Needs no Python package on the host beyond the standard library.
"""

EXAMPLES = r"""
- name: Listen where peers will check (in the background, until the stop file appears)
  llmserve.cluster.port_reach:
    serve: [8000, 5600]
    timeout: 60
  async: 90
  poll: 0

- name: Reach every peer port
  llmserve.cluster.port_reach:
    connect: "{{ llmserve_plan.hosts[inventory_hostname].peers }}"
    host: "{{ inventory_hostname }}"
"""

RETURN = r"""
reached:
  description: The peer ports reached, as host:port.
  returned: with O(connect)
  type: list
  elements: str
served:
  description: The connections taken per port (the peers', and any other's).
  returned: with O(serve)
  type: dict
"""

import collections
import errno
import os
import selectors
import socket
import time

from ansible.module_utils.basic import AnsibleModule


def serve(ports, timeout, stop_file):
    """Listen on the free ones of `ports` until `stop_file` exists, or `timeout`; {port: connections taken}."""
    sel, taken = selectors.DefaultSelector(), collections.Counter()
    for port in sorted(set(ports)):
        sock = socket.socket(socket.AF_INET6 if socket.has_ipv6 else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            if sock.family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind(("::" if sock.family == socket.AF_INET6 else "0.0.0.0", port))
            sock.listen(64)
        except OSError:
            sock.close()   # in use: the plan's own workload answers instead
            continue
        sel.register(sock, selectors.EVENT_READ, port)
    deadline = time.monotonic() + timeout
    while sel.get_map() and time.monotonic() < deadline and not os.path.exists(stop_file):
        for key, dummy in sel.select(timeout=0.2):
            key.fileobj.accept()[0].close()
            taken[key.data] += 1
    for key in list(sel.get_map().values()):
        key.fileobj.close()
    return dict(taken)


def reach(peer, wait):
    """None when the peer port accepts a connection within `wait` s, else why not."""
    deadline = time.monotonic() + wait
    while True:
        try:
            socket.create_connection((peer["address"], peer["port"]), timeout=3).close()
            return None
        except socket.timeout:
            why = "no answer within 3 s (dropped on the way)"
        except OSError as e:
            why = {errno.ECONNREFUSED: "refused", errno.EHOSTUNREACH: "no route to the host",
                   errno.ENETUNREACH: "no route to its network"}.get(e.errno, e.strerror or str(e))
        if time.monotonic() >= deadline:
            return why
        time.sleep(1)


def main():
    peer = dict(peer=dict(type="str", required=True), address=dict(type="str", required=True),
                port=dict(type="int", required=True), service=dict(type="str", default=""),
                instance=dict(type="str", default=""), variable=dict(type="str", default=""))
    module = AnsibleModule(argument_spec=dict(
        serve=dict(type="list", elements="int", default=[]),
        stop_file=dict(type="path", default="/run/llmserve-port-reach.stop"),
        connect=dict(type="list", elements="dict", options=peer, default=[]),
        timeout=dict(type="int", default=60), wait=dict(type="int", default=15),
        host=dict(type="str", default="this host")), supports_check_mode=True)
    p = module.params
    if p["serve"]:
        if os.path.exists(p["stop_file"]):   # left by an earlier run, it must not end this one
            os.remove(p["stop_file"])
        served = serve(p["serve"], p["timeout"], p["stop_file"])
        if os.path.exists(p["stop_file"]):
            os.remove(p["stop_file"])
        module.exit_json(changed=False, served=served)
    failed, reached = [], []
    for item in p["connect"]:
        why = reach(item, p["wait"])
        if why is None:
            reached.append("%s:%d" % (item["peer"], item["port"]))
            continue
        what = " (%s of %s, set by %s)" % (item["service"], item["instance"], item["variable"]) if item["service"] else ""
        failed.append("%s cannot reach %s at %s port %d%s: %s; open TCP %d from %s to %s (firewall, security group)" % (
            p["host"], item["peer"], item["address"], item["port"], what, why, item["port"], p["host"], item["peer"]))
    if failed:
        module.fail_json(msg="; ".join(failed), reached=reached)
    module.exit_json(changed=False, reached=reached)


if __name__ == "__main__":
    main()
