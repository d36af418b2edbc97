# Copyright: llmserve.cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read the Ray dashboard's node list (GET /api/v0/nodes) against the plan: ray_nodes and ray_joined."""

from __future__ import annotations


def ray_nodes(nodes, planned):
    alive = {n.get("node_ip"): n.get("resources_total") or {} for n in nodes or [] if n.get("state") == "ALIVE"}
    problems = []
    for address, wanted in sorted((planned or {}).items()):
        if address not in alive:
            problems.append("%s is not ALIVE" % address)
            continue
        for name, amount in sorted(wanted.items()):
            got = alive[address].get(name, 0)
            if float(got) != float(amount):
                problems.append("%s has %s %s, the plan %s" % (address, name, _number(got), _number(amount)))
    return problems


def ray_joined(answer, address, before=None, restarted=False):
    """Whether the dashboard's answer lists the node at ``address`` ALIVE. A node just (re)started must show
    as a new node: the entry of the process it replaced stays ALIVE until the head notices it is gone."""
    stale = {n.get("node_id") for n in _entries(before)
             if n.get("node_ip") == address} if restarted else set()
    return any(n.get("node_ip") == address and n.get("state") == "ALIVE" and n.get("node_id") not in stale
               for n in _entries(answer))


def _entries(answer):
    return ((answer or {}).get("data") or {}).get("result", {}).get("result") or []


def _number(value):
    value = float(value)
    return int(value) if value.is_integer() else value


class FilterModule:
    def filters(self):
        return {"ray_nodes": ray_nodes, "ray_joined": ray_joined}
