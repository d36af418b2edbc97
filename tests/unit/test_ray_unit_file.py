"""The systemd unit the runner role writes for a workload run as a service (a Ray node from a virtual environment).

systemd-analyze (from the systemd package, on these machines) checks the unit as systemd would load it;
molecule ray checks on a systemd host that the process it starts has the plan's argv word for word.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import jinja2
import pytest

from plan_inventories import plan_of

TEMPLATE = Path(__file__).resolve().parents[2] / "roles" / "runner" / "templates" / "unit.service.j2"
ANALYZE = shutil.which("systemd-analyze")


def render(workload):
    """What ansible.builtin.template writes (trim_blocks on)."""
    env = jinja2.Environment(trim_blocks=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    return env.from_string(TEMPLATE.read_text()).render(item=workload, ansible_managed="Ansible managed")


def service_member(tmp_path, **extra):
    venv = tmp_path / "venv"
    hostvars = {"h": dict(ansible_host="10.0.0.1", llmserve_model="/m", llmserve_devices="0", llmserve_accelerator="cpu",
                          llmserve_ray_runtime="service", llmserve_ray_venv=str(venv), llmserve_ray_vllm=False,
                          llmserve_ray_auth_token="t" * 64, **extra)}
    (workload,) = plan_of({"ray_head": ["h"]}, hostvars)["hosts"]["h"]["workloads"]
    return workload


def test_the_unit_quotes_every_word_of_the_plan(tmp_path):
    member = service_member(tmp_path, llmserve_ray_resources={"x y": 1, "pct%": 2},
                            llmserve_ray_start_extra_args=["--labels", '{"zone":"$HOME"}'])
    text = render(member)
    (exec_start,) = [line for line in text.splitlines() if line.startswith("ExecStart=")]
    assert exec_start.startswith('ExecStart="%s/venv/bin/ray" "start" "--block" "--node-ip-address" "10.0.0.1"' % tmp_path)
    # JSON's quotes escaped, % and $ doubled so systemd neither expands a specifier nor a variable
    assert r'"--resources" "{\"pct%%\":2,\"x y\":1}"' in exec_start
    assert r'"--labels" "{\"zone\":\"$$HOME\"}"' in exec_start
    assert 'Environment="RAY_AUTH_TOKEN_PATH=/etc/llmserve/ray/auth_token"' in text.splitlines()
    assert "Restart=always" in text and "SuccessExitStatus=1" in text and "Type=simple" in text and "TimeoutStopSec=30" in text
    assert "t" * 64 not in text      # the token stays in its file


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")
def test_systemd_accepts_the_unit(tmp_path):
    member = service_member(tmp_path, llmserve_ray_resources={"x y": 1})
    ray = tmp_path / "venv" / "bin" / "ray"
    ray.parent.mkdir(parents=True)
    ray.write_text("#!/bin/sh\n")
    ray.chmod(0o755)
    unit = tmp_path / member["service"]["unit"]
    unit.write_text(render(member))
    res = subprocess.run([ANALYZE, "verify", str(unit)], capture_output=True, text=True)
    assert res.returncode == 0 and "llmserve-ray-head" not in res.stderr, res.stderr
    # and it does complain about a broken unit, so the check above means something
    unit.write_text(render(member).replace("ExecStart=", "ExecStart=relative/"))
    res = subprocess.run([ANALYZE, "verify", str(unit)], capture_output=True, text=True)
    assert res.returncode != 0 and "bad unit file setting" in res.stderr, res.stderr
