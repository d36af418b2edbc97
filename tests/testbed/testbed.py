#!/usr/bin/env python3
"""A real multi-host test bed on one machine.

Each host is a docker-in-docker container with its own address on a private
bridge, its own file system, SSH (key made for the bed), python3 and Docker
daemon. Beside them runs Debian's docker-registry with htpasswd login and TLS
from a test CA that the hosts trust. `up` writes an Ansible inventory whose
registry password is encrypted with ansible-vault.

    testbed.py up [--hosts 5] [--shared node1,node2]    (idempotent)
    testbed.py down [--purge]
    testbed.py push IMAGE [IMAGE ...]                    (tag + push to the bed's registry)
    testbed.py status
"""

import argparse
import ipaddress
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
STATE = Path(os.environ.get("LLMSERVE_TESTBED_STATE", REPO / ".testbed"))
CACHE = Path(os.environ.get("LLMSERVE_TESTBED_CACHE", "/var/cache/llmserve-testbed"))
SUBNET = ipaddress.ip_network(os.environ.get("LLMSERVE_TESTBED_SUBNET", "172.31.240.0/24"))
NETWORK = "llmserve-testbed"
PREFIX = "llmserve-tb-"
LABEL = "io.llmserve.testbed=1"
BASE_IMAGE = "llmserve-testbed/base:bookworm"
HOST_IMAGE = "llmserve-testbed/host:bookworm"
REGISTRY_IMAGE = "llmserve-testbed/registry:bookworm"
DEBIAN_MIRROR = os.environ.get("LLMSERVE_TESTBED_MIRROR", "http://deb.debian.org/debian")
BASE_PACKAGES = "python3,python3-venv,ca-certificates,curl,procps,iproute2"
SHARED_MOUNT = "/srv/llmserve-shared"
REGISTRY_USER = "llmserve"


class TestbedError(Exception):
    """A problem the user can fix; printed without a traceback."""


def log(msg):
    print(f"[testbed] {msg}", flush=True)


def run(cmd, check=True, capture=False, input=None, quiet=False, env=None):
    """Run a command; on failure raise TestbedError with its output."""
    res = subprocess.run(cmd, input=input, text=True, env=env,
                         stdout=subprocess.PIPE if (capture or quiet) else None,
                         stderr=subprocess.PIPE if (capture or quiet) else None)
    if check and res.returncode != 0:
        detail = (res.stderr or res.stdout or "").strip()
        raise TestbedError(f"command failed ({res.returncode}): {' '.join(cmd[:4])} ...\n{detail}")
    return res


def docker(*args, **kw):
    return run(["docker", *args], **kw)


def exists(kind, name):
    return docker(kind, "inspect", name, check=False, quiet=True).returncode == 0


def addresses():
    hosts = list(SUBNET.hosts())
    return {"gateway": str(hosts[0]), "registry": str(hosts[1])}


def node_address(index):
    """node1 is .11, node2 .12, ..."""
    return str(list(SUBNET.hosts())[9 + index])


def registry_addr():
    return f"{addresses()['registry']}:5000"


# ---------------------------------------------------------------- preconditions

def check_machine():
    """Root, disk, packages and a running dockerd; prepare-machine.sh says what is missing."""
    if subprocess.run([str(HERE / "prepare-machine.sh")]).returncode != 0:
        raise TestbedError("the machine is not ready (see the message above)")


# ---------------------------------------------------------------- images

def ensure_base_image():
    if exists("image", BASE_IMAGE):
        return
    rootfs = CACHE / "rootfs-base"
    log(f"building {BASE_IMAGE} with debootstrap (about 1-2 minutes, once)")
    if rootfs.exists():
        shutil.rmtree(rootfs)
    CACHE.mkdir(parents=True, exist_ok=True)
    run(["debootstrap", "--variant=minbase", f"--include={BASE_PACKAGES}", "bookworm",
         str(rootfs), DEBIAN_MIRROR], quiet=True)
    # package caches are not needed at run time; images that install more run apt-get update
    for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for f in (rootfs / junk).glob("*"):
            if f.is_file():
                f.unlink()
    for f in (rootfs / "var/cache/apt").glob("*.bin"):
        f.unlink()
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    imp = subprocess.run(["docker", "import", "-", BASE_IMAGE], stdin=tar.stdout,
                         capture_output=True, text=True)
    tar.wait()
    if imp.returncode != 0 or tar.returncode != 0:
        raise TestbedError(f"docker import of the base rootfs failed: {imp.stderr.strip()}")
    shutil.rmtree(rootfs)


