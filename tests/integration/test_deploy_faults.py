"""Faults during a deploy, on the test bed with the engine simulator (prefill node1, decode node2, the front door on
node3 behind an API key): an engine host that cannot be reached, a registry that refuses the login or is down, a host
without room for a new image, a deploy interrupted half way, and a planned port held by another process. Each run names the host and the cause; the front door is never started listing an
engine that is not up; the next run converges (and a run after it changes nothing), with no container of the
interrupted run recreated."""
import os
import re
import signal
import subprocess
import sys

from conftest import INVENTORY, REPO, VAULT_PASSWORD_FILE, ansible_playbook, on_host
from test_front_door import DOOR, KEY, REGISTRY, SITE, ask, changed, container_ids, inventory, run

sys.path.insert(0, str(REPO / "bench"))
from failover import wait as until  # noqa: E402

GROUPS = {"prefill": ["node1"], "decode": ["node2"], "proxy": ["node3"]}
FRONT_DOOR_KEPT = "the front door on node3 is left as it was"


def failing(*args):
    """A run that fails; its output with every run of white space made one space (the callback wraps messages)."""
    res = ansible_playbook(SITE, *args)
    out = res.stdout + res.stderr
    assert res.returncode != 0, out[-3000:]
    assert KEY not in out
    return " ".join(out.split())


def converges(args):
    """The next run deploys what is missing and the front door answers; the one after changes nothing."""
    run(*args)
    assert ask(DOOR, KEY) == 200
    assert set(changed(run(*args)).values()) == {0}


def test_an_unreachable_engine_host_starts_no_front_door_and_the_next_run_converges(clean_bed, tmp_path):
    out = failing(*inventory(tmp_path, "pd", GROUPS, node2=dict(ansible_port=1)))
    assert re.search(r"fatal: \[node2\]: UNREACHABLE!.*port 1: Connection refused", out), out[-3000:]
    assert FRONT_DOOR_KEPT in out and "so their engines are not known to be up: node2." in out, out[-3000:]
    assert container_ids(["node3"]) == {}   # neither nginx nor the router lists node2's engine
    assert "llmserve-prefill-node1" in container_ids(["node1"])   # the hosts that answer are deployed
    converges(inventory(tmp_path, "pd", GROUPS))
    run(*inventory(tmp_path, "pd", GROUPS), "--tags", "clean_up")


def test_a_registry_that_refuses_the_login_or_is_down_is_named_and_the_next_run_converges(clean_bed, tmp_path):
    args = inventory(tmp_path, "pd", GROUPS)
    wrong = "not-the-password-0815"
    out = failing(*args, "-e", "llmserve_registry_password=" + wrong)
    for host in ("node1", "node2", "node3"):
        assert "%s could not log into" % host in out, out[-3000:]
    assert "unauthorized" in out.lower() and "llmserve_registry_password" in out and wrong not in out
    assert container_ids(["node1", "node2", "node3"]) == {}

    down = inventory(tmp_path, "down", GROUPS, node1=dict(llmserve_image="172.31.240.2:5999/llmserve/engine-sim:0.1.0"))
    out = failing(*down)
    assert re.search(r"failed: \[node1\] \(item=172\.31\.240\.2:5999/\S+\) => .*? msg: 'pulling "
                     r"172\.31\.240\.2:5999/llmserve/engine-sim:0\.1\.0 failed: .*?connection refused", out), out[-3000:]
    assert FRONT_DOOR_KEPT in out and "known to be up: node1." in out, out[-3000:]
    assert container_ids(["node3"]) == {}
    converges(args)
    run(*args, "--tags", "clean_up")


def fat_engine_image(tmp_path):
    """The engine simulator with one more layer of 100 MB that does not compress, pushed to the bed's registry."""
    (tmp_path / "Dockerfile").write_text("FROM llmserve/engine-sim:0.1.0\n"
                                         "RUN head -c 100000000 /dev/urandom > /fat.bin\n")
    subprocess.run(["docker", "build", "-q", "-t", "llmserve/engine-sim:fat", str(tmp_path)], check=True,
                   capture_output=True)
    subprocess.run([sys.executable, str(REPO / "tests/testbed/testbed.py"), "push", "llmserve/engine-sim:fat"],
                   check=True, capture_output=True)
    return REGISTRY + "engine-sim:fat"


