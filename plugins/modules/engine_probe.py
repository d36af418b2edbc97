#!/usr/bin/python
# Copyright: llmserve.cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: engine_probe
short_description: Ask an OpenAI-compatible engine or router whether it is healthy, and optionally for an answer
version_added: 0.1.0
description:
  - Reads C(/health) and C(/v1/models) of a vLLM engine, a vLLM router or any OpenAI-compatible server.
  - With O(prompt), sends one chat completion and returns the answer, so a playbook can prove that a
    deployment serves requests end to end.
  - "With O(kv_from), proves that prefill/decode disaggregation really happens between the prefill engine at
    O(kv_from) and the decode engine at O(url). It sends one prompt longer than a KV block as a PD proxy does
    (to prefill with C(max_tokens=1) and C(kv_transfer_params.do_remote_decode), then to decode with the
    C(kv_transfer_params) prefill returned) and fails unless the decoder's
    C(vllm:prompt_tokens_by_source_total{source=\"external_kv_transfer\"}) grew, that is unless decode loaded the
    prompt's KV instead of computing it again."
  - Never changes anything on the server.
author:
  - llmserve.cluster maintainers (@llmserve)
extends_documentation_fragment:
  - llmserve.cluster.read_only
options:
  url:
    description: Base URL of the server, for example V(http://10.0.0.11:8000).
    type: str
    required: true
  api_key:
    description:
      - Bearer token sent as C(Authorization) header. Keep it in ansible-vault.
    type: str
  prompt:
    description:
      - A user message to send to C(/v1/chat/completions). Without it (and without O(kv_from)) no completion is
        requested. With O(kv_from), the text of the prompt prefilled and decoded.
    type: str
  model:
    description:
      - Model name for the completion. Defaults to the first model C(/v1/models) lists (in OpenAI's shape, or as
        vllm-router in igw mode lists them, names under C(models)).
    type: str
  max_tokens:
    description: Upper bound on the tokens of the answer.
    type: int
    default: 16
  timeout:
    description: Seconds to wait for each HTTP request.
    type: int
    default: 60
  health_path:
    description: Path of the health endpoint (V(/health) for vLLM and vllm-router).
    type: str
    default: /health
  wait:
    description:
      - Seconds to wait for the health endpoint to answer 200, asking every O(delay) seconds; fails when it
        does not. V(0) asks once and reports.
    type: int
    default: 0
  delay:
    description: Seconds between two questions while waiting.
    type: int
    default: 2
  ca_path:
    description:
      - PEM file of the CA that signed the server's certificate, for an V(https://) O(url).
    type: path
  client_cert:
    description:
      - PEM certificate this probe shows the server, for servers that want mutual TLS (MindIE's listeners).
    type: path
  client_key:
    description: The private key of O(client_cert), unencrypted.
    type: path
  container:
    description:
      - The Docker container that serves O(url). While waiting, the module also asks Docker about it and
        stops waiting as soon as the container exits or restarts (an engine that crashes while it loads),
        failing with its last log lines instead of waiting out O(wait).
    type: str
  fail_log:
    description:
      - A regular expression. While waiting, a line of O(container)'s log written since the wait began that matches
        it ends the wait at once, failing with that line (a process that gave up but still runs, as a GPUStack
        worker whose registration was refused).
    type: str
  fail_hint:
    description: What to check when O(fail_log) matched; added to the failure message.
    type: str
  kv_from:
    description:
      - Base URL of a prefill engine whose KV the decode engine at O(url) must load (see the description). The
        prompt is O(prompt), or a text of about 200 tokens; a fresh prefix makes each run's prompt new to both
        engines' prefix caches.
    type: str
"""

EXAMPLES = r"""
- name: Check an engine and ask it one question
  llmserve.cluster.engine_probe:
    url: "http://{{ ansible_host }}:8000"
    prompt: Say hello in three words.
  register: probe

- name: Show the answer
  ansible.builtin.debug:
    msg: "{{ probe.answer }}"

- name: Check a router protected by an API key, no completion
  llmserve.cluster.engine_probe:
    url: http://10.0.0.20:10001
    api_key: "{{ vault_router_api_key }}"
"""

RETURN = r"""
healthy:
  description: Whether the health endpoint answered HTTP 200.
  returned: always
  type: bool
  sample: true
health_status:
  description: HTTP status of the health endpoint, or -1 when it could not be reached.
  returned: always
  type: int
  sample: 200
waited_seconds:
  description: How long the module waited for the health endpoint (see O(wait)).
  returned: always
  type: float
  sample: 12.4
models_status:
  description: HTTP status of C(/v1/models); V(401) means the server wants another O(api_key).
  returned: always
  type: int
  sample: 200
models:
  description: Model ids listed by C(/v1/models).
  returned: when the server answered C(/v1/models)
  type: list
  elements: str
  sample: [tiny-llama]
answer:
  description: The content of the first choice of the chat completion.
  returned: when O(prompt) is given
  type: str
  sample: Hello there friend
usage:
  description: Token counts of the completion, as the server reported them.
  returned: when O(prompt) is given
  type: dict
  sample: {prompt_tokens: 12, completion_tokens: 16, total_tokens: 28}
kv_tokens:
  description: Prompt tokens the decoder loaded from prefill's KV (its external_kv_transfer counter's growth).
  returned: when O(kv_from) is given
  type: int
  sample: 160
latency_seconds:
  description: Wall time of the chat completion, or of both requests with O(kv_from).
  returned: when O(prompt) is given
  type: float
  sample: 0.42
"""

import json
import re
import time
import uuid

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import fetch_url


def request(module, url, headers, body=None):
    """Return (status, parsed JSON or None, error text)."""
    data = None if body is None else json.dumps(body)
    # fetch_url takes the client certificate and key from the module's options of those names
    resp, info = fetch_url(module, url, data=data, headers=headers, method="GET" if body is None else "POST",
                           timeout=module.params["timeout"], ca_path=module.params["ca_path"])
    status = info.get("status", -1)
    raw = (resp.read() if resp is not None else b"") or info.get("body", b"")
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = None
    return status, parsed, info.get("msg", "")


# what a PD proxy sends to prefill (vLLM's disagg proxy and vllm-router alike)
PREFILL_PARAMS = dict(do_remote_decode=True, do_remote_prefill=False, remote_engine_id=None, remote_block_ids=None,
                      remote_host=None, remote_port=None)
KV_METRIC = re.compile(r'^vllm:prompt_tokens_by_source_total\{[^}]*source="external_kv_transfer"[^}]*\} (\S+)$', re.M)
KV_PROMPT = " ".join(["Prefill computes the cache and decode reads it back."] * 20)


def kv_loaded(module, base, headers):
    """The decoder's external_kv_transfer prompt tokens so far (summed over its engines)."""
    resp, info = fetch_url(module, base + "/metrics", headers=headers, timeout=module.params["timeout"],
                           ca_path=module.params["ca_path"])
    text = (resp.read() if resp is not None else b"").decode("utf-8", "replace")
    values = KV_METRIC.findall(text)
    if info.get("status") != 200 or not values:
        module.fail_json(msg="%s/metrics (HTTP %s) has no vllm:prompt_tokens_by_source_total{source="
                         "\"external_kv_transfer\"}: the decoder is not vLLM 0.11 or newer, or not an engine"
                         % (base, info.get("status")))
    return sum(float(v) for v in values)


def kv_check(module, base, headers, model, result):
    """Send one prompt through prefill (kv_from) and decode (url) as a PD proxy does; fail unless decode loaded
    its KV."""
    p = module.params
    prefill = p["kv_from"].rstrip("/")
    prompt = "Request %s. %s" % (uuid.uuid4().hex, p["prompt"] or KV_PROMPT)
    before = kv_loaded(module, base, headers)
    started = time.monotonic()
    body = dict(model=model, prompt=prompt, max_tokens=1, kv_transfer_params=PREFILL_PARAMS)
    for where in (prefill, base):
        status, reply, err = request(module, where + "/v1/completions", headers, body)
        if status != 200 or not isinstance(reply, dict) or not reply.get("choices"):
            detail = reply.get("error", reply) if isinstance(reply, dict) else reply
            module.fail_json(msg="%s completion at %s failed: HTTP %s %s: %s" % (
                "prefill" if where == prefill else "decode", where, status, err, json.dumps(detail)[:500]), **result)
        body = dict(body, max_tokens=p["max_tokens"], kv_transfer_params=reply.get("kv_transfer_params"))
    result["latency_seconds"] = round(time.monotonic() - started, 3)
    result["usage"] = reply.get("usage", {})
    result["kv_tokens"] = int(kv_loaded(module, base, headers) - before)
    if result["kv_tokens"] <= 0:
        module.fail_json(msg="decode recomputed the prompt: no KV arrived from prefill %s to decode %s (%s prompt "
                         "tokens, none loaded from external_kv_transfer); check that both engines run the same "
                         "--kv-transfer-config, that decode reaches prefill's KV side channel port (NIXL), and that "
                         "a shared-storage connector's directory (llmserve_kv_shared_path) is the same storage on "
                         "both hosts" % (prefill, base, result["usage"].get("prompt_tokens", "?")), **result)
    module.exit_json(**result)


def container_state(module, name):
    """(status, restart count) of a container, from the docker CLI on the host."""
    rc, out, err = module.run_command(["docker", "inspect", "--format", "{{.State.Status}} {{.RestartCount}}", name])
    if rc != 0:
        module.fail_json(msg="docker inspect %s failed: %s" % (name, (err or out).strip()))
    status, restarts = out.split()
    return status, int(restarts)


def crashed(module, name, first):
    """None while the container runs as it did when the wait began, else why it stopped, with its log."""
    status, restarts = container_state(module, name)
    if status not in ("exited", "dead", "restarting") and restarts == first:
        return None
    dummy, out, err = module.run_command(["docker", "logs", "--tail", "300", name])
    lines = (out + err).strip().splitlines()
    # a Python traceback ends far below its cause: show the last errors named, then the last lines
    errors = [line for line in lines if "error" in line.lower()][-5:]
    shown = errors + [line for line in lines[-10:] if line not in errors]
    return "%s %s while starting (%s, restarted %d times); from its log:\n%s" % (
        name, "exited" if status in ("exited", "dead") else "restarted", status, restarts, "\n".join(shown))


def gave_up(module, name, since, pattern):
    """The first line of the container's log since that time (seconds) matching pattern, or None."""
    dummy, out, err = module.run_command(["docker", "logs", "--since", str(since), name])
    found = re.compile(pattern)
    return next((line.strip() for line in (out + err).splitlines() if found.search(line)), None)


def wait_healthy(module, url, headers):
    """Ask url every delay seconds until it answers 200 or wait seconds pass; stop early if the container dies."""
    p = module.params
    deadline = time.monotonic() + p["wait"]
    since = int(time.time()) - 1
    first = container_state(module, p["container"])[1] if p["container"] else None
    while True:
        status, dummy, err = request(module, url, headers)
        if status == 200 or time.monotonic() >= deadline:
            return status, err
        if p["container"]:
            why = crashed(module, p["container"], first)
            if why:
                module.fail_json(msg=why, healthy=False, health_status=status)
            line = gave_up(module, p["container"], since, p["fail_log"]) if p["fail_log"] else None
            if line:
                module.fail_json(msg="%s gave up while starting; its log says: %s%s" % (
                    p["container"], line, "; " + p["fail_hint"] if p["fail_hint"] else ""), healthy=False,
                    health_status=status)
        time.sleep(p["delay"])


def main():
    module = AnsibleModule(
        argument_spec=dict(
            url=dict(type="str", required=True),
            api_key=dict(type="str", no_log=True),
            prompt=dict(type="str"),
            model=dict(type="str"),
            max_tokens=dict(type="int", default=16, no_log=False),
            timeout=dict(type="int", default=60),
            health_path=dict(type="str", default="/health"),
            wait=dict(type="int", default=0),
            delay=dict(type="int", default=2),
            container=dict(type="str"),
            fail_log=dict(type="str"),
            fail_hint=dict(type="str"),
            ca_path=dict(type="path"),
            client_cert=dict(type="path"),
            client_key=dict(type="path", no_log=False),
            kv_from=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    base = p["url"].rstrip("/")
    headers = {"Content-Type": "application/json"}
    if p["api_key"]:
        headers["Authorization"] = "Bearer " + p["api_key"]

    started = time.monotonic()
    health_status, health_err = wait_healthy(module, base + p["health_path"], headers)
    result = dict(changed=False, healthy=health_status == 200, health_status=health_status,
                  waited_seconds=round(time.monotonic() - started, 1))
    if p["wait"] and not result["healthy"]:
        module.fail_json(msg="%s%s did not answer 200 within %d s (last: %s %s)"
                         % (base, p["health_path"], p["wait"], health_status, health_err), **result)

    status, listing, dummy = request(module, base + "/v1/models", headers)
    result["models_status"] = status
    if status == 200 and isinstance(listing, dict):
        # OpenAI's shape; vllm-router in igw mode answers {"models": ["name", ...]}
        result["models"] = [m.get("id") for m in listing.get("data", [])] or [
            m for m in listing.get("models", []) if isinstance(m, str)]

    if p["prompt"] is None and not p["kv_from"]:
        module.exit_json(**result)
    if not result["healthy"]:
        module.fail_json(msg="%s%s answered %s (%s); not sending the prompt"
                         % (base, p["health_path"], health_status, health_err), **result)
    if status in (401, 403):
        module.fail_json(msg="%s/v1/models answered %s: the server refuses this api_key (or wants one)"
                         % (base, status), **result)
    model = p["model"] or (result.get("models") or [None])[0]
    if not model:
        module.fail_json(msg="%s/v1/models lists no model; set model" % base, **result)
    if p["kv_from"]:
        kv_check(module, base, headers, model, result)
    body = dict(model=model, max_tokens=p["max_tokens"],
                messages=[dict(role="user", content=p["prompt"])])
    started = time.monotonic()
    status, reply, err = request(module, base + "/v1/chat/completions", headers, body)
    result["latency_seconds"] = round(time.monotonic() - started, 3)
    if status != 200 or not isinstance(reply, dict) or not reply.get("choices"):
        detail = reply.get("error", reply) if isinstance(reply, dict) else reply
        module.fail_json(msg="chat completion at %s failed: HTTP %s %s: %s"
                         % (base, status, err, json.dumps(detail)[:500]), **result)
    result["answer"] = reply["choices"][0].get("message", {}).get("content", "")
    result["usage"] = reply.get("usage", {})
    module.exit_json(**result)


if __name__ == "__main__":
    main()
