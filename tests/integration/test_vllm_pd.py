"""The real 2P1D vLLM cluster on the test bed: a re-run on the converged cluster only checks it (one module per
host), every task again and check mode change nothing, the front door answers a streamed chat and the decoder loads
the prompt's KV from prefill, and a change by hand or in the inventory is found and deployed; a prefill engine killed under a request stream
costs no request that starts 3 s or more after the kill, comes back by itself and is used again; a changed argument of
the prefill engines is rolled by upgrade.yml, a third prefill engine added by site.yml and taken out by remove.yml, each
under a request stream with no failed request and the router's worker list right after each; stop_server stops
gracefully, and clean_up leaves nothing of ours on the hosts."""
import json
import re
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from conftest import REPO, ansible_playbook, on_host

sys.path.insert(0, str(REPO / "bench"))
from failover import kill, served, used_again, wait as until  # noqa: E402  (the bench's client code, one for both)
from request_stream import Stream, summary  # noqa: E402
from rolling import inventory, playbook, under_stream  # noqa: E402

EXAMPLE = REPO / "tests" / "testbed" / "inventories" / "testbed_2p1d"
SITE = REPO / "playbooks" / "site.yml"
ROUTER = "http://172.31.240.14:10001"
PREFILL = {"node1": "http://172.31.240.11:8000", "node2": "http://172.31.240.12:8000"}


LONG_PROMPT = ("Prefill computes the cache and decode reads it back. " * 20).strip()   # more than one 128-token block


