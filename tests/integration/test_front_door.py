"""Front doors on the test bed with the engine simulator (fast, and it checks vLLM's argv and API key):
plain replicas behind nginx's least_conn with an API key, a prefill/decode cluster whose router sits
behind the same key check, a changed argv or environment that recreates only the container it touches,
a replica stopped and started again under a stream of requests (none fails), fetch_log, and clean_up. The API key never appears in Ansible's output, not even with --diff -v."""
import concurrent.futures
import json
import re
import sys
import time
import urllib.error
import urllib.request

from conftest import REPO, ansible_playbook, on_host

sys.path.insert(0, str(REPO / "bench"))
from failover import served, wait as until  # noqa: E402  (the bench's client code, one for both)
from request_stream import Stream, summary  # noqa: E402

SITE = "playbooks/site.yml"
KEY = "sk-llmserve-test-0123456789abcdef"
REGISTRY = "172.31.240.2:5000/llmserve/"
DOOR = "http://172.31.240.13:10001"


def inventory(tmp_path, name, groups, **hostvars):
    """An inventory file in tmp_path: groups {group: [hosts]}, per-host variable overrides."""
    address = {"node%d" % n: "172.31.240.1%d" % n for n in range(1, 5)}
    common = dict(llmserve_model="/models/tiny", llmserve_served_model_name="tiny", llmserve_accelerator="cpu",
                  llmserve_devices="0", llmserve_image=REGISTRY + "engine-sim:0.1.0",
                  llmserve_nginx_image=REGISTRY + "nginx:1.22", llmserve_proxy_image=REGISTRY + "vllm-router:0.1.17",
                  llmserve_kv_connector="ExampleConnector", llmserve_kv_shared_path="/srv/llmserve-shared/kv",
                  llmserve_proxy_health_check_interval=1, llmserve_api_key="{{ fd_key }}")
    children = {group: {"hosts": {h: dict(ansible_host=address[h], **hostvars.get(h, {})) for h in hosts}}
                for group, hosts in groups.items()}
    path = tmp_path / (name + ".yml")
    path.write_text(json.dumps({"all": {"vars": common, "children": children}}))
    keyfile = tmp_path / "key.yml"
    keyfile.write_text("fd_key: %s\n" % KEY)
    return ["-i", str(path), "-e", "@" + str(keyfile)]


def run(*args):
    res = ansible_playbook(SITE, *args)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-4000:]
    assert KEY not in out   # not in any task, diff or module argument shown
    return out


def changed(out):
    return {host: int(n) for host, n in re.findall(r"^(\S+)\s+:\s+ok=\d+\s+changed=(\d+)", out, re.M)}


def ask(url, key=None, prompt="hello there"):
    body = json.dumps({"model": "tiny", "prompt": prompt, "max_tokens": 4}).encode()
    headers = {"Content-Type": "application/json", **({"Authorization": "Bearer " + key} if key else {})}
    try:
        with urllib.request.urlopen(urllib.request.Request(url + "/v1/completions", data=body, headers=headers),
                                    timeout=60) as resp:
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code


def until_healthy(host, port=8000):
    """Whether the engine on host answers /health within a minute (polled)."""
    return on_host(host, "for i in $(seq 300); do curl -sf -o /dev/null http://172.31.240.1%s:%d/health && exit 0; "
                         "sleep 0.2; done; exit 1" % (host[-1], port)).returncode == 0


def container_ids(hosts):
    ids = {}
    for host in hosts:
        out = on_host(host, "docker ps -q --no-trunc --filter label=io.llmserve.cluster "
                            "--format '{{.Names}} {{.ID}}'").stdout
        ids.update(dict(line.split() for line in out.splitlines()))
    return ids