def build_image(tag, context):
    """docker build; its layer cache makes an unchanged image a no-op."""
    docker("build", "--network", "host", "-t", tag, str(context), quiet=True)


def ensure_images():
    ensure_base_image()
    build_image(HOST_IMAGE, HERE / "images" / "host")
    build_image(REGISTRY_IMAGE, HERE / "images" / "registry")


# ---------------------------------------------------------------- secrets and files

def write(path, text, mode=0o600):
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    os.chmod(path, mode)


def ensure_secrets():
    """SSH key, test CA and registry certificate, registry password, vault password."""
    sec = STATE / "secrets"
    sec.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = sec / "id_ed25519"
    if not key.exists():
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "llmserve-testbed", "-f", str(key)])
    write(sec / "authorized_keys", (sec / "id_ed25519.pub").read_text(), 0o600)
    ca_key, ca_crt = sec / "ca.key", sec / "ca.crt"
    if not ca_crt.exists():
        run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650",
             "-subj", "/CN=llmserve test-bed CA", "-keyout", str(ca_key), "-out", str(ca_crt)], quiet=True)
    reg_key, reg_crt = sec / "registry.key", sec / "registry.crt"
    if not reg_crt.exists():
        ip = addresses()["registry"]
        ext = sec / "registry.ext"
        write(ext, f"subjectAltName=IP:{ip},DNS:registry.llmserve.test\n")
        csr = sec / "registry.csr"
        run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=registry.llmserve.test",
             "-keyout", str(reg_key), "-out", str(csr)], quiet=True)
        run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key),
             "-CAcreateserial", "-days", "3650", "-extfile", str(ext), "-out", str(reg_crt)], quiet=True)
    os.chmod(reg_key, 0o644)  # read by the registry process in its container
    os.chmod(ca_crt, 0o644)
    for name in ("registry_password", "vault_password"):
        if not (sec / name).exists():
            write(sec / name, secrets.token_urlsafe(24) + "\n")
    for name, make in BED_SECRETS.items():
        if not (sec / name).exists():
            write(sec / name, make() + "\n")
    password = (sec / "registry_password").read_text().strip()
    htpasswd = sec / "htpasswd"
    if not htpasswd.exists():
        out = run(["htpasswd", "-inB", REGISTRY_USER], input=password, capture=True).stdout
        write(htpasswd, out, 0o644)
    return password


def trust_registry_on_machine():
    """Let this machine's dockerd push to the bed's registry (certs.d is read per request)."""
    dest = Path("/etc/docker/certs.d") / registry_addr() / "ca.crt"
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(STATE / "secrets" / "ca.crt", dest)


# ---------------------------------------------------------------- containers

def ensure_network():
    if not exists("network", NETWORK):
        log(f"creating network {NETWORK} {SUBNET}")
        docker("network", "create", "--subnet", str(SUBNET), "--gateway", addresses()["gateway"],
               "--label", LABEL, NETWORK, quiet=True)


STATE_LABEL = "io.llmserve.testbed.state"


def running_as_wanted(name, image):
    """Running, made from this state directory (another checkout's bed has other keys) and from the
    image as built now (a changed host image replaces the hosts)."""
    res = docker("inspect", "-f", '{{.State.Running}} {{index .Config.Labels "%s"}} {{.Image}}' % STATE_LABEL,
                 name, check=False, quiet=True)
    return res.returncode == 0 and res.stdout.split() == ["true", str(STATE), image_id(image)]