def ask_router(path, body):
    req = urllib.request.Request(ROUTER + path, data=json.dumps(dict(body, model="tiny-llama")).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return resp.read().decode()


def external_kv():
    """The decoder's prompt tokens that came from a prefill engine's KV (vLLM's counter)."""
    with urllib.request.urlopen("http://172.31.240.13:8000/metrics", timeout=10) as resp:
        text = resp.read().decode()
    found = re.search(r'vllm:prompt_tokens_by_source_total\{[^}]*source="external_kv_transfer"[^}]*\} ([0-9.e+]+)', text)
    assert found, "the decoder exports no external_kv_transfer count"
    return float(found.group(1))


def healthy(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status == 200
    except OSError:
        return False


def counted_run(*args):
    """site.yml with the json callback: (why it deploys or that nothing is to deploy, changed per host, module
    executions per host), from bench's callback."""
    with tempfile.NamedTemporaryFile(suffix=".json") as counts:
        res = ansible_playbook(SITE, "-i", str(EXAMPLE), *args, env={
            "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json", "LLMSERVE_COUNT_FILE": counts.name,
            "ANSIBLE_CALLBACK_PLUGINS": str(REPO / "bench" / "callback_plugins"),
            "ANSIBLE_CALLBACKS_ENABLED": "count_modules"})
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
        executions = json.loads(Path(counts.name).read_text())
    run = json.loads(res.stdout)
    (why,) = [next(iter(t["hosts"].values()))["msg"] for play in run["plays"] for t in play["tasks"]
              if t["task"]["name"].startswith("Say whether the cluster is deployed again")]
    return why, {h: s["changed"] for h, s in run["stats"].items()}, executions


def test_converged_rerun_drift_kill_stop_start_and_clean_up(clean_bed):
    res = ansible_playbook(SITE, "-i", str(EXAMPLE))
    assert res.returncode == 0, res.stdout[-3000:]
    # its verify stage proved that the decoder loads each prefill's KV (through the bed's shared directory)
    for prefill in ("prefill-node1 http://172.31.240.11:8000", "prefill-node2 http://172.31.240.12:8000"):
        assert re.search(r"ok: \[\S+ -> localhost\] => \(item=%s -> decode-node3 http://172\.31\.240\.13:8000\)"
                         % re.escape(prefill), res.stdout), res.stdout[-3000:]

    # converged: one module execution per host (deploy_state's check), nothing changed
    why, changed, executions = counted_run()
    assert why.startswith("every host runs as its last deploy left it"), why
    assert set(changed.values()) == {0}, changed
    assert executions == {"node1": 1, "node2": 1, "node3": 1, "node4": 1}, executions
    # every task of every stage again (llmserve_full_run), then the same in check mode: nothing changes
    for args in (("-e", "llmserve_full_run=true"), ("--check", "-e", "llmserve_full_run=true")):
        why, changed, executions = counted_run(*args)
        assert set(changed.values()) == {0} and executions["node3"] > 1, (args, changed, executions)

    # through the front door: a streamed chat answer, and the decoder loads the prompt's KV (more than one block)
    # from a prefill engine instead of computing it
    before = external_kv()
    chat = ask_router("/v1/chat/completions", {"stream": True, "max_tokens": 8, "messages": [
        {"role": "user", "content": LONG_PROMPT}]})
    assert "chat.completion.chunk" in chat and "data: [DONE]" in chat, chat[-500:]
    answer = json.loads(ask_router("/v1/completions", {"prompt": LONG_PROMPT, "max_tokens": 8}))
    assert answer["choices"][0]["text"] and answer["usage"]["completion_tokens"] == 8, answer
    assert external_kv() > before

    # a change by hand is found, named, and undone; only what differed changes
    env_file = "/etc/llmserve/llmserve-prefill-node2.env"
    before = on_host("node2", "cat " + env_file).stdout
    on_host("node2", "echo EXTRA=1 >> " + env_file)
    on_host("node3", "docker stop llmserve-decode-node3")
    why, changed, executions = counted_run()
    assert why["node2"] == ["file %s is changed since the last deploy" % env_file], why
    assert why["node3"][0] == "container llmserve-decode-node3 is exited", why
    # the router cannot serve with no decode, and says so (its /readiness) once its next health check has run
    assert {"node2", "node3"} <= set(why) <= {"node2", "node3", "node4"}, why
    assert why.get("node4", ["llmserve-router does not answer"])[0].startswith("llmserve-router does not answer"), why
    assert changed == {"node1": 0, "node2": 1, "node3": 1, "node4": 0, "node5": 0}, changed
    assert on_host("node2", "cat " + env_file).stdout == before
    assert healthy("http://172.31.240.13:8000/health")

    # a variable changed in the inventory deploys every host; one that changes nothing there changes nothing (the
    # record's new digest is bookkeeping); then converged
    why, changed, executions = counted_run("-e", "llmserve_vllm_health_delay=2")
    assert set(why) == {"node1", "node2", "node3", "node4"}, why
    assert why["node1"] == ["the inventory, its variables or the collection changed since the last deploy"], why
    assert set(changed.values()) == {0}, changed
    assert executions["node3"] > 1, executions
    why, changed, executions = counted_run("-e", "llmserve_vllm_health_delay=2")
    assert why.startswith("every host runs as its last deploy left it") and set(changed.values()) == {0}, why

    # failover: the prefill engine that served the most of a steady stream of completions is killed (2 s after the
    # stream starts, 8 s before it ends); those that start 3 s or more after the kill are all answered by the other
    # one. The restart policy brings the engine back with no help from Ansible, and the router sends it requests
    # again (polled, no fixed sleep).
    before = {h: served(h, "llmserve-prefill-" + h) for h in PREFILL}
    stream = Stream(ROUTER, "tiny-llama", period=0.5).start()
    time.sleep(2)
    counts = {h: served(h, "llmserve-prefill-" + h) - before[h] for h in PREFILL}
    host = max(counts, key=counts.get)   # the one the router sends this stream to
    container = "llmserve-prefill-" + host
    restarts = on_host(host, "docker inspect -f '{{.RestartCount}}' " + container).stdout.strip()
    at = kill(host, container)   # when it died, by Docker's clock
    after_kill = served(host, container)
    time.sleep(8)
    # vllm-router in igw mode takes a worker added at runtime out after 3 failed health checks (its own threshold,
    # not --health-failure-threshold), one a second: requests of the first 3 s may fail (docs/deploy.md)
    figures = summary(stream.stop(), at, grace=3.0)
    assert figures["failed_after_grace"] == 0 and figures["requests"] >= 18, figures
    assert until(lambda: healthy(PREFILL[host] + "/health"), timeout=300), host
    assert used_again(host, container, after_kill), "the router never sent %s a request again" % host
    after = on_host(host, "docker inspect -f '{{.RestartCount}}' " + container).stdout.strip()
    assert int(after) == int(restarts) + 1

    # upgrade, scale out, scale in: each under a request stream (one request every 3 s: on the bed's 2 cores each
    # running engine busy-waits a second after every step, which slows a starting engine), with no failed request
    upgrade_scale_and_remove(Path(tempfile.mkdtemp()))

    # stop_server stops gracefully (SIGTERM: vLLM exits 0, not 137); clean_up removes the stopped cluster (molecule
    # mindie and ray start a stopped cluster again with run_server, through the same runner)
    res = ansible_playbook(SITE, "-i", str(EXAMPLE), "--tags", "stop_server")
    assert res.returncode == 0, res.stdout[-3000:]
    state = on_host("node3", "docker inspect -f '{{.State.Status}} {{.State.ExitCode}}' llmserve-decode-node3").stdout
    assert state.split() == ["exited", "0"], state

    res = ansible_playbook(SITE, "-i", str(EXAMPLE), "--tags", "clean_up")
    assert res.returncode == 0, res.stdout[-3000:]
    for host in ("node1", "node2", "node3", "node4"):
        left = on_host(host, "docker ps -aq --filter label=io.llmserve.cluster; ls /etc/llmserve 2>/dev/null; ls /var/lib/llmserve 2>/dev/null")
        assert left.stdout.strip() == "", (host, left.stdout)


def workers():
    """The router's workers, as (url, pool); None while it does not answer."""
    try:
        with urllib.request.urlopen(ROUTER + "/workers", timeout=10) as resp:
            return sorted((w["url"], w["worker_type"]) for w in json.loads(resp.read())["workers"])
    except OSError:
        return None


def container_ids(*hosts):
    return {h: on_host(h, "docker ps -q --no-trunc --filter label=io.llmserve.cluster").stdout.split() for h in hosts}


def upgrade_scale_and_remove(folder):
    base = sorted([(url, "prefill") for url in PREFILL.values()] + [("http://172.31.240.13:8000", "decode")])
    third = ("http://172.31.240.15:8000", "prefill")
    assert workers() == base

    # an argument of every engine changed: the one decode cannot be replaced while it serves; nothing is touched
    before = container_ids("node1", "node2", "node3", "node4")
    run = playbook("upgrade.yml", EXAMPLE, "-e", '{"llmserve_vllm_extra_args": ["--enforce-eager", "--kv-cache-memory-'
                   'bytes", "256M", "--max-model-len", "512", "--max-num-seqs", "32"]}')
    assert run.returncode != 0 and "nothing was changed; a rolling upgrade cannot go on: replacing node3 together would " \
        "leave no decode engine to serve (the pool has decode-node3)" in " ".join(run.stdout.split()), run.stdout[-3000:]
    assert container_ids("node1", "node2", "node3", "node4") == before and workers() == base

    # the prefill engines' argument changed: rolled one host at a time, each out of the router while it is replaced
    changed = inventory(folder / "changed", changed=True)
    run, figures = under_stream("upgrade.yml", changed, period=3.0)
    assert run.returncode == 0, run.stdout[-3000:]
    assert figures["failed"] == 0 and figures["requests"] >= 20, figures
    rolled = [line for line in run.stdout.splitlines() if line.startswith("PLAY [Roll the engines")]
    assert len(rolled) == 2, rolled   # serial: one play run per batch of one host
    after = container_ids("node1", "node2", "node3", "node4")
    assert all(after[h] != before[h] for h in PREFILL) and after["node3"] == before["node3"], (before, after)
    assert after["node4"] == before["node4"] and workers() == base
    args = on_host("node1", "docker inspect -f '{{json .Args}}' llmserve-prefill-node1").stdout
    assert '"--max-num-seqs","32"' in args.replace(", ", ","), args

    # a third prefill engine: only it starts, the router learns it with no restart
    scaled = inventory(folder / "third", changed=True, third=True)
    run, figures = under_stream("site.yml", scaled, period=3.0)
    assert run.returncode == 0 and figures["failed"] == 0, (figures, run.stdout[-3000:])
    assert container_ids("node1", "node2", "node3", "node4") == after
    assert workers() == sorted(base + [third])

    # remove.yml asks first (no answer here: nothing changes), then takes node5's engine out, drains and removes it
    run = playbook("remove.yml", scaled, "-e", "llmserve_remove=node5")
    assert run.returncode != 0 and "not confirmed; nothing was changed" in run.stdout, run.stdout[-2000:]
    assert workers() == sorted(base + [third])
    run, figures = under_stream("remove.yml", scaled, "-e", "llmserve_remove=node5", "-e", "llmserve_confirm=yes",
                                period=3.0)
    assert run.returncode == 0 and figures["failed"] == 0, (figures, run.stdout[-3000:])
    assert workers() == base and container_ids("node5") == {"node5": []}
    assert container_ids("node1", "node2", "node3", "node4") == after
    assert on_host("node4", "docker restart llmserve-router").returncode == 0   # its start list forgot node5 too
    assert until(lambda: healthy(ROUTER + "/readiness") and workers() == base, timeout=60), workers()
