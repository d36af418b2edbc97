"""The test bed's keys, certificates and inventory, made in a scratch state directory."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTBED = Path(__file__).resolve().parents[1] / "testbed" / "testbed.py"
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def bed(tmp_path_factory):
    state = tmp_path_factory.mktemp("state")
    os.environ["LLMSERVE_TESTBED_STATE"] = str(state)
    try:
        spec = importlib.util.spec_from_file_location("testbed_under_test", TESTBED)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        del os.environ["LLMSERVE_TESTBED_STATE"]
    password = mod.ensure_secrets()
    names = mod.node_names(3)
    inv = mod.write_inventory(names, ["node1", "node2"], password)
    return mod, state, inv, password


def test_hosts_get_consecutive_addresses_after_the_registry(bed):
    mod = bed[0]
    assert mod.addresses()["registry"] == "172.31.240.2"
    assert [mod.node_address(i) for i in (1, 2, 3)] == ["172.31.240.11", "172.31.240.12", "172.31.240.13"]


def test_registry_certificate_is_signed_by_the_test_ca_for_its_address(bed):
    _, state, _, _ = bed
    sec = state / "secrets"
    verify = subprocess.run(["openssl", "verify", "-CAfile", str(sec / "ca.crt"), str(sec / "registry.crt")],
                            capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr
    text = subprocess.run(["openssl", "x509", "-noout", "-text", "-in", str(sec / "registry.crt")],
                          capture_output=True, text=True).stdout
    assert "IP Address:172.31.240.2" in text


def test_vault_file_is_encrypted_and_opens_with_the_bed_password(bed):
    _, state, inv, password = bed
    vault = (inv / "group_vars" / "all" / "vault.yml").read_text()
    assert vault.startswith("$ANSIBLE_VAULT;")
    assert password not in vault
    for secret in ("registry_password", "vault_password", "id_ed25519", "ca.key"):
        assert (state / "secrets" / secret).stat().st_mode & 0o077 == 0, secret


def test_inventory_resolves_hosts_shared_dirs_and_the_registry_login(bed):
    _, state, inv, password = bed
    out = subprocess.run([str(BIN / "ansible-inventory"), "-i", str(inv), "--list",
                          "--vault-password-file", str(state / "secrets" / "vault_password")],
                         capture_output=True, text=True, check=True).stdout
    hostvars = json.loads(out)["_meta"]["hostvars"]
    assert sorted(hostvars) == ["node1", "node2", "node3"]
    assert hostvars["node3"]["ansible_host"] == "172.31.240.13"
    assert [hostvars[h]["llmserve_testbed_shared"] for h in ("node1", "node2", "node3")] == [True, True, False]
    assert hostvars["node1"]["llmserve_registry_url"] == "172.31.240.2:5000"
    assert hostvars["node1"]["vault_llmserve_registry_password"] == password


def test_htpasswd_holds_a_bcrypt_hash_not_the_password(bed):
    _, state, _, password = bed
    line = (state / "secrets" / "htpasswd").read_text().strip()
    user, digest = line.split(":", 1)
    assert user == "llmserve" and digest.startswith("$2y$") and password not in line
