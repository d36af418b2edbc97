"""`make demo` on an unfit machine says what is missing and what to do."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "testbed" / "prepare-machine.sh"


def run(env=None, user=None):
    cmd = [str(SCRIPT)]
    if user:
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"] + cmd
    return subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=60)


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root to drop to another user")
def test_not_root_says_to_run_as_root():
    res = run(user=65534)
    assert res.returncode == 1
    assert "needs root" in res.stderr and "sudo make" in res.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="the root check comes first")
def test_too_little_disk_says_how_much_is_needed():
    res = run(env={"LLMSERVE_NEED_DISK_GIB": "100000000"})
    assert res.returncode == 1
    assert "GiB free" in res.stderr and "needs about 100000000 GiB" in res.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="the root check comes first")
def test_dockerd_that_cannot_start_shows_its_log(tmp_path):
    # every package is present on this machine (make test installed them); docker and dockerd are fakes
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "docker").write_text("#!/bin/sh\nexit 1\n")
    (fake / "dockerd").write_text("#!/bin/sh\necho 'failed to start daemon: no space for /var/lib/docker'\nexit 1\n")
    for f in fake.iterdir():
        f.chmod(0o755)
    log = tmp_path / "dockerd.log"
    res = run(env={"PATH": f"{fake}:{os.environ['PATH']}", "LLMSERVE_DOCKERD_LOG": str(log)})
    assert res.returncode == 1
    assert "dockerd did not start" in res.stderr
    assert "no space for /var/lib/docker" in res.stderr
