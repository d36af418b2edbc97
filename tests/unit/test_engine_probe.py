"""engine_probe, run by ansible against the engine simulator on loopback."""
import json
import os
import subprocess
import sys
from pathlib import Path

from sim_process import free_port, sim

REPO = Path(__file__).resolve().parents[2]


def probe(*args, check_mode=False, verbosity=None, path=None):
    """Run the module once on localhost; return (rc, parsed result, raw output)."""
    cmd = [str(Path(sys.executable).parent / "ansible"), "localhost", "-m", "llmserve.cluster.engine_probe",
           "-a", json.dumps(dict(a.split("=", 1) for a in args))]
    cmd += ["--check"] if check_mode else []
    cmd += [verbosity] if verbosity else []
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=120, env={
        **os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
        "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json", "ANSIBLE_LOCALHOST_WARNING": "0",
        **({"PATH": "%s:%s" % (path, os.environ["PATH"])} if path else {})})
    # the JSON callback prints the run last; -vvv prints connection details before it
    out = json.loads(res.stdout[res.stdout.rindex("\n{\n") if "\n{\n" in res.stdout else 0:])
    return res.returncode, out["plays"][0]["tasks"][0]["hosts"]["localhost"], res.stdout + res.stderr


def test_healthy_engine_answers_and_reports_its_model():
    with sim("/models/tiny", "--served-model-name", "tiny") as engine:
        rc, result, dummy = probe(f"url={engine.url}", "prompt=hello there", "max_tokens=5")
    assert rc == 0
    assert result["healthy"] is True and result["health_status"] == 200
    assert result["models"] == ["tiny"]
    assert result["usage"]["completion_tokens"] == 5 and result["answer"]
    assert result["changed"] is False


def test_check_mode_probes_too():
    with sim("/models/tiny") as engine:
        rc, result, dummy = probe(f"url={engine.url}", check_mode=True)
    assert rc == 0 and result["healthy"] is True and "answer" not in result


def test_engine_still_starting_fails_without_sending_the_prompt():
    with sim("/models/tiny", env={"LLMSERVE_SIM_STARTUP_DELAY": "60"}, wait_ready=False) as engine:
        engine.wait_health(503)
        rc, result, dummy = probe(f"url={engine.url}", "prompt=hi")
    assert rc != 0
    assert result["health_status"] == 503
    assert "not sending the prompt" in result["msg"]


def test_api_key_is_used_and_never_printed():
    key = "sk-probe-secret-2718"
    with sim("/models/tiny", "--api-key", key) as engine:
        rc, result, out = probe(f"url={engine.url}", f"api_key={key}", "prompt=hi", verbosity="-vvv")
        assert rc == 0 and result["answer"]
        rc_wrong, wrong, out_wrong = probe(f"url={engine.url}", "api_key=wrong-key-1", "prompt=hi")
    assert key not in out
    assert rc_wrong != 0 and "401" in wrong["msg"] and "wrong-key-1" not in out_wrong


def test_wait_polls_until_the_engine_is_healthy():
    with sim("/models/tiny", env={"LLMSERVE_SIM_STARTUP_DELAY": "4"}, wait_ready=False) as engine:
        engine.wait_health(503)
        rc, result, dummy = probe(f"url={engine.url}", "wait=60", "delay=1")
    assert rc == 0 and result["healthy"] is True and result["waited_seconds"] > 0


def test_wait_gives_up_after_its_time_and_says_so():
    with sim("/models/tiny", env={"LLMSERVE_SIM_STARTUP_DELAY": "60"}, wait_ready=False) as engine:
        engine.wait_health(503)
        rc, result, dummy = probe(f"url={engine.url}", "wait=3", "delay=1")
    assert rc != 0 and "did not answer 200 within 3 s (last: 503" in result["msg"]


def test_wait_stops_at_once_when_the_container_restarts_and_shows_its_log(tmp_path):
    """A stand-in docker CLI: the container runs at first, then Docker restarts it (the engine crashed)."""
    calls = tmp_path / "calls"
    docker = tmp_path / "docker"
    docker.write_text("#!/bin/sh\n"
                      "if [ \"$1\" = logs ]; then echo 'ValueError: current platform cpu does not support ray.'; exit 0; fi\n"
                      "echo x >> %s\n"
                      "if [ $(wc -l < %s) -le 1 ]; then echo 'running 0'; else echo 'restarting 1'; fi\n" % (calls, calls))
    docker.chmod(0o755)
    with sim("/models/tiny", env={"LLMSERVE_SIM_STARTUP_DELAY": "600"}, wait_ready=False) as engine:
        engine.wait_health(503)
        rc, result, dummy = probe(f"url={engine.url}", "wait=300", "delay=1", "container=llmserve-ray-vllm",
                                  path=str(tmp_path))
    assert rc != 0 and result["healthy"] is False
    assert result["msg"].startswith("llmserve-ray-vllm restarted while starting (restarting, restarted 1 times)")
    assert "current platform cpu does not support ray" in result["msg"]