def image_id(image):
    return docker("image", "inspect", "-f", "{{.Id}}", image, capture=True).stdout.strip()


def ensure_container(name, argv):
    if running_as_wanted(name, argv[-1]):
        return
    if exists("container", name):
        docker("rm", "-f", name, quiet=True)
    docker("run", "-d", "--name", name, "--label", LABEL, "--label", f"{STATE_LABEL}={STATE}", *argv, quiet=True)


def ensure_registry():
    sec = STATE / "secrets"
    cfg = STATE / "registry" / "config.yml"
    write(cfg, "\n".join([
        "version: 0.1",
        "storage:",
        "  filesystem:",
        "    rootdirectory: /var/lib/docker-registry",
        "http:",
        "  addr: :5000",
        "  tls:",
        "    certificate: /certs/registry.crt",
        "    key: /certs/registry.key",
        "auth:",
        "  htpasswd:",
        "    realm: llmserve-testbed",
        "    path: /certs/htpasswd",
        ""]), 0o644)
    ensure_container(PREFIX + "registry", [
        "--network", NETWORK, "--ip", addresses()["registry"], "--hostname", "registry",
        "--restart", "unless-stopped",
        "-v", f"{PREFIX}registry-data:/var/lib/docker-registry",
        "-v", f"{cfg}:/etc/docker/registry/config.yml:ro",
        "-v", f"{sec / 'registry.crt'}:/certs/registry.crt:ro",
        "-v", f"{sec / 'registry.key'}:/certs/registry.key:ro",
        "-v", f"{sec / 'htpasswd'}:/certs/htpasswd:ro",
        REGISTRY_IMAGE])


def host_argv(name, index, shared):
    sec = STATE / "secrets"
    argv = [
        "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
        "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
        "--security-opt", "systempaths=unconfined", "--device-cgroup-rule", "a *:* rwm",
        "--cgroupns", "host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
        "-v", f"{PREFIX}{name}-docker:/var/lib/docker",
        "-v", f"{sec / 'authorized_keys'}:/root/.ssh/authorized_keys:ro",
        "-v", f"{sec / 'ca.crt'}:/usr/local/share/ca-certificates/llmserve-testbed-ca.crt:ro",
        # --mount: the registry's address has a colon, which -v cannot take
        "--mount", f"type=bind,src={sec / 'ca.crt'},dst=/etc/docker/certs.d/{registry_addr()}/ca.crt,readonly",
        "--tmpfs", "/run", "--tmpfs", "/run/lock",   # systemd as PID 1 (the image's CMD)
        "--network", NETWORK, "--ip", node_address(index), "--hostname", name,
        "--add-host", f"registry.llmserve.test:{addresses()['registry']}",
    ]
    if shared:
        (STATE / "shared").mkdir(parents=True, exist_ok=True)
        argv += ["-v", f"{STATE / 'shared'}:{SHARED_MOUNT}"]
    return argv + [HOST_IMAGE]


