# Copyright: llmserve.cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Counts the module executions on each managed host: every task result (each loop item one) of an action that
runs a module on the host, not skipped, not delegated to the controller. Actions that only run on the controller
(set_fact, group_by, debug, assert, includes, argument validation, ...) cost no round trip and are not counted.
Writes {host: count} as JSON to $LLMSERVE_COUNT_FILE when the run ends. Used by bench/deploy.py."""
from __future__ import annotations

import json
import os

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: count_modules
type: aggregate
short_description: counts module executions per host (bench/deploy.py)
description: Writes a JSON mapping of host to count to $LLMSERVE_COUNT_FILE at the end of the run.
"""

CONTROLLER_ONLY = {"set_fact", "group_by", "add_host", "debug", "assert", "fail", "meta", "include_tasks",
                   "include_role", "import_tasks", "import_role", "include_vars", "validate_argument_spec",
                   "set_stats", "pause", "wait_for_connection", "llmserve.cluster.plan", "llmserve.cluster.ranktable"}


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "count_modules"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self.counts = {}

    def _count(self, result):
        action = result._task.action.split(".")[-1] if result._task.action.startswith("ansible.builtin.") \
            else result._task.action
        if action in CONTROLLER_ONLY or result._task.delegate_to in ("localhost", "127.0.0.1"):
            return
        host = result._host.get_name()
        self.counts[host] = self.counts.get(host, 0) + 1

    def v2_runner_on_ok(self, result):
        if not result._result.get("results"):   # a loop reports each item on its own
            self._count(result)

    v2_runner_on_failed = v2_runner_on_ok

    def v2_runner_item_on_ok(self, result):
        self._count(result)

    v2_runner_item_on_failed = v2_runner_item_on_ok

    def v2_playbook_on_stats(self, stats):
        path = os.environ.get("LLMSERVE_COUNT_FILE")
        if path:
            with open(path, "w") as out:
                json.dump(self.counts, out, sort_keys=True)