def test_wait_stops_at_once_when_the_log_says_the_process_gave_up(tmp_path):
    """A stand-in docker CLI: the container keeps running, its log says it gave up (a refused GPUStack worker)."""
    docker = tmp_path / "docker"
    docker.write_text("#!/bin/sh\n"
                      "if [ \"$1\" = logs ]; then echo \"$@\" > %s/logs-args;"
                      " echo 'ERROR - Failed to register worker: Invalid authentication credentials';"
                      " echo 'ERROR - Error serving worker APIs: Invalid authentication credentials' >&2; exit 0; fi\n"
                      "echo 'running 0'\n" % tmp_path)
    docker.chmod(0o755)
    with sim("/models/tiny", env={"LLMSERVE_SIM_STARTUP_DELAY": "600"}, wait_ready=False) as engine:
        engine.wait_health(503)
        rc, result, dummy = probe(f"url={engine.url}", "wait=300", "delay=1", "container=llmserve-gpustack-worker",
                                  "fail_log=Error serving worker APIs: .*", "fail_hint=check llmserve_gpustack_token",
                                  path=str(tmp_path))
    assert rc != 0 and result["healthy"] is False
    assert result["msg"] == ("llmserve-gpustack-worker gave up while starting; its log says: ERROR - Error serving "
                             "worker APIs: Invalid authentication credentials; check llmserve_gpustack_token")
    # only what the container logged since the wait began counts
    assert (tmp_path / "logs-args").read_text().split()[:2] == ["logs", "--since"]


def test_a_log_line_that_does_not_match_changes_nothing(tmp_path):
    docker = tmp_path / "docker"
    docker.write_text("#!/bin/sh\nif [ \"$1\" = logs ]; then echo 'Failed to register worker: retrying'; exit 0; fi\n"
                      "echo 'running 0'\n")
    docker.chmod(0o755)
    with sim("/models/tiny", env={"LLMSERVE_SIM_STARTUP_DELAY": "3"}, wait_ready=False) as engine:
        rc, result, dummy = probe(f"url={engine.url}", "wait=60", "delay=1", "container=llmserve-gpustack-worker",
                                  "fail_log=Error serving worker APIs: .*", path=str(tmp_path))
    assert rc == 0 and result["healthy"] is True


NIXL = '{"kv_connector":"NixlConnector","kv_role":"kv_both"}'


def test_kv_from_proves_decode_loads_prefills_kv_and_names_both_when_it_does_not():
    p_side, d_side = free_port(), free_port()
    with sim("m", "--kv-transfer-config", NIXL, env={"VLLM_NIXL_SIDE_CHANNEL_PORT": str(p_side)}) as prefill, \
         sim("m", "--kv-transfer-config", NIXL, env={"VLLM_NIXL_SIDE_CHANNEL_PORT": str(d_side)}) as decode, \
         sim("m") as lone:
        rc, result, dummy = probe(f"url={decode.url}", f"kv_from={prefill.url}", "max_tokens=3")
        assert rc == 0, result
        assert result["kv_tokens"] >= 16 and result["usage"]["completion_tokens"] == 3
        assert prefill.metric("llmserve_sim:remote_decode_prefills_total") == 1
        # a second run's prompt is new again (else decode's prefix cache could answer instead of prefill)
        assert probe(f"url={decode.url}", f"kv_from={prefill.url}")[0] == 0
        assert decode.metric("llmserve_sim:kv_transfers_total") == 2
        # an engine without the KV connector computes the whole prompt itself
        rc, result, dummy = probe(f"url={lone.url}", f"kv_from={prefill.url}")
    assert rc != 0 and result["kv_tokens"] == 0
    assert result["msg"].startswith("decode recomputed the prompt: no KV arrived from prefill %s to decode %s ("
                                    % (prefill.url, lone.url)), result["msg"]
