"""image_pull: pulls only when missing or changed at the registry; check mode tells the truth."""
import subprocess
import sys
import uuid
from pathlib import Path

from conftest import REPO, task_results

PLAYBOOK = Path(__file__).parent / "playbooks" / "pull.yml"
IMAGE = "llmserve/pull-probe:test"


def publish_new_build(tmp_path):
    """A new image (new digest) under the same tag, pushed to the bed's registry."""
    (tmp_path / "Dockerfile").write_text(
        f"FROM llmserve-testbed/base:bookworm\nLABEL io.llmserve.build={uuid.uuid4().hex}\n")
    subprocess.run(["docker", "build", "-q", "-t", IMAGE, str(tmp_path)], check=True, capture_output=True)
    subprocess.run([sys.executable, str(REPO / "tests/testbed/testbed.py"), "push", IMAGE],
                   check=True, capture_output=True)


def pull(*args):
    tasks, dummy = task_results(PLAYBOOK, "-e", f"pull_image={IMAGE}", *args)
    return tasks["Pull it when missing or changed at the registry"]["node1"]


def test_pull_only_when_the_registry_digest_changes(testbed, tmp_path):
    publish_new_build(tmp_path)
    first = pull()
    assert first["changed"] is True
    again = pull()
    assert again["changed"] is False and again["image_id"] == first["image_id"]
    assert pull("--check")["changed"] is False

    publish_new_build(tmp_path)
    would = pull("--check")
    assert would["changed"] is True
    assert would["image_id"] == first["image_id"], "check mode must not pull"
    pulled = pull()
    assert pulled["changed"] is True and pulled["image_id"] != first["image_id"]
    assert pulled["registry_digest"] == would["registry_digest"]
