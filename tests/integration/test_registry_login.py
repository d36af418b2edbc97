"""Registry credentials: the login works, is idempotent, and the password never reaches a log."""
from pathlib import Path

from conftest import ansible_playbook

PLAYBOOK = Path(__file__).parent / "playbooks" / "registry_login.yml"


def test_login_never_prints_the_password_even_at_vvv(testbed, registry_password):
    first = ansible_playbook(PLAYBOOK, "-vvv", "--diff")
    assert first.returncode == 0, first.stdout[-3000:]
    second = ansible_playbook(PLAYBOOK, "-vvv", "--diff")
    assert second.returncode == 0, second.stdout[-3000:]
    for run in (first, second):
        assert registry_password not in run.stdout + run.stderr
    assert "changed=0" in second.stdout and "failed=0" in second.stdout


def test_wrong_password_fails_naming_host_and_variables_without_printing_it(testbed):
    wrong = "not-the-password-4711"
    res = ansible_playbook(PLAYBOOK, "-v", "--limit", "node1", "-e", f"llmserve_registry_password={wrong}")
    assert res.returncode != 0
    out = res.stdout + res.stderr
    assert "node1 could not log into" in out
    assert "llmserve_registry_password" in out
    assert "unauthorized" in out.lower()
    assert wrong not in out
