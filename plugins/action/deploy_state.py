# Copyright: llmserve.cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""deploy_state's controller half: the digest of what the deploy wants on this host and the lists of what it
runs (containers, units, files, readiness checks, images), from the plan; then the module runs on the host."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ansible.plugins.action import ActionBase

from ansible_collections.llmserve.cluster.plugins.plugin_utils._planner import OMNI_VARIABLES, SPEC

COLLECTION = Path(__file__).resolve().parents[2]
# variables that change how a run goes, not what it leaves on the hosts
RUN_ONLY = frozenset(("llmserve_full_run", "llmserve_any_errors_fatal", "llmserve_upgrade_batch",
                      "llmserve_upgrade_drain_timeout", "llmserve_remove", "llmserve_confirm"))


def code_digest():
    """The collection's own roles, playbooks and plugins: an upgraded collection deploys again."""
    h = hashlib.sha256()
    for folder in ("roles", "playbooks", "plugins"):
        for path in sorted((COLLECTION / folder).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                h.update(str(path.relative_to(COLLECTION)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def secret_refs(node):
    """Every {host, variable} reference in the plan (secrets are in the plan by reference only)."""
    if isinstance(node, dict):
        if set(node) >= {"host", "variable"} and isinstance(node["variable"], str):
            yield node["host"], node["variable"]
        for value in node.values():
            yield from secret_refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from secret_refs(value)


def host_lists(entry):
    """What deploy_state looks at on a host, from its plan entry."""
    workloads = entry.get("workloads") or []
    units = [w["service"]["unit"] for w in workloads if w.get("service")]
    files = [f["path"] for w in workloads for f in w.get("files") or []]
    files += [p for w in workloads for p in w.get("restart_after") or [] if p.startswith("/")]
    files += ["/etc/systemd/system/" + unit for unit in units]
    return dict(
        images=list(entry.get("images") or []),
        containers=[dict(name=w["name"], image=w["container"]["image"]) for w in workloads if w.get("container")],
        units=units,
        files=sorted(set(files)),
        probes=[dict(name=w["name"], url=w["ready"]["url"], path=w["ready"].get("path") or "",
                     ca=w["ready"].get("ca"), cert=w["ready"].get("cert"), key=w["ready"].get("key"))
                for w in workloads if (w.get("ready") or {}).get("url")]
        + [dict(name=w["name"], command=w["ready"]["command"]) for w in workloads if (w.get("ready") or {}).get("command")]
        + [dict(c) for w in workloads for c in w.get("checks") or []])


def workload_digests(entry, hostvars):
    """One digest per workload of the host: what it runs, its files, and its secrets by value."""
    return {w["name"]: hashlib.sha256(json.dumps(
        [w, [hostvars[ref[0]].get(ref[1]) for ref in secret_refs(w)]], sort_keys=True, default=str).encode()).hexdigest()
        for w in entry.get("workloads") or []}


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        if "digest" in self._task.args:  # given whole, as the module documents
            result.update(self._execute_module(module_name="llmserve.cluster.deploy_state", task_vars=task_vars))
            return result
        plan = task_vars.get("llmserve_plan")
        host = task_vars["inventory_hostname"]
        if not plan or host not in plan["hosts"]:
            result.update(failed=True, msg="%s is not in the plan: run llmserve.cluster.plan first" % host)
            return result
        hostvars = task_vars["hostvars"]
        mine = hostvars[host]
        wanted = dict(
            plan=plan,
            # this host's settings as the roles read them (templated: a vaulted value counts by its value)
            variables={k: mine[k] for k in mine if (k in SPEC or k in OMNI_VARIABLES) and k not in RUN_ONLY},
            secrets={"%s/%s" % ref: hostvars[ref[0]].get(ref[1]) for ref in sorted(set(secret_refs(plan)))},
            code=code_digest())
        digest = hashlib.sha256(json.dumps(wanted, sort_keys=True, default=str).encode()).hexdigest()
        args = dict(self._task.args, digest=digest, workloads=workload_digests(plan["hosts"][host], hostvars),
                    **host_lists(plan["hosts"][host]))
        result.update(self._execute_module(module_name="llmserve.cluster.deploy_state", module_args=args,
                                           task_vars=task_vars))
        return result