def wait_for(what, probe, timeout=120):
    """Poll until probe() is true; no fixed sleeps."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return
        time.sleep(0.5)
    raise TestbedError(f"timed out after {timeout}s waiting for {what}")


def ssh_cmd(address):
    return ["ssh", "-i", str(STATE / "secrets" / "id_ed25519"), "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "BatchMode=yes",
            "-o", "ConnectTimeout=3", f"root@{address}"]


def node_names(count):
    return [f"node{i}" for i in range(1, count + 1)]


# ---------------------------------------------------------------- inventory

# the secrets of the bed's inventory besides the registry's: the file under .testbed/secrets (and the variable
# llmserve_<name>, from vault_<system>.yml) -> how to make one
BED_SECRETS = {
    "ray_auth_token": lambda: secrets.token_hex(32),   # what `ray get-auth-token --generate` makes
    "xinference_admin_password": lambda: secrets.token_urlsafe(18),
    "gpustack_token": lambda: "gpustack_%s_%s" % (secrets.token_hex(8), secrets.token_hex(16)),   # GPUStack's shape
    "gpustack_bootstrap_password": lambda: secrets.token_urlsafe(18),
    "gpustack_jwt_secret_key": lambda: secrets.token_hex(32),
    # with characters a URL must quote: the servers' database URL is made around it
    "gpustack_database_password": lambda: secrets.token_urlsafe(15) + "/@",
}


def write_inventory(names, shared, password):
    inv = STATE / "inventory"
    hosts = {n: {"ansible_host": node_address(i)} for i, n in enumerate(names, 1)}
    for n in names:
        hosts[n]["llmserve_testbed_shared"] = n in shared
    doc = {"all": {"children": {"testbed": {"hosts": hosts}}}}
    write(inv / "hosts.yml", "# Written by tests/testbed/testbed.py; rewritten by every `up`.\n"
          + json.dumps(doc, indent=2) + "\n", 0o644)
    key = STATE / "secrets" / "id_ed25519"
    write(inv / "group_vars" / "all" / "main.yml", "\n".join([
        "# Written by tests/testbed/testbed.py.",
        "ansible_user: root",
        f"ansible_ssh_private_key_file: {key}",
        "ansible_ssh_common_args: -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
        "ansible_python_interpreter: /usr/bin/python3",
        f"llmserve_registry_url: {registry_addr()}",
        f"llmserve_registry_username: {REGISTRY_USER}",
        "llmserve_registry_password: \"{{ vault_llmserve_registry_password }}\""]
        + ["llmserve_%s: \"{{ vault_llmserve_%s }}\"" % (name, name) for name in BED_SECRETS]
        + [f"llmserve_testbed_shared_dir: {SHARED_MOUNT}", ""]), 0o644)
    vaults = {"vault.yml": {"registry_password": password}}
    for name in BED_SECRETS:
        vaults.setdefault("vault_%s.yml" % name.split("_")[0], {})[name] = (STATE / "secrets" / name).read_text().strip()
    for name, values in vaults.items():
        plain = "".join("vault_llmserve_%s: %s\n" % (key, json.dumps(value)) for key, value in values.items())
        vault = inv / "group_vars" / "all" / name
        if not vault.exists() or "$ANSIBLE_VAULT" not in vault.read_text():
            write(vault, plain, 0o600)
            vault_bin = shutil.which("ansible-vault") or str(Path(sys.executable).parent / "ansible-vault")
            # the bed's own vault password only, whatever ANSIBLE_VAULT_PASSWORD_FILE says
            env = {k: v for k, v in os.environ.items() if k != "ANSIBLE_VAULT_PASSWORD_FILE"}
            run([vault_bin, "encrypt", "--vault-password-file", str(STATE / "secrets" / "vault_password"),
                 str(vault)], quiet=True, env=env)
    return inv


# ---------------------------------------------------------------- commands

def up(count, shared_arg):
    check_machine()
    names = node_names(count)
    shared = names if shared_arg in (None, "all") else [s for s in shared_arg.split(",") if s]
    unknown = sorted(set(shared) - set(names))
    if unknown:
        raise TestbedError(f"--shared names hosts that the bed does not have: {', '.join(unknown)}")
    started = time.monotonic()
    ensure_images()
    password = ensure_secrets()
    ensure_network()
    ensure_registry()
    trust_registry_on_machine()
    for i, name in enumerate(names, 1):
        ensure_container(PREFIX + name, host_argv(name, i, name in shared))
    # hosts beyond the requested count are removed, so `up --hosts 2` after `up` shrinks the bed
    for extra in existing_nodes():
        if extra not in names:
            docker("rm", "-f", PREFIX + extra, quiet=True)
    for i, name in enumerate(names, 1):
        addr = node_address(i)
        wait_for(f"{name} ({addr}) to answer SSH and docker",
                 lambda a=addr: run(ssh_cmd(a) + ["docker info >/dev/null"], check=False,
                                    quiet=True).returncode == 0)
    wait_for("the registry", lambda: run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert",
         str(STATE / "secrets" / "ca.crt"), f"https://{registry_addr()}/v2/"],
        check=False, capture=True).stdout == "401")
    inv = write_inventory(names, shared, password)
    registry_login(password)
    log(f"{count} hosts up in {time.monotonic() - started:.1f}s; inventory: {inv}")
    log(f"registry: {registry_addr()} (user {REGISTRY_USER}); "
        f"vault password file: {STATE / 'secrets' / 'vault_password'}")


def docker_config():
    """A docker client config of the bed's own, so the machine's ~/.docker is left alone."""
    return {**os.environ, "DOCKER_CONFIG": str(STATE / "docker")}


def registry_login(password):
    res = subprocess.run(["docker", "login", "-u", REGISTRY_USER, "--password-stdin", registry_addr()],
                         input=password, text=True, capture_output=True, env=docker_config())
    if res.returncode != 0:
        raise TestbedError(f"docker login to the bed's registry failed: {res.stderr.strip()}")


def push(images, name=None):
    """Tag each local image under the bed's registry and push it (layers already there are skipped); with name, the
    one image goes there under that name."""
    if name and len(images) != 1:
        raise TestbedError("push --as NAME takes one image")
    for image in images:
        target = f"{registry_addr()}/{name or image}"
        docker("tag", image, target)
        log(f"pushing {target}")
        res = subprocess.run(["docker", "push", target], env=docker_config(), capture_output=True, text=True)
        if res.returncode != 0:
            raise TestbedError(f"push of {target} failed: {res.stderr.strip()}")


def existing_nodes():
    out = docker("ps", "-a", "--filter", f"label={LABEL}", "--format", "{{.Names}}", capture=True).stdout
    return sorted(n[len(PREFIX):] for n in out.split() if n.startswith(PREFIX + "node"))


def down(purge):
    out = docker("ps", "-a", "--filter", f"label={LABEL}", "--format", "{{.Names}}", capture=True).stdout
    names = out.split()
    if names:
        log(f"removing {' '.join(names)}")
        docker("rm", "-f", "-v", *names, quiet=True)
    if exists("network", NETWORK):
        docker("network", "rm", NETWORK, quiet=True)
    if purge:
        vols = docker("volume", "ls", "-q", "--filter", f"name={PREFIX}", capture=True).stdout.split()
        if vols:
            docker("volume", "rm", *vols, quiet=True)
        if STATE.exists():
            shutil.rmtree(STATE)
        log("purged volumes and state (images are kept; `docker rmi` them to reclaim disk)")


def status():
    out = docker("ps", "-a", "--filter", f"label={LABEL}", "--format",
                 "{{.Names}}\t{{.Status}}", capture=True).stdout.strip()
    print(out or "no test-bed containers")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    u = sub.add_parser("up", help="bring the bed up (idempotent)")
    u.add_argument("--hosts", type=int, default=int(os.environ.get("LLMSERVE_TESTBED_HOSTS", 5)))
    u.add_argument("--shared", default=None,
                   help="hosts that mount the shared directory (comma list, default all)")
    d = sub.add_parser("down", help="remove the bed's containers and network")
    d.add_argument("--purge", action="store_true", help="also remove volumes and state")
    ps = sub.add_parser("push", help="push local images to the bed's registry")
    ps.add_argument("images", nargs="+")
    ps.add_argument("--as", dest="name", help="the name in the registry (one image only), e.g. to move a tag")
    sub.add_parser("status")
    sub.add_parser("base-image", help="make the Debian base image the bed and engine images start from")
    args = p.parse_args(argv)
    try:
        if args.cmd == "up":
            if not 1 <= args.hosts <= 200:
                raise TestbedError("--hosts must be between 1 and 200")
            up(args.hosts, args.shared)
        elif args.cmd == "down":
            down(args.purge)
        elif args.cmd == "base-image":
            check_machine()
            ensure_base_image()
        elif args.cmd == "push":
            push(args.images, args.name)
        else:
            status()
    except TestbedError as exc:
        print(f"testbed: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
