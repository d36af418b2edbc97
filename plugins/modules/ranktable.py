#!/usr/bin/python
# Copyright: llmserve.cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# The work is done by the action plugin plugins/action/ranktable.py, on the controller; this file documents it.

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ranktable
short_description: Build every Ascend rank table of the plan from each host's NPU facts, on the controller
version_added: 0.1.0
description:
  - Reads the plan (fact C(llmserve_plan)) and every Ascend host's C(llmserve_npu) fact (from
    M(llmserve.cluster.npu_facts)) and builds the rank tables the engines read, in the formats of
    omni-infer's C(pd_ranktable_tools.py) (per host, merged per instance, global) and HCCL's rank table
    (v1.0 on A2, v1.2 with C(super_device_id) and C(super_pod_list) on A3) per instance.
  - Checks every table before anything is written, that is, the plan's devices exist on their hosts and
    have IP addresses, device IPs are unique, rank ids run from 0 without gaps, device counts equal the
    plan's, status is C(completed). A problem fails the task naming the host.
  - Sets the fact C(llmserve_ranktables) (host name to a list of C(path) and C(content)); the ranktable
    stage copies each host's files with mode 0640. Contacts no host.
author:
  - llmserve.cluster maintainers (@llmserve)
attributes:
  check_mode:
    support: full
    description: Builds the same tables in check mode.
  diff_mode:
    support: none
    description: The tables are a fact; the copy that writes them shows the diff.
  idempotent:
    support: full
    description: The same plan and facts always give the same tables.
options: {}
notes:
  - Run it with C(run_once) and C(delegate_to) V(localhost), after M(llmserve.cluster.npu_facts) ran on
    every Ascend host.
"""

EXAMPLES = r"""
- name: Build the rank tables
  llmserve.cluster.ranktable:
  run_once: true
  delegate_to: localhost
"""

RETURN = r"""
ansible_facts:
  description: Fact C(llmserve_ranktables), host name to a list of C({path, content}).
  returned: success
  type: dict
summary:
  description: One line per host naming its files, for people.
  returned: success
  type: list
  elements: str
"""
