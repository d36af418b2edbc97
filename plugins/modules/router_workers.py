#!/usr/bin/python
# Copyright: llmserve.cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: router_workers
short_description: Set the prefill and decode workers of a running vllm-router (igw mode), and drain them
version_added: 0.1.0
description:
  - "Talks to vllm-router's admin API (C(GET /workers), C(POST /workers), C(DELETE /workers/{url})), which it serves in
    C(--enable-igw) mode, so the front door learns a new engine and forgets a removed one with no restart."
  - With O(state=exact), the router lists exactly O(workers) afterwards; the missing ones are added before the extra
    ones are removed, so that it never serves with fewer engines than before.
  - With O(state=present), the O(workers) it lacks are added; the others stay.
  - With O(state=absent), the O(workers) it lists are removed; with O(drain_timeout), the module then waits until
    each removed engine has no request running or waiting (vLLM's C(vllm:num_requests_running) and
    C(vllm:num_requests_waiting)), which is when it can be stopped without failing a request.
  - vllm-router keeps no drain state of its own (it has no drain verb); a request it had already sent to a removed
    engine finishes there.
author:
  - llmserve.cluster maintainers (@llmserve)
attributes:
  check_mode:
    support: full
    description: Reports what it would add and remove, and changes nothing.
  diff_mode:
    support: none
    description: The result lists what was added and removed.
  idempotent:
    support: full
    description: A router that lists what is asked is left alone.
