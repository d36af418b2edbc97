#!/usr/bin/python
# Copyright: llmserve.cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# The work is done by the action plugin plugins/action/plan.py, on the controller; this file documents it.

from __future__ import annotations

DOCUMENTATION = r"""
---
module: plan
short_description: Compute the cluster plan once, on the controller, from the whole inventory
version_added: 0.1.0
description:
  - Reads every host's C(llmserve_*) variables (and omni-infer's inventory variables) and the group
    membership, and computes the plan, that is, instances and their hosts, ranks, data-parallel offsets,
    every port on every host, container names, argv and environment, the front door and its backends.
  - All problems are collected and reported together, each naming the host and the variable,
    before any host is contacted.
  - Sets the fact C(llmserve_plan). Contacts no host.
author:
  - llmserve.cluster maintainers (@llmserve)
attributes:
  check_mode:
    support: full
    description: Computes the same plan in check mode; writes O(dest) only outside check mode.
  diff_mode:
    support: none
    description: The plan is a fact, not a change on a host.
  idempotent:
    support: full
    description: The same inventory always gives the same plan.
options:
  dest:
    description:
      - Write the plan as JSON to this path on the controller. Unchanged content reports no change.
    type: path
notes:
  - Run it with C(run_once) (and C(delegate_to) V(localhost)); it reads every host's variables.
"""

EXAMPLES = r"""
- name: Plan the cluster
  llmserve.cluster.plan:
    dest: /tmp/plan.json
  run_once: true
  delegate_to: localhost
"""

RETURN = r"""
ansible_facts:
  description: The plan, as fact C(llmserve_plan).
  returned: success
  type: dict
summary:
  description: One line per instance member and front door, for people.
  returned: success
  type: list
  elements: str
problems:
  description: Every problem found, one C(host, variable, message) line each.
  returned: failure
  type: list
  elements: str
"""
