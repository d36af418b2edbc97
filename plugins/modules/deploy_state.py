#!/usr/bin/python
# Copyright: llmserve.cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: deploy_state
short_description: Tell in one call whether a host still runs what its last deploy left, or record that state
version_added: 0.1.0
description:
  - With O(state=record) (at the end of a whole deploy) writes to O(path) what the host runs, that is the O(digest)
    of what was wanted, the Docker engine's version, each container's id and the checksum of each file. The record
    is bookkeeping and never reported as a change (RV(recorded) says whether it was written).
  - With O(state=check) compares the host with that record and asks each workload for its health, all in one
    execution on the host. The host is converged when the record's digest is O(digest) and every container still
    runs under the recorded id on the image its tag names, the registry holds no other digest for each image,
    every unit is active, every file has its recorded checksum and every workload answers its readiness check.
  - The stages of C(site.yml) deploy only when a host of the play is not converged, so a re-run on a converged
    cluster costs one module execution per host.
  - The action plugin computes O(digest) and the lists from the plan (C(llmserve_plan)) when they are not given.
author:
  - llmserve.cluster maintainers (@llmserve)
attributes:
  check_mode:
    support: full
    description: O(state=check) only reads; O(state=record) writes nothing and says in RV(recorded) whether it would.
  diff_mode:
    support: none
    description: The record is not shown.
  idempotent:
    support: full
    description: The record is written only when its content differs, and never reported as a change.