options:
  url:
    description: The router's base URL (its API port).
    type: str
    required: true
  workers:
    description: The workers, as the plan's C(front_door.members[].workers) lists them.
    type: list
    elements: dict
    required: true
    suboptions:
      url:
        description: The engine's API base URL.
        type: str
        required: true
      worker_type:
        description: Its pool.
        type: str
        choices: [prefill, decode, regular]
        default: regular
      model_id:
        description:
          - The model name it serves. The router sends a request by prefill and decode only when its C(model) is
            this, so it is always given (the router's own guess is C(unknown) for an engine still loading).
        type: str
        required: true
      instance:
        description: The plan's instance of the engine, named in messages.
        type: str
      host:
        description: The inventory host of the engine, named in messages.
        type: str
  state:
    description: What to do with O(workers) (see the description).
    type: str
    choices: [exact, present, absent]
    default: exact
  settle:
    description:
      - With O(state=exact), seconds to wait first for the router to list O(workers) by itself (a router that just
        started registers them from its start script), so that nothing is registered twice.
    type: int
    default: 0
  drain_timeout:
    description: With O(state=absent), at most this many seconds to wait until the removed engines are idle; 0 waits not.
    type: int
    default: 0
  timeout:
    description: Seconds for each HTTP request.
    type: int
    default: 10
notes:
  - Needs no Python package on the host beyond the standard library.
"""

EXAMPLES = r"""
- name: The router serves exactly the plan's engines
  llmserve.cluster.router_workers:
    url: http://10.0.0.4:10001
    workers:
      - {url: "http://10.0.0.1:8000", worker_type: prefill, model_id: tiny-llama}
      - {url: "http://10.0.0.3:8000", worker_type: decode, model_id: tiny-llama}

- name: Take a prefill engine out and wait until it is idle (at most 120 s)
  llmserve.cluster.router_workers:
    url: http://10.0.0.4:10001
    workers: [{url: "http://10.0.0.1:8000", worker_type: prefill, model_id: tiny-llama}]
    state: absent
    drain_timeout: 120
"""

RETURN = r"""
added:
  description: URLs added.
  returned: always
  type: list
  elements: str
removed:
  description: URLs removed.
  returned: always
  type: list
  elements: str
workers:
  description: What the router lists afterwards, as url, worker_type, model_id and is_healthy.
  returned: always
  type: list
  elements: dict
drained_seconds:
  description: How long the removed engines took to be idle.
  returned: with O(state=absent) and O(drain_timeout)
  type: float
"""

import json
import re
import time
from urllib.parse import quote

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import fetch_url

KEYS = ("url", "worker_type", "model_id")
BUSY = re.compile(r"^vllm:num_requests_(?:running|waiting)(?:\{[^}]*\})? (\S+)$", re.M)


def call(module, method, path, body=None, base=None):
    """(status, parsed JSON or text) of one request to the router (or to `base`)."""
    resp, info = fetch_url(module, (base or module.params["url"].rstrip("/")) + path, method=method,
                           data=None if body is None else json.dumps(body),
                           headers={"Content-Type": "application/json"}, timeout=module.params["timeout"])
    raw = (resp.read() if resp is not None else b"") or info.get("body", b"") or b""
    try:
        return info.get("status", -1), json.loads(raw)
    except ValueError:
        return info.get("status", -1), raw.decode("utf-8", "replace") or info.get("msg", "")


def listed(module):
    status, answer = call(module, "GET", "/workers")
    if status != 200 or not isinstance(answer, dict):
        module.fail_json(msg="vllm-router at %s does not list its workers (GET /workers: HTTP %s %s); it runs in igw "
                         "mode (--enable-igw, llmserve_proxy_router_mode: igw) only" % (module.params["url"], status,
                                                                                        str(answer)[:300]))
    return [dict({k: w.get(k) for k in KEYS}, is_healthy=w.get("is_healthy")) for w in answer.get("workers") or []]


def key(worker):
    return tuple(worker.get(k) for k in KEYS)


def busy(module, url):
    """Requests running and waiting on an engine; None when it does not answer (stopped: nothing runs there)."""
    status, text = call(module, "GET", "/metrics", base=url.rstrip("/"))
    if status != 200 or not isinstance(text, str):
        return None
    return sum(float(v) for v in BUSY.findall(text))


def drain(module, urls, result):
    """Wait until every engine of `urls` has been idle on two reads a second apart, at most drain_timeout s."""
    started = time.monotonic()
    idle = {u: 0 for u in urls}
    while True:
        for u in urls:
            n = busy(module, u)
            idle[u] = idle[u] + 1 if not n else 0
        if all(count >= 2 for count in idle.values()):
            result["drained_seconds"] = round(time.monotonic() - started, 1)
            return
        if time.monotonic() - started > module.params["drain_timeout"]:
            names = {w["url"]: "%s on %s (%s)" % (w["instance"], w["host"], w["url"]) if w["instance"] else w["url"]
                     for w in module.params["workers"]}
            module.fail_json(msg="still busy after %d s (drain_timeout): %s; they are out of the front door, so no new "
                             "request reaches them: wait, or raise the timeout" % (
                                 module.params["drain_timeout"], ", ".join(names[u] for u in urls if idle[u] < 2)),
                             **result)
        time.sleep(1)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            url=dict(type="str", required=True),
            workers=dict(type="list", elements="dict", required=True, options=dict(
                url=dict(type="str", required=True),
                worker_type=dict(type="str", choices=["prefill", "decode", "regular"], default="regular"),
                model_id=dict(type="str", required=True), instance=dict(type="str"), host=dict(type="str"))),
            state=dict(type="str", choices=["exact", "present", "absent"], default="exact"),
            settle=dict(type="int", default=0),
            drain_timeout=dict(type="int", default=0),
            timeout=dict(type="int", default=10)),
        supports_check_mode=True)
    p = module.params
    wanted = {key(w): w for w in p["workers"]}
    now = listed(module)
    deadline = time.monotonic() + (p["settle"] if p["state"] == "exact" else 0)
    while sorted(map(key, now)) != sorted(wanted) and time.monotonic() < deadline:
        time.sleep(1)
        now = listed(module)
    have = {key(w) for w in now}
    if p["state"] == "absent":
        add, remove = [], sorted({w["url"] for w in now if key(w) in wanted})
    else:
        add = [w for k, w in wanted.items() if k not in have]
        # an engine listed twice, or with another pool or model, is removed and added again as the plan has it
        counts = {}
        for w in now:
            counts[w["url"]] = counts.get(w["url"], 0) + 1
        wrong = {w["url"] for w in now if key(w) not in wanted or counts[w["url"]] > 1}
        remove = sorted(wrong if p["state"] == "exact" else wrong & {w["url"] for w in p["workers"]})
        add += [w for w in wanted.values() if w["url"] in remove and w not in add]
    result = dict(changed=bool(add or remove), added=[w["url"] for w in add], removed=remove, workers=now)
    if module.check_mode or not result["changed"]:
        module.exit_json(**result)
    # first the new ones, then the wrong ones out (an engine re-typed goes out before it comes back)
    retyped = {w["url"] for w in add} & set(remove)
    steps = [("DELETE", u) for u in remove if u in retyped] + [("POST", w) for w in add] \
        + [("DELETE", u) for u in remove if u not in retyped]
    for method, item in steps:
        if method == "POST":
            status, answer = call(module, "POST", "/workers", {k: item[k] for k in KEYS})
        else:
            status, answer = call(module, "DELETE", "/workers/" + quote(item, safe=""))
        if status != 200:
            module.fail_json(msg="vllm-router at %s refused %s of %s: HTTP %s %s" % (
                p["url"], method, item if method == "DELETE" else item["url"], status, str(answer)[:300]), **result)
    if p["state"] == "absent" and p["drain_timeout"]:
        drain(module, remove, result)
    result["workers"] = listed(module)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