def test_a_host_without_room_for_a_new_image_keeps_its_engines_and_the_next_run_converges(clean_bed, tmp_path):
    args = inventory(tmp_path, "pd", GROUPS)
    run(*args)
    running = container_ids(["node1", "node2", "node3"])
    fat = fat_engine_image(tmp_path)
    on_host("node2", "docker image rm %s" % fat)   # an earlier run of this test may have left it there
    # node2's disk made to hold 20 MB less than that layer needs: what must stay free is what is free now, less 20 MB
    free = int(on_host("node2", "df --output=avail -B1 /var/lib/docker | tail -1").stdout)
    upgrade = dict(llmserve_image=fat)
    out = failing(*inventory(tmp_path, "tight", GROUPS, node2=dict(upgrade, llmserve_image_keep_free=free - 20 * 10 ** 6)))
    assert re.search(r"Task failed: Action failed: node2: no room for %s in Docker's data root /var/lib/docker: "
                     r"its 1 new layer weighs 0\.10 GB compressed, about 0\.35 GB unpacked, and [\d.]+ GB is to stay "
                     r"free \(llmserve_image_keep_free\), but only [\d.]+ GB is free\. Make room .* or lower "
                     r"llmserve_image_keep_free; nothing was pulled" % re.escape(fat), out), out[-3000:]
    assert FRONT_DOOR_KEPT in out and "known to be up: node2." in out, out[-3000:]
    # nothing lost: every container as it was, the cluster answers, the image is not on node2
    assert container_ids(["node1", "node2", "node3"]) == running
    assert ask(DOOR, KEY) == 200
    assert on_host("node2", "docker image ls -q %s" % fat).stdout.strip() == ""
    converges(inventory(tmp_path, "upgrade", GROUPS, node2=upgrade))
    after = container_ids(["node1", "node2", "node3"])
    assert after["llmserve-prefill-node1"] == running["llmserve-prefill-node1"]
    assert after["llmserve-decode-node2"] != running["llmserve-decode-node2"]   # the new image runs
    run(*args, "--tags", "clean_up")


def test_a_deploy_interrupted_half_way_is_finished_by_the_next_run(clean_bed, tmp_path):
    # the decode engine takes 20 s to load (the simulator's start-up delay), so the run is surely half way when the
    # prefill engine runs
    args = inventory(tmp_path, "pd", GROUPS, node2=dict(llmserve_vllm_env={"LLMSERVE_SIM_STARTUP_DELAY": "20"}))
    cmd = [str(REPO / ".venv" / "bin" / "ansible-playbook"), "-i", str(INVENTORY), SITE, *args]
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_VAULT_PASSWORD_FILE=str(VAULT_PASSWORD_FILE))
    with subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as deploy:
        # Ctrl-C once the first engine runs, before the front door
        started = until(lambda: "llmserve-prefill-node1" in container_ids(["node1"]), timeout=600)
        deploy.send_signal(signal.SIGINT)
        assert deploy.wait(timeout=120) != 0 and started
    engines = container_ids(["node1", "node2"])
    converges(args)
    # what the interrupted run had started right is kept, not recreated
    after = container_ids(["node1", "node2"])
    assert {name: after[name] for name in engines} == engines
    assert "llmserve-router" in container_ids(["node3"])
    run(*args, "--tags", "clean_up")


def test_a_port_held_by_another_process_or_blocked_between_hosts_stops_the_deploy_before_any_engine_starts(
        clean_bed, tmp_path):
    args = inventory(tmp_path, "pd", GROUPS)
    on_host("node2", "setsid python3 -m http.server 8000 --bind 172.31.240.12 >/dev/null 2>&1 < /dev/null & "
                     "for i in $(seq 100); do curl -s -o /dev/null http://172.31.240.12:8000/ && exit 0; sleep 0.1; done")
    try:
        out = failing(*args)
    finally:
        on_host("node2", "pkill -f 'http.server 8000'")
    assert re.search(r"fatal: \[node2\]: FAILED!.*port 8000 \(vllm-api of decode-node2\) is held by PID \d+ \(python3 -m "
                     r"http\.server 8000 --bind 172\.31\.240\.12\); stop it, or move the port \(llmserve_vllm_port\)",
                     out), out[-3000:]
    assert container_ids(["node1", "node2", "node3"]) == {}   # no engine started, on any host

    # a firewall on node1 drops the front door's (node3's) connections to its engine's port: found before any engine
    # starts, though nothing listens there yet (each host listens on its planned ports while its peers connect)
    rule = "INPUT -p tcp --dport 8000 -s 172.31.240.13 -j DROP"
    on_host("node1", "iptables -I " + rule)
    try:
        out = failing(*args)
    finally:
        on_host("node1", "iptables -D " + rule)
    assert "fatal: [node3]: FAILED!" in out and "node3 cannot reach node1 at 172.31.240.11 port 8000 (vllm-api of " \
        "prefill-node1, set by llmserve_vllm_port): no answer within 3 s (dropped on the way); open TCP 8000 from node3 " \
        "to node1 (firewall, security group)" in out, out[-3000:]
    assert container_ids(["node1", "node2", "node3"]) == {}
    assert on_host("node1", "ss -ltn | grep -c ':8000 '").stdout.strip() == "0"   # the check's listener is gone
    converges(args)
    run(*args, "--tags", "clean_up")
