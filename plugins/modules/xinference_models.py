#!/usr/bin/python
# Copyright: llmserve.cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: xinference_models
short_description: Register and launch the Xinference models of the inventory, each only when missing or changed
version_added: 0.1.0
description:
  - Asks the supervisor which models run (C(GET /v1/models)) and compares each wanted model, by its uid, with the
    record this module keeps of what it launched (O(record), one digest per model).
  - A wanted model that runs with the digest recorded is left alone. One that runs with another digest is
    terminated and launched again; one that does not run is launched. A custom model is registered first
    (C(POST /v1/model_registrations/<type>), persisted), after removing an older registration of that name.
  - A model the record names but the list no longer wants is terminated. Models this module did not launch are
    left alone.
  - A launch waits until the model is ready (Xinference's C(wait_ready)); a refusal fails with Xinference's own
    message and the model's name.
author:
  - llmserve.cluster maintainers (@llmserve)
attributes:
  check_mode:
    support: full
    description: Asks the supervisor and reads the record; registers, launches and terminates nothing.
  diff_mode:
    support: full
    description: Shows the digests recorded before and after, per model uid.
  idempotent:
    support: full
    description: A model that runs as recorded is left alone.
options:
  url:
    description: The supervisor's REST API, V(http://address:port).
    type: str
    required: true
  token:
    description: An admin session token (launching needs one when auth is on); empty without auth.
    type: str
    default: ""
  models:
    description:
      - The wanted models, as the plan lists them.
    type: list
    elements: dict
    required: true
    suboptions:
      uid:
        description: The model's uid (C(model_uid) of the launch).
        type: str
        required: true
      digest:
        description: What identifies this spec; a new digest relaunches the model.
        type: str
        required: true
      launch:
        description: The body of C(POST /v1/models).
        type: dict
        required: true
      registration:
        description: A custom model's registration (Xinference's model family JSON), or none for a built-in model.
        type: dict
  record:
    description: The file (on the host the module runs on) where it keeps the digest of each model it launched.
    type: path
    required: true
  timeout:
    description: Seconds one launch may take until the model is ready.
    type: int
    default: 1800
notes:
  - Talks HTTP with Ansible's own URL helpers; no Python package is needed on the host.
"""

EXAMPLES = r"""
- name: Launch the models of the plan
  llmserve.cluster.xinference_models:
    url: http://10.0.0.10:9997
    token: "{{ admin_session }}"
    record: /etc/llmserve/xinference-models.json
    models:
      - uid: qwen2.5-instruct
        digest: 3f2a9c0d1e4b5a6f
        launch: {model_name: qwen2.5-instruct, model_type: LLM, model_engine: vllm, model_format: pytorch,
                 size_in_billions: "7", model_uid: qwen2.5-instruct, enable_virtual_env: false}
"""

RETURN = r"""
launched:
  description: Uids of the models launched (or that would be, in check mode).
  returned: always
  type: list
  elements: str
terminated:
  description: Uids of the models terminated (to be launched again, or no longer wanted).
  returned: always
  type: list
  elements: str
unchanged:
  description: Uids of the models that run as recorded.
  returned: always
  type: list
  elements: str
"""

import json
import os
import tempfile
from urllib.error import HTTPError, URLError

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import open_url


class Refused(Exception):
    """The supervisor answered with an error; the text is Xinference's own."""


class Supervisor:
    def __init__(self, url, token):
        self.url = url.rstrip("/")
        self.headers = {"Content-Type": "application/json"}
        if token:
            self.headers["Authorization"] = "Bearer " + token

    def call(self, method, path, body=None, timeout=60):
        data = json.dumps(body).encode("utf-8") if body is not None else None
        try:
            with open_url(self.url + path, data=data, method=method, headers=self.headers, timeout=timeout,
                          use_netrc=False) as response:
                text = response.read().decode("utf-8")
        except HTTPError as e:
            text = e.read().decode("utf-8", "replace")
            try:
                detail = json.loads(text).get("detail", text)
            except (ValueError, AttributeError):
                detail = text
            raise Refused("HTTP %s: %s" % (e.code, detail))
        return json.loads(text) if text else None

    def running(self):
        return {m["id"]: m for m in self.call("GET", "/v1/models")["data"]}


def read_record(path):
    try:
        with open(path) as f:
            record = json.load(f)
        return record if isinstance(record, dict) else {}
    except (OSError, ValueError):
        return {}


def write_record(path, record):
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, mode=0o750, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".xinference-models.")
    with os.fdopen(fd, "w") as f:
        json.dump(record, f, indent=2, sort_keys=True)
    os.chmod(tmp, 0o640)
    os.replace(tmp, path)


def launch(module, supervisor, model):
    launch = model["launch"]
    registration = model.get("registration")
    if registration:
        kind, name = launch.get("model_type", "LLM"), registration["model_name"]
        try:   # an older registration of the name would refuse the new one
            supervisor.call("DELETE", "/v1/model_registrations/%s/%s" % (kind, name))
        except Refused:
            pass
        try:
            supervisor.call("POST", "/v1/model_registrations/%s" % kind,
                            {"model": json.dumps(registration), "persist": True})
        except Refused as e:
            module.fail_json(msg="Xinference refused to register the model %s: %s" % (name, e))
    try:
        supervisor.call("POST", "/v1/models", launch, timeout=module.params["timeout"])
    except Refused as e:
        module.fail_json(msg="Xinference did not launch the model %s (uid %s): %s"
                         % (launch.get("model_name"), model["uid"], e))


def main():
    module = AnsibleModule(
        argument_spec=dict(
            url=dict(type="str", required=True),
            token=dict(type="str", default="", no_log=True),
            models=dict(type="list", elements="dict", required=True, options=dict(
                uid=dict(type="str", required=True), digest=dict(type="str", required=True),
                launch=dict(type="dict", required=True), registration=dict(type="dict"))),
            record=dict(type="path", required=True),
            timeout=dict(type="int", default=1800)),
        supports_check_mode=True)
    p = module.params
    supervisor = Supervisor(p["url"], p["token"])
    try:
        running = supervisor.running()
    except (Refused, URLError, OSError, ValueError, KeyError) as e:
        module.fail_json(msg="cannot list the models of the Xinference supervisor at %s: %s" % (p["url"], e))
    before = read_record(p["record"])
    after, launched, terminated, unchanged = {}, [], [], []
    wanted = {m["uid"]: m for m in p["models"]}
    for uid, model in wanted.items():
        after[uid] = model["digest"]
        if uid in running and before.get(uid) == model["digest"]:
            unchanged.append(uid)
            continue
        if uid in running:
            terminated.append(uid)
        launched.append(uid)
    gone = [uid for uid in before if uid not in wanted and uid in running]
    terminated += gone
    if not module.check_mode:
        try:
            for uid in terminated:
                supervisor.call("DELETE", "/v1/models/%s" % uid)
            for uid in launched:
                launch(module, supervisor, wanted[uid])
                # a launch that worked is recorded at once: a later failure does not relaunch it
                write_record(p["record"], dict({k: v for k, v in read_record(p["record"]).items() if k in wanted},
                                               **{uid: after[uid]}))
        except (Refused, URLError, OSError) as e:
            module.fail_json(msg="Xinference supervisor at %s: %s" % (p["url"], e))
        if read_record(p["record"]) != after:
            write_record(p["record"], after)
    module.exit_json(changed=bool(launched or terminated or before != after), launched=launched,
                     terminated=terminated, unchanged=unchanged, diff=dict(before=before, after=after))


if __name__ == "__main__":
    main()
