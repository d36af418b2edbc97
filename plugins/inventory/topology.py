# Copyright: llmserve.cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
name: topology
short_description: Expand a compact cluster layout into the llmserve inventory
version_added: 0.1.0
description:
  - Reads a YAML file whose name ends in C(topology.yml) or C(topology.yaml) and that starts with
    the key C(plugin) set to V(llmserve.cluster.topology), and expands it into the inventory that the roles and the
    planner (M(llmserve.cluster.plan)) read, that is, the groups C(prefill), C(decode) and C(proxy),
    the hosts with C(ansible_host) and C(llmserve_instance), and the C(llmserve_*) variables.
  - The machines in O(hosts) are consumed in the order listed, first by the prefill instances, then
    by the decode instances, then by the proxy. The list must hold exactly as many machines as the
    layout needs.
  - Every host of an instance gets C(llmserve_instance) set to the instance's index within its role,
    so an instance spanning several hosts is one data-parallel engine and the planner names the
    instances C(prefill-0), C(prefill-1), C(decode-0), and so on.
  - Each top-level setting (O(model), O(image), O(accelerator), ...) becomes the variable
    C(llmserve_<key>) of the group C(all); O(vars) adds any other variable to C(all).
  - A wrong file fails with every problem listed, one line each, naming the key and what to change.
  - Strings from the file are marked unsafe, so Jinja in them is never evaluated, except inside the
    C(vars) mappings (O(vars), O(prefill.vars), O(decode.vars), O(proxy.vars) and a host's C(vars)),
    which are templated like variables in any YAML inventory.
author:
  - llmserve.cluster maintainers (@llmserve)
extends_documentation_fragment:
  - ansible.builtin.constructed
options:
  plugin:
    description: Marks the file as a source for this plugin.
    required: true
    type: str
    choices: [llmserve.cluster.topology]
  model:
    description: Model path or name the engines serve; becomes C(llmserve_model).
    type: str
  served_model_name:
    description: Name the model is served under; becomes C(llmserve_served_model_name).
    type: str
  image:
    description: Engine container image; becomes C(llmserve_image).
    type: str
  accelerator:
    description:
      - Accelerator of the engine hosts; becomes C(llmserve_accelerator).
      - When not given, the planner's default V(nvidia) applies.
    type: str
    choices: [nvidia, ascend_a2, ascend_a3, cpu]
  kv_connector:
    description:
      - KV connector between prefill and decode, for example V(NixlConnector), V(MooncakeConnector)
        or V(ExampleConnector); becomes C(llmserve_kv_connector).
      - Must be one the planner knows how to launch.
    type: str
  kv_shared_path:
    description: Directory the prefill and decode hosts share, for V(ExampleConnector); becomes C(llmserve_kv_shared_path).
    type: str
  kv_extra_config:
    description: Extra C(kv_connector_extra_config) for the engines; becomes C(llmserve_kv_extra_config).
    type: dict
  vllm_extra_args:
    description: Extra arguments for every C(vllm serve); becomes C(llmserve_vllm_extra_args).
    type: list
    elements: str
  vllm_env:
    description: Extra environment of every engine container; becomes C(llmserve_vllm_env).
    type: dict
  hosts:
    description:
      - The machines, in order. Each entry is either an address (which is also the host's name) or a
        mapping with C(name), C(address) and C(vars) (host variables, highest precedence).
      - A name or address may hold numeric ranges as in Ansible's INI inventories, for example
        V(10.0.0.[1:8]), or a name V(gpu[01:08]) with the address V(10.0.0.[1:8]); name and address
        then expand to the same number of hosts.
      - A host with an address gets C(ansible_host); a host given only by name is reached by that name.
    type: list
    elements: raw
    required: true
  prefill:
    description: The prefill instances.
    type: dict
    required: true
    suboptions:
      instances:
        description: Number of prefill instances.
        type: int
        default: 1
      hosts_per_instance:
        description: Hosts each instance spans (its data-parallel ranks are spread over them).
        type: int
        default: 1
      devices:
        description: Devices of each host the instance uses, for example V(0-7) or V(0,1,2,3); becomes C(llmserve_devices).
        type: raw
      tensor_parallel_size:
        description: Tensor-parallel size; becomes C(llmserve_tensor_parallel_size).
        type: int
      pipeline_parallel_size:
        description: Pipeline-parallel size; becomes C(llmserve_pipeline_parallel_size).
        type: int
      vars:
        description: More variables of the C(prefill) group.
        type: dict
  decode:
    description: The decode instances; the same keys as O(prefill).
    type: dict
    required: true
    suboptions:
      instances:
        description: Number of decode instances.
        type: int
        default: 1
      hosts_per_instance:
        description: Hosts each instance spans.
        type: int
        default: 1
      devices:
        description: Devices of each host; becomes C(llmserve_devices).
        type: raw
      tensor_parallel_size:
        description: Tensor-parallel size; becomes C(llmserve_tensor_parallel_size).
        type: int
      pipeline_parallel_size:
        description: Pipeline-parallel size; becomes C(llmserve_pipeline_parallel_size).
        type: int
      vars:
        description: More variables of the C(decode) group.
        type: dict
  proxy:
    description:
      - The front door (the router). By default it takes the next host of the list after the decode
        instances; with C(colocate) set to V(true) it runs on the first prefill host instead.
    type: dict
    default: {hosts: 1}
    suboptions:
      hosts:
        description: Hosts the proxy takes from the list; one router is the front door.
        type: int
        choices: [1]
        default: 1
      colocate:
        description: Put the router on the first prefill host and take no host from the list.
        type: bool
        default: false
      vars:
        description: More variables of the C(proxy) group, for example C(llmserve_proxy_port).
        type: dict
  vars:
    description:
      - More variables for every host (the group C(all)), for example C(llmserve_vllm_port) or
        C(ansible_user). Values may use Jinja.
      - C(llmserve_instance) and C(ansible_host) are set by the layout and cannot be given here.
    type: dict
    default: {}
notes:
  - The collection must be installed (or found through C(collections_path)); the default C(auto)
    inventory plugin then loads this plugin from the file's C(plugin) key. Listing
    C(llmserve.cluster.topology) in C([inventory] enable_plugins) works too.
  - Ansible only warns when an inventory source fails to parse; set
    C(ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED=true) (or C(any_unparsed_is_failed) in C([inventory]))
    to stop on a wrong topology file.
  - The variables of the C(prefill), C(decode) and C(proxy) sections are group variables; with
    C(colocate), the router's host is in both C(prefill) and C(proxy).
seealso:
  - module: llmserve.cluster.plan
"""

EXAMPLES = r"""
# 2p1d.topology.yml: two prefill instances with TP 8 and one decode instance, NVIDIA, NixlConnector.
# ansible-inventory -i 2p1d.topology.yml --graph
# ansible-playbook -i 2p1d.topology.yml llmserve.cluster.plan
plugin: llmserve.cluster.topology
model: /models/Qwen3-32B
served_model_name: qwen3-32b
image: registry.example.com:5000/vllm/vllm-openai:v0.32.0
accelerator: nvidia
kv_connector: NixlConnector
hosts:
  - {name: gpu1, address: 10.0.0.1}
  - {name: gpu2, address: 10.0.0.2}
  - {name: gpu3, address: 10.0.0.3}
  - {name: router, address: 10.0.0.10}
prefill: {instances: 2, devices: "0-7", tensor_parallel_size: 8}
decode: {instances: 1, devices: "0-7"}
proxy: {hosts: 1}
vars:
  llmserve_vllm_extra_args: [--enforce-eager]

# Another file, gpu4.topology.yml: one decode instance over two hosts (DP 16), ranges for the
# names and addresses, the router on the first prefill host, and a group per instance
# (llmserve_prefill_0, llmserve_prefill_1, llmserve_decode_0, e.g. for --limit) through keyed_groups.
#
#   plugin: llmserve.cluster.topology
#   model: /models/DeepSeek-V3
#   image: registry.example.com:5000/vllm/vllm-openai:v0.32.0
#   hosts:
#     - {name: "gpu[1:4]", address: "10.0.0.[1:4]"}
#   prefill: {instances: 2, devices: "0-7", tensor_parallel_size: 8}
#   decode: {instances: 1, hosts_per_instance: 2, devices: "0-7"}
#   proxy: {colocate: true}
#   vars:
#     ansible_user: deploy
#   keyed_groups:
#     - key: "(group_names | select('in', ['prefill', 'decode']) | first) ~ '_' ~ llmserve_instance"
#       prefix: llmserve
"""

import os
from collections.abc import Mapping

from ansible.errors import AnsibleParserError
from ansible.module_utils.common.text.converters import to_native
from ansible.plugins.inventory import BaseInventoryPlugin, Constructable
from ansible.utils.unsafe_proxy import wrap_var
from ansible.utils.vars import combine_vars

from ansible_collections.llmserve.cluster.plugins.plugin_utils._topology import (
    PLUGIN_NAMES, ROLES, TopologyError, expand)


def mark_unsafe(config):
    """A copy of the file's mapping with every string marked unsafe, except inside the vars mappings
    (top level, in prefill/decode/proxy and in each host), whose values are templated like inventory variables."""
    def keep_vars(section):
        if not isinstance(section, Mapping):
            return wrap_var(section)
        return {wrap_var(k): (v if k == "vars" else wrap_var(v)) for k, v in section.items()}

    result = {}
    for key, value in config.items():
        if key == "vars":
            result[key] = value
        elif key in ROLES + ("proxy",):
            result[key] = keep_vars(value)
        elif key == "hosts" and isinstance(value, (list, tuple)):
            result[key] = [keep_vars(item) if isinstance(item, Mapping) else wrap_var(item) for item in value]
        else:
            result[key] = wrap_var(value)
    return result


class InventoryModule(BaseInventoryPlugin, Constructable):

    NAME = "llmserve.cluster.topology"

    def verify_file(self, path):
        return super().verify_file(path) and os.path.basename(path).endswith(("topology.yml", "topology.yaml"))

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache)
        try:
            # trusted like any YAML inventory; mark_unsafe takes the trust away outside the vars mappings
            config = self.loader.load_from_file(path, cache="none", trusted_as_template=True)
        except Exception as exc:
            raise AnsibleParserError(to_native(exc)) from exc
        if not config:
            raise AnsibleParserError("%s is empty" % to_native(path))
        if not isinstance(config, Mapping):
            raise AnsibleParserError("%s: the topology must be a YAML mapping starting with plugin: %s"
                                     % (to_native(path), self.NAME))
        names = getattr(self, "_redirected_names", None) or list(PLUGIN_NAMES)
        if config.get("plugin") not in names:
            raise AnsibleParserError("Incorrect plugin name in file: %s" % config.get("plugin", "none found"))
        try:
            layout = expand(mark_unsafe(config))
        except TopologyError as exc:
            raise AnsibleParserError("%s: %d problem(s) in the topology:\n%s"
                                     % (to_native(path), len(exc.problems), exc)) from None
        # the layout is valid: now the constructed options (compose, groups, keyed_groups, strict)
        self.set_options(direct=config, var_options=self._vars)
        self._populate(layout)

    def _populate(self, layout):
        for group in layout["groups"]:
            self.inventory.add_group(group)
        for group, variables in layout["group_vars"].items():
            for name, value in variables.items():
                self.inventory.set_variable(group, name, value)
        for host, variables in layout["hosts"].items():
            self.inventory.add_host(host)
            for name, value in variables.items():
                self.inventory.set_variable(host, name, value)
        for group, hosts in layout["groups"].items():
            for host in hosts:
                self.inventory.add_child(group, host)

        strict = self.get_option("strict")
        for host in layout["hosts"]:
            # what compose, groups and keyed_groups see: all's variables, the host's groups', the host's
            merged = dict(layout["group_vars"]["all"])
            for group, hosts in layout["groups"].items():
                if host in hosts:
                    merged = combine_vars(merged, layout["group_vars"][group])
            merged = combine_vars(merged, self.inventory.get_host(host).get_vars())
            self._set_composite_vars(self.get_option("compose"), merged, host, strict=strict)
            merged = combine_vars(merged, self.inventory.get_host(host).get_vars())
            self._add_host_to_composed_groups(self.get_option("groups"), merged, host, strict=strict)
            self._add_host_to_keyed_groups(self.get_option("keyed_groups"), merged, host, strict=strict)
