# Copyright: llmserve.cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import json
import os

from ansible.module_utils.common.text.converters import to_bytes
from ansible.plugins.action import ActionBase

from ansible_collections.llmserve.cluster.plugins.plugin_utils._planner import (
    PlanError, build_plan, format_numbers, wanted_variable)


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
            wanted[host] = {k: hv[k] for k in hv if wanted_variable(k)}
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
    lines = []
    for inst in plan["instances"]:
        for m in inst["members"]:
            ports = m.get("api_ports") or ([m["port"]] if "port" in m else [])
            lines.append("%s %s on %s (%s) devices %s ranks %d+%d ports %s" % (
                inst["name"], inst["kind"], m["host"], m["address"], format_numbers(m.get("devices", [])) or "-",
                m.get("dp_start_rank", 0), m.get("local_dp", 0), format_numbers(ports) or "none (headless)"))
    for door in plan.get("front_doors", []):
        lines.append("front door %s on %s at %s: %s" % (door["kind"], door["host"], door["url"], ", ".join(
            "%d %s" % (len(urls), side) for side, urls in sorted(door["backends"].items()))))
    return lines