def test_replicas_behind_nginx_with_a_key_and_only_touched_containers_recreated(clean_bed, tmp_path):
    groups = {"replica": ["node1", "node2"], "proxy": ["node3"]}
    args = inventory(tmp_path, "replicas", groups)
    out = run(*args, "--diff", "-v")
    assert "least_conn" not in out or KEY not in out
    conf = on_host("node3", "cat /etc/llmserve/front-door/nginx.conf").stdout
    assert "least_conn;" in conf and "172.31.240.11:8000" in conf and "172.31.240.12:8000" in conf
    assert on_host("node3", "stat -c %a /etc/llmserve/front-door/nginx.conf").stdout.strip() == "640"

    # the key is checked at the door, and by each replica itself (nginx passes the header on)
    assert ask(DOOR) == 401 and ask(DOOR, "wrong-key-0123456789") == 401
    assert ask("http://172.31.240.11:8000") == 401
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda i: ask(DOOR, KEY, "question %d" % i), range(16)))
    assert statuses == [200] * 16
    assert served("node1", "llmserve-replica-node1") > 0 and served("node2", "llmserve-replica-node2") > 0

    assert set(changed(run(*args)).values()) == {0}
    assert set(changed(run(*args, "--check", "--diff")).values()) == {0}

    # a new argument for node1's engine, a new variable for node2's: each recreates only its own container
    before = container_ids(["node1", "node2", "node3"])
    run(*inventory(tmp_path, "replicas", groups, node1=dict(llmserve_vllm_extra_args=["--max-num-seqs", "8"])))
    after = container_ids(["node1", "node2", "node3"])
    assert after["llmserve-replica-node1"] != before["llmserve-replica-node1"]
    assert {k: v for k, v in after.items() if k != "llmserve-replica-node1"} == \
        {k: v for k, v in before.items() if k != "llmserve-replica-node1"}
    run(*inventory(tmp_path, "replicas", groups, node1=dict(llmserve_vllm_extra_args=["--max-num-seqs", "8"]),
                   node2=dict(llmserve_vllm_env={"VLLM_LOGGING_LEVEL": "DEBUG"})))
    again = container_ids(["node1", "node2", "node3"])
    assert again["llmserve-replica-node2"] != after["llmserve-replica-node2"]
    assert {k: v for k, v in again.items() if k != "llmserve-replica-node2"} == \
        {k: v for k, v in after.items() if k != "llmserve-replica-node2"}
    # taking the variable away counts too (docker_container alone notices only additions)
    run(*inventory(tmp_path, "replicas", groups, node1=dict(llmserve_vllm_extra_args=["--max-num-seqs", "8"])))
    assert container_ids(["node2"])["llmserve-replica-node2"] != again["llmserve-replica-node2"]
    assert "VLLM_LOGGING_LEVEL" not in on_host("node2", "docker inspect -f '{{.Config.Env}}' "
                                                        "llmserve-replica-node2").stdout

    # a replica that goes away under a steady stream costs no request (nginx tries the other one and keeps it out
    # for fail_timeout), and once it is back nginx sends it requests again, with no deploy
    stream = Stream(DOOR, "tiny", period=0.1, key=KEY).start()
    time.sleep(1)
    at = time.time()
    on_host("node1", "docker stop llmserve-replica-node1")
    before = served("node1", "llmserve-replica-node1")
    time.sleep(3)
    on_host("node1", "docker start llmserve-replica-node1")
    assert until(lambda: served("node1", "llmserve-replica-node1") > before, timeout=30)
    figures = summary(stream.stop(), at)
    assert figures["failed"] == 0 and figures["requests"] > 30, figures

    # fetch_log: one folder per host, one file per container, with the container's own lines
    logs = tmp_path / "logs"
    run(*args, "--tags", "fetch_log", "-e", "llmserve_log_dir=%s" % logs)
    assert sorted(p.relative_to(logs).as_posix() for p in logs.rglob("*.log")) == [
        "node1/llmserve-replica-node1.log", "node2/llmserve-replica-node2.log", "node3/llmserve-nginx.log"]
    assert "vLLM API server version" in (logs / "node1" / "llmserve-replica-node1.log").read_text()

    run(*args, "--tags", "clean_up")
    for host in ("node1", "node2", "node3"):
        left = on_host(host, "docker ps -aq --filter label=io.llmserve.cluster; ls -A /etc/llmserve 2>/dev/null")
        assert left.stdout.strip() == "", (host, left.stdout)


def test_router_behind_the_key_check(clean_bed, tmp_path):
    args = inventory(tmp_path, "pd", {"prefill": ["node1"], "decode": ["node2"], "proxy": ["node3"]})
    first = run(*args)
    assert ask(DOOR) == 401
    assert ask(DOOR, KEY) == 200
    # the router itself listens on the proxy host's loopback only: no way around the key check
    assert on_host("node3", "curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:10002/health").stdout == "200"
    try:
        urllib.request.urlopen("http://172.31.240.13:10002/health", timeout=5)
        reachable = True
    except OSError:
        reachable = False
    assert not reachable
    assert set(changed(run(*args)).values()) == {0}

    # verify: the deploy's verify stage proved decode loads prefill's KV through the shared directory; with that
    # directory not shared on the decode host (a tmpfs over the bed's shared mount, as when a host lost its NFS
    # mount) it fails naming the pair, and passes once the mount is back
    pair = "prefill-node1 http://172.31.240.11:8000 -> decode-node2 http://172.31.240.12:8000"
    assert pair in first and "decode recomputed" not in first
    on_host("node2", "mount -t tmpfs tmpfs /srv/llmserve-shared && mkdir /srv/llmserve-shared/kv && "
                     "docker restart llmserve-decode-node2")
    try:
        assert until_healthy("node2")
        res = ansible_playbook(SITE, *args, "--tags", "verify")
    finally:
        on_host("node2", "umount /srv/llmserve-shared && docker restart llmserve-decode-node2")
    assert res.returncode != 0 and KEY not in res.stdout + res.stderr, res.stdout[-3000:]
    assert re.search(r"failed: \[\S+ -> localhost\] \(item=%s\)" % re.escape(pair), res.stdout), res.stdout[-3000:]
    assert ("decode recomputed the prompt: no KV arrived from prefill http://172.31.240.11:8000 to decode "
            "http://172.31.240.12:8000 (") in res.stdout, res.stdout[-3000:]
    assert until_healthy("node2")
    assert re.search(r"ok: \[\S+ -> localhost\] => \(item=%s\)" % re.escape(pair), run(*args, "--tags", "verify"))
    run(*args, "--tags", "clean_up")
    for host in ("node1", "node2", "node3"):
        left = on_host(host, "docker ps -aq --filter label=io.llmserve.cluster; ls -A /etc/llmserve 2>/dev/null")
        assert left.stdout.strip() == "", (host, left.stdout)
