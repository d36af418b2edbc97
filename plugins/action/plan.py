# Copyright: llmserve.cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import json
import os

from ansible.module_utils.common.text.converters import to_bytes
from ansible.plugins.action import ActionBase

from ansible_collections.llmserve.cluster.plugins.plugin_utils._planner import (
    SECRET_PLACEHOLDER, PlanError, build_plan, format_numbers, is_secret_name, wanted_variable)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("dest",))

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        dest = self._task.args.get("dest")
        hostvars = task_vars["hostvars"]
        groups = {g: list(h) for g, h in task_vars["groups"].items() if g not in ("all", "ungrouped")}
        wanted = {}
        for host in sorted({h for hosts in groups.values() for h in hosts}):
            hv = hostvars[host]
            # secrets are passed as "set", untemplated: planning needs no vault password
            wanted[host] = {k: SECRET_PLACEHOLDER if is_secret_name(k) else hv[k] for k in hv if wanted_variable(k)}
        try:
            plan = build_plan(groups, wanted)
        except PlanError as exc:
            problems = [str(p) for p in exc.problems]
            result.update(failed=True, problems=problems,
                          msg="the inventory has %d problem(s); nothing was contacted:\n%s"
                          % (len(problems), "\n".join(problems)))
            return result
        result.update(changed=False, ansible_facts=dict(llmserve_plan=plan), summary=summary(plan))
        if dest:
            text = json.dumps(plan, indent=2, sort_keys=True) + "\n"
            path = os.path.expanduser(dest)
            old = open(path, "rb").read() if os.path.exists(path) else None
            if old != to_bytes(text):
                result["changed"] = True
                if not self._task.check_mode:
                    with open(path, "wb") as out:
                        out.write(to_bytes(text))
            result["dest"] = path
        return result


def summary(plan):
    """One line per instance and host (its containers, devices, ranks and listeners) and per front door."""
    lines = []
    for inst in plan["instances"]:
        by_host = {}
        for m in inst["members"]:
            by_host.setdefault(m["host"], []).append(m)
        for host, members in by_host.items():
            ports = [lis["port"] for lis in plan["hosts"][host]["listeners"] if lis["instance"] == inst["name"]]
            devices = {d for m in members for d in m.get("devices") or []}
            ranks = {r for m in members if "local_dp" in m and "dp_start_rank" in m
                     for r in range(m["dp_start_rank"], m["dp_start_rank"] + m["local_dp"])}
            lines.append("%s %s on %s (%s)%s devices %s%s ports %s" % (
                inst["name"], inst["kind"], host, members[0]["address"],
                " %d containers" % len(members) if len(members) > 1 else "",
                format_numbers(devices) or "-", " ranks %s" % format_numbers(ranks) if ranks else "",
                format_numbers(ports) or "none"))
    for door in plan.get("front_doors", []):
        lines.append("front door %s on %s at %s: %s" % (door["kind"], door["host"], door["url"], ", ".join(
            "%d %s" % (len(urls), side) for side, urls in sorted(door["backends"].items()))))
    return lines
