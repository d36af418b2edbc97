#!/usr/bin/python
# Copyright: llmserve.cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: image_pull
short_description: Pull an image only when it is missing or the registry holds another digest, with a true check mode
version_added: 0.1.0
description:
  - Pulls an image from its registry when the host does not have it, or when the registry's digest
    for the tag differs from every digest the host's copy was pulled under.
  - Unlike M(community.docker.docker_image_pull) with O(community.docker.docker_image_pull#module:pull=always),
    check mode asks the registry for the tag's digest (through the Docker daemon and the host's stored
    login) instead of assuming a change, so check mode on a converged cluster reports no change.
  - Talks to the Docker Engine API with Python's standard library only; the login is the one
    M(community.docker.docker_login) or C(docker login) stored in the Docker configuration file
    (E(DOCKER_CONFIG)/config.json, else C(~/.docker/config.json)), credential helpers included.
author:
  - llmserve.cluster maintainers (@llmserve)
attributes:
  check_mode:
    support: full
    description: Compares the registry's digest with the local one; pulls nothing.
  diff_mode:
    support: full
    description: Shows the local and the registry digest.
  idempotent:
    support: full
    description: An image whose digest matches the registry's is left alone.
options:
  name:
    description:
      - Image reference, V(registry:port/repository:tag) or V(repository@sha256:...).
      - Without a tag, V(latest) is used.
    type: str
    required: true
  keep_free:
    description:
      - Disk space that must stay free in the Docker daemon's data root after the pull, in bytes or with a unit
        (V(2G), V(500M)).
      - Before a pull (in check mode too), the module asks the registry for the image's layers, leaves out those
        an image on the host already holds, and estimates the space they take unpacked (3.5 times their compressed
        size). When that and O(keep_free) do not fit in the free space, it fails naming the image, the data root,
        the space needed and the space free, and pulls nothing, so the engines running there keep their disk.
      - When the registry cannot be asked directly (the daemon may use a mirror), a warning says so and the pull
        goes ahead. A daemon on another machine (O(docker_host) over TCP) is not checked.
    type: bytes
    default: 0
extends_documentation_fragment:
  - llmserve.cluster.docker_daemon
notes:
  - The host needs no Python package beyond the standard library. The daemon must speak Docker Engine
    API 1.30 (Docker 17.06) or newer, which has the C(/distribution) endpoint this module asks.
requirements:
  - Docker Engine API 1.30 or newer
"""

EXAMPLES = r"""
- name: Pull the engine image on every host, only if it changed
  llmserve.cluster.image_pull:
    name: registry.example.com:5000/llmserve/vllm-cpu:0.32.0
"""

RETURN = r"""
image_id:
  description: Id of the local image after the task (before it, in check mode).
  returned: when the image exists locally after the task
  type: str
  sample: sha256:2cb2fe2b9d88...
registry_digest:
  description: The digest the registry holds for the tag; not asked when a pull was needed anyway.
  returned: when the registry was asked
  type: str
  sample: sha256:7d4a...
"""

import traceback
from http.client import HTTPException

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.llmserve.cluster.plugins.module_utils.docker_api import (
    DOCKER_ARGS, Daemon, DockerError, auth_header, docker_config, image_state, registry_of)
from ansible_collections.llmserve.cluster.plugins.module_utils.registry import free_bytes, gigabytes, room_problem


def main():
    module = AnsibleModule(argument_spec=dict(name=dict(type="str", required=True),
                                              keep_free=dict(type="bytes", default=0), **DOCKER_ARGS),
                           required_together=[["client_cert", "client_key"]], supports_check_mode=True)
    name = module.params["name"]
    try:
        daemon = Daemon(module)
    except (DockerError, OSError, HTTPException, ValueError, KeyError) as e:
        module.fail_json(msg="cannot talk to the Docker daemon at %s: %s" % (module.params["docker_host"], e),
                         exception=traceback.format_exc())
    try:
        repository, tag, local, remote, due = image_state(module, daemon, name)
        result = dict(changed=due)
        if remote:
            result["registry_digest"] = remote
        before = local["Id"] if local else None
        no_room = due and room_problem(module, daemon, name, repository, tag, module.params["keep_free"])
        if no_room:
            module.fail_json(msg=no_room)
        if due and not module.check_mode:
            try:
                daemon.pull(repository, tag, auth_header(module, registry_of(repository), docker_config()))
            except DockerError as e:
                if "no space left on device" not in str(e):
                    raise
                root, free = free_bytes(daemon)
                module.fail_json(msg="no room for %s in Docker's data root %s (%s free now): the pull stopped: %s"
                                 % (name, root, "unknown" if free is None else gigabytes(free), e))
            local = daemon.find_image(repository, tag)
        if local:
            result["image_id"] = local["Id"]
        result["diff"] = dict(before=dict(id=before),
                              after=dict(id=result.get("image_id"), registry_digest=result.get("registry_digest")))
        module.exit_json(**result)
    except (DockerError, OSError, HTTPException, ValueError, KeyError) as e:
        module.fail_json(msg="pulling %s failed: %s" % (name, e), exception=traceback.format_exc())


if __name__ == "__main__":
    main()