options:
  state:
    description:
      - V(check) compares the host with the record; V(record) writes the record; V(absent) removes it (clean_up).
    type: str
    choices: [check, record, absent]
    default: check
  digest:
    description:
      - What the deploy wanted, as one hash (the plan, every llmserve variable, the secrets by value, the
        collection's own files). A different digest means the host must be deployed again.
    type: str
    required: true
  images:
    description: Images the host's workloads run.
    type: list
    elements: str
    default: []
  containers:
    description: The host's containers.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Container name.
        type: str
        required: true
      image:
        description: The image reference it runs.
        type: str
        required: true
  workloads:
    description:
      - A digest of each workload as the plan has it (its container or unit, files and secrets by value), by name. The
        record keeps them, and O(state=check) returns in RV(differing) the workloads whose digest, container or image
        differ (those a deploy replaces, which an upgrade takes out of the front door first).
    type: dict
    default: {}
  units:
    description: The host's systemd units.
    type: list
    elements: str
    default: []
  files:
    description: Files whose content the deploy wrote (configurations, env files, units, keys).
    type: list
    elements: path
    default: []
  probes:
    description: Readiness checks, asked once each, from the host.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Workload name.
        type: str
        required: true
      url:
        description: Base URL; one of O(probes[].url) and O(probes[].command) is required.
        type: str
      command:
        description:
          - A command run in the container named O(probes[].name) (docker exec); healthy is exit code 0. For a
            workload that speaks no HTTP, such as PostgreSQL's C(pg_isready).
        type: list
        elements: str
      path:
        description: Path asked; healthy is HTTP 200.
        type: str
        default: /health
      ca:
        description: CA certificate to verify the workload's certificate with.
        type: path
      cert:
        description: Client certificate.
        type: path
      key:
        description: Key of the client certificate.
        type: path
      expect:
        description:
          - A regular expression that a line of the answer must match (multiline), besides HTTP 200; for example
            that an Xinference model is READY in the supervisor's metrics.
        type: str
      mismatch:
        description: What to say when no line matches O(probes[].expect) (by default, the expression).
        type: str
  path:
    description: Where the record lives on the host (mode 0600).
    type: path
    default: /var/lib/llmserve/deploy_state.json
extends_documentation_fragment:
  - llmserve.cluster.docker_daemon
notes:
  - Needs no Python package on the host beyond the standard library.
  - The record does not follow what a deploy reads from the hardware (the NPUs' addresses behind a rank table);
    after changing those, deploy with C(-e llmserve_full_run=true).
"""

EXAMPLES = r"""
- name: Is this host as its last deploy left it?
  llmserve.cluster.deploy_state:
  register: state

- name: Record what runs, after a whole deploy
  llmserve.cluster.deploy_state:
    state: record
"""

RETURN = r"""
converged:
  description: Whether the host runs what the record says, healthy, under the same digest.
  returned: always
  type: bool
reasons:
  description: Why the host is not converged, one line each.
  returned: always
  type: list
  elements: str
  sample: ["container llmserve-decode-node3 is exited"]
recorded:
  description: Whether O(state=record) wrote the record (would write it, in check mode).
  returned: with O(state=record)
  type: bool
differing:
  description: The workloads a deploy would replace or start (see O(workloads)); all of them with no record.
  returned: with O(state=check)
  type: list
  elements: str
  sample: [llmserve-prefill-node1]
health:
  description: Each readiness check's answer.
  returned: always
  type: list
  elements: dict
  sample: [{name: llmserve-decode-node3, url: "http://10.0.0.3:8000/health", healthy: true, status: 200}]
"""

import hashlib
import json
import os
import re
import traceback
from http.client import HTTPException
from urllib.error import HTTPError, URLError

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import ConnectionError as UrlError, open_url
from ansible_collections.llmserve.cluster.plugins.module_utils.docker_api import (
    DOCKER_ARGS, Daemon, DockerError, NotFound, image_state)

ERRORS = (DockerError, OSError, HTTPException, ValueError, KeyError)


def checksum(path):
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return None


def probe(p, daemon, unreachable):
    """One readiness answer: healthy when the URL answers 200 within 5 seconds (and a line of the answer matches
    expect, when given), or when the command exits 0 in the container (status is then its exit code)."""
    if p["command"]:
        target, error = "exec " + " ".join(p["command"]), unreachable
        try:
            status = daemon.exec_status(p["name"], p["command"]) if daemon else -1
        except ERRORS as e:
            status, error = -1, str(e)
        error = error if status == -1 else None if status == 0 else "exit code %d" % status
        return dict(name=p["name"], url=target, healthy=status == 0, status=status, **({"error": error} if error else {}))
    url = p["url"] + (p["path"] or "")
    try:
        with open_url(url, timeout=5, ca_path=p["ca"], client_cert=p["cert"], client_key=p["key"]) as response:
            status, error = response.status, None
            if p.get("expect") and not re.search(p["expect"], response.read().decode("utf-8", "replace"), re.M):
                status, error = -1, p.get("mismatch") or "no line of its answer matches %s" % p["expect"]
    except HTTPError as e:
        status, error = e.code, str(e)
    except (URLError, OSError, HTTPException, UrlError) as e:
        status, error = -1, str(getattr(e, "reason", e))
    return dict(name=p["name"], url=url, healthy=status == 200, status=status, **({"error": error} if error else {}))


def container(daemon, name):
    """(id, running and not restarting, image id, status word) of a container, or None when there is none."""
    try:
        info = daemon.get_json("/containers/%s/json" % name)
    except NotFound:
        return None
    state = info.get("State") or {}
    return info["Id"], state.get("Running") and not state.get("Restarting"), info.get("Image"), state.get("Status")


def unit_active(module, unit):
    rc, out, err = module.run_command(["systemctl", "is-active", unit])
    return out.strip() or err.strip() or "unknown"


def current(module, daemon):
    """What the host runs now, as the record holds it."""
    p = module.params
    return dict(digest=p["digest"], docker=daemon.get_json("/version").get("Version") if daemon else None,
                workloads=p["workloads"],
                containers={c["name"]: (container(daemon, c["name"]) or [None])[0] if daemon else None
                            for c in p["containers"]},
                files={path: checksum(path) for path in p["files"]})


def differences(module, daemon, unreachable, record, health, differing):
    """Why the host is not as recorded, or not healthy, one line each ([] when it is); the workloads a deploy
    would replace or start go into `differing`."""
    p = module.params
    recorded = (record or {}).get("workloads") or {}
    differing.update(name for name, digest in p["workloads"].items() if recorded.get(name) != digest)
    if record is None:
        return ["no deploy recorded on this host (%s)" % p["path"]]
    if record.get("digest") != p["digest"]:
        return ["the inventory, its variables or the collection changed since the last deploy"]
    if p["containers"] or p["images"]:
        if daemon is None:
            return [unreachable]
        if daemon.get_json("/version").get("Version") != record.get("docker"):
            return ["the Docker engine changed since the last deploy"]
    reasons = []
    images, due_images = {}, set()
    for name in p["images"]:
        try:
            repository, tag, local, remote, due = image_state(module, daemon, name)
        except ERRORS as e:
            reasons.append("cannot ask the registry for %s: %s" % (name, e))
            continue
        if due:
            due_images.add(name)
            reasons.append("image %s is missing or the registry holds another digest" % name)
        images[name] = local and local["Id"]
    for c in p["containers"]:
        found = container(daemon, c["name"])
        before = len(reasons)
        if found is None:
            reasons.append("container %s is missing" % c["name"])
        elif found[0] != (record.get("containers") or {}).get(c["name"]):
            reasons.append("container %s was replaced since the last deploy" % c["name"])
        elif not found[1]:
            reasons.append("container %s is %s" % (c["name"], found[3]))
        elif c["image"] in images and found[2] != images[c["image"]]:
            reasons.append("container %s runs another image than %s names" % (c["name"], c["image"]))
        if len(reasons) > before or c["image"] in due_images:
            differing.add(c["name"])
    for unit in p["units"]:
        active = unit_active(module, unit)
        if active != "active":
            reasons.append("unit %s is %s" % (unit, active))
    recorded = record.get("files") or {}
    for path in p["files"]:
        now = checksum(path)
        if now is None or now != recorded.get(path):
            reasons.append("file %s is %s since the last deploy" % (path, "missing" if now is None else "changed"))
    return reasons + ["%s does not answer %s (%s)" % (h["name"], h["url"] if h["url"].startswith("exec ") else "at "
                                                      + h["url"], h.get("error") or h["status"])
                      for h in health if not h["healthy"]]


def main():
    probe_spec = dict(name=dict(type="str", required=True), url=dict(type="str"), command=dict(type="list", elements="str"),
                      path=dict(type="str", default="/health"), ca=dict(type="path"), cert=dict(type="path"),
                      key=dict(type="path", no_log=False), expect=dict(type="str"),
                      mismatch=dict(type="str"))
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", choices=["check", "record", "absent"], default="check"),
            digest=dict(type="str", required=True),
            images=dict(type="list", elements="str", default=[]),
            containers=dict(type="list", elements="dict", default=[],
                            options=dict(name=dict(type="str", required=True), image=dict(type="str", required=True))),
            workloads=dict(type="dict", default={}),
            units=dict(type="list", elements="str", default=[]),
            files=dict(type="list", elements="path", default=[]),
            probes=dict(type="list", elements="dict", default=[], options=probe_spec,
                        required_one_of=[["url", "command"]], mutually_exclusive=[["url", "command"]]),
            path=dict(type="path", default="/var/lib/llmserve/deploy_state.json"),
            **DOCKER_ARGS),
        required_together=[["client_cert", "client_key"]],
        supports_check_mode=True,
    )
    p = module.params
    daemon, unreachable = None, None
    try:
        if p["containers"] or p["images"]:
            daemon = Daemon(module)
    except ERRORS as e:
        unreachable = "cannot talk to the Docker daemon at %s: %s" % (p["docker_host"], e)
    try:
        with open(p["path"]) as f:
            record = json.load(f)
    except (OSError, ValueError):
        record = None
    if p["state"] == "absent":
        exists = os.path.exists(p["path"])
        if exists and not module.check_mode:
            os.remove(p["path"])
        module.exit_json(changed=exists, converged=False, reasons=[], health=[])
    result = dict(changed=False, health=[probe(x, daemon, unreachable) for x in p["probes"]])
    try:
        if p["state"] == "record":
            if unreachable:
                raise DockerError(unreachable)
            now = current(module, daemon)
            # bookkeeping, not a change of what runs: a new digest after a variable that changed nothing on the
            # host must leave that host at changed=0
            result["recorded"] = now != record
            if result["recorded"] and not module.check_mode:
                os.makedirs(os.path.dirname(p["path"]), mode=0o700, exist_ok=True)
                with open(os.open(p["path"] + ".new", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
                    json.dump(now, f, indent=1, sort_keys=True)
                os.replace(p["path"] + ".new", p["path"])
            reasons = []
        else:
            differing = set()
            try:
                reasons = differences(module, daemon, unreachable, record, result["health"], differing)
            except ERRORS as e:
                reasons = ["cannot read what the host runs: %s" % e]
            result["differing"] = sorted(differing)
    except ERRORS as e:
        module.fail_json(msg="recording what the host runs failed: %s" % e, exception=traceback.format_exc())
    module.exit_json(converged=not reasons, reasons=reasons, **result)


if __name__ == "__main__":
    main()
