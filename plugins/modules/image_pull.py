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
author:
  - llmserve.cluster maintainers (@llmserve)
extends_documentation_fragment:
  - community.docker.docker.api_documentation
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
requirements:
  - requests
  - community.docker >= 4.0.0, < 5.0.0
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

from ansible_collections.community.docker.plugins.module_utils.common_api import (
    AnsibleDockerClient,
    RequestException,
)
from ansible_collections.community.docker.plugins.module_utils._api import auth
from ansible_collections.community.docker.plugins.module_utils._api.errors import DockerException
from ansible_collections.community.docker.plugins.module_utils._api.utils.utils import parse_repository_tag


def registry_digest(client, repository, tag):
    """The digest the registry holds for repository:tag, asked through the daemon with the stored login."""
    registry, dummy = auth.resolve_repository_name(repository)
    header = auth.get_config_header(client, registry)
    headers = {"X-Registry-Auth": header} if header else {}
    sep = "@" if tag.startswith("sha256:") else ":"
    info = client.get_json("/distribution/{0}/json", repository + sep + tag, headers=headers)
    return info["Descriptor"]["digest"]


def main():
    client = AnsibleDockerClient(
        argument_spec=dict(name=dict(type="str", required=True)),
        supports_check_mode=True,
    )
    repository, tag = parse_repository_tag(client.module.params["name"])
    tag = tag or "latest"
    try:
        local = client.find_image(repository, tag)
        result = dict(changed=False)
        if local is None:
            result["changed"] = True
        else:
            remote = registry_digest(client, repository, tag)
            result["registry_digest"] = remote
            result["changed"] = not any(d.endswith("@" + remote) for d in local.get("RepoDigests") or [])
        before = local["Id"] if local else None
        if result["changed"] and not client.check_mode:
            local, dummy = client.pull_image(repository, tag=tag)
        if local:
            result["image_id"] = local["Id"]
        result["diff"] = dict(before=dict(id=before),
                              after=dict(id=result.get("image_id"), registry_digest=result.get("registry_digest")))
        client.module.exit_json(**result)
    except (DockerException, RequestException) as e:
        client.fail("pulling %s failed: %s" % (client.module.params["name"], e), exception=traceback.format_exc())


if __name__ == "__main__":
    main()
