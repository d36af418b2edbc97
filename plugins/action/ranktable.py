# Copyright: llmserve.cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

from ansible.plugins.action import ActionBase

from ansible_collections.llmserve.cluster.plugins.plugin_utils._ranktable import RankTableError, plan_files


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset()

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        hostvars = task_vars["hostvars"]
        plan = task_vars.get("llmserve_plan")
        if not plan:
            result.update(failed=True, msg="no plan: run llmserve.cluster.plan first (run_once, delegate_to localhost)")
            return result
        facts = {h: hostvars[h].get("llmserve_npu") for h in plan["hosts"] if h in hostvars}
        try:
            files = plan_files(plan, facts)
        except RankTableError as exc:
            result.update(failed=True, msg="rank tables not written, nothing was changed: %s" % exc)
            return result
        # (path, text) or (path, text, "UID:GID"): MindIE checks that its files belong to the user it runs as
        tables = {host: [dict(zip(("path", "content", "owner"), entry)) for entry in entries] for host, entries in files.items()}
        result.update(changed=False, ansible_facts=dict(llmserve_ranktables=tables),
                      summary=["%s: %s" % (host, ", ".join(e["path"].rsplit("/", 1)[-1] for e in entries))
                               for host, entries in sorted(tables.items())])
        return result
