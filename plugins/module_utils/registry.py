# Copyright: llmserve.cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What an image weighs before it is pulled, and whether the host has room for it: the registry's manifest (HTTP API
v2, the stored login answering its Basic or Bearer challenge) against the layers the host's images already hold and
the free space of the Docker daemon's data root. Python's standard library only."""

from __future__ import annotations

import base64
import glob
import json
import os
import re
from urllib.error import HTTPError
from urllib.parse import urlencode

from ansible.module_utils.urls import open_url
from ansible_collections.llmserve.cluster.plugins.module_utils.docker_api import (
    INDEX_NAME, DockerError, docker_config, registry_of, stored_login)

MANIFEST_TYPES = ", ".join((
    "application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json"))
# A layer unpacks to about this many times its compressed size, while its download waits beside it: measured on the
# test bed's images as 2.3 (engine simulator), 2.5 (vllm-router) and 3.2 (vLLM's CPU build, mostly PyTorch)
UNPACK_RATIO = 3.5
CERTS_D = "/etc/docker/certs.d"


class Registry:
    """GET from one repository of a registry, logging in as the Docker client would, once per challenge."""

    def __init__(self, module, info, repository, timeout):
        self.registry = registry_of(repository)
        first, dummy, rest = repository.partition("/")
        # the name inside the registry: without the registry's host; docker.io's single names live under library/
        name = rest if rest and ("." in first or ":" in first or first == "localhost") else repository
        self.path = "library/" + name if self.registry == INDEX_NAME and "/" not in name else name
        index = (info.get("RegistryConfig") or {}).get("IndexConfigs") or {}
        secure = (index.get(self.registry) or {}).get("Secure", True)
        host = "registry-1.docker.io" if self.registry == INDEX_NAME else self.registry
        self.base = ("https://" if secure else "http://") + host
        # the CA Docker trusts for this registry (certs.d/<registry>/ca.crt) when there is one, else the system's
        self.ca = (sorted(glob.glob(os.path.join(CERTS_D, self.registry, "*.crt"))) or [None])[0]
        login = stored_login(module, self.registry, docker_config()) or {}
        self.user = login.get("username") or login.get("Username")
        self.password = login.get("password") or login.get("Password")
        self.authorization, self.timeout = None, timeout

    def basic(self):
        if not self.user:
            return {}
        pair = ("%s:%s" % (self.user, self.password)).encode("utf-8")
        return {"Authorization": "Basic " + base64.b64encode(pair).decode("ascii")}

    def open(self, url, headers):
        # a redirect (to a blob store) does not carry the registry's Authorization along
        return open_url(url, headers=headers, timeout=self.timeout, ca_path=self.ca, use_netrc=False,
                        unredirected_headers=["Authorization"])

    def get_json(self, what, accept="application/json"):
        """GET /v2/<repository>/<what> as JSON; a 401 is answered with the login and the request sent again."""
        url = "%s/v2/%s/%s" % (self.base, self.path, what)
        for attempt in (1, 2):
            headers = dict(Accept=accept, **({"Authorization": self.authorization} if self.authorization else {}))
            try:
                with self.open(url, headers) as response:
                    return json.loads(response.read().decode("utf-8"))
            except HTTPError as e:
                if e.code != 401 or attempt == 2:
                    raise DockerError("registry %s answered %s %s for %s" % (self.registry, e.code, e.reason, what))
                self.log_in(e.headers.get("WWW-Authenticate") or "")

    def log_in(self, challenge):
        """Basic: send the login. Bearer: trade the login (or nothing) for a token at the realm it names."""
        scheme = challenge.split(" ", 1)[0].lower()
        if scheme == "basic":
            self.authorization = self.basic().get("Authorization")
            return
        if scheme != "bearer":
            raise DockerError("registry %s asks for %r, which this module does not speak" % (self.registry, challenge))
        fields = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        query = urlencode(dict((k, fields[k]) for k in ("service", "scope") if k in fields))
        with self.open(fields["realm"] + ("?" + query if query else ""), self.basic()) as response:
            answer = json.loads(response.read().decode("utf-8"))
        self.authorization = "Bearer " + (answer.get("token") or answer["access_token"])


def new_layers(module, daemon, info, repository, tag):
    """[(layer digest, compressed size)] of the image's layers that no image on the host holds yet."""
    registry = Registry(module, info, repository, daemon.timeout)
    manifest = registry.get_json("manifests/" + tag, MANIFEST_TYPES)
    if "manifests" in manifest:  # an index: the entry for the daemon's platform
        version = daemon.get_json("/version")
        wanted = (version.get("Os", "linux"), version.get("Arch", "amd64"))
        entry = next((m for m in manifest["manifests"] if (m.get("platform", {}).get("os"),
                                                           m.get("platform", {}).get("architecture")) == wanted), None)
        if entry is None:
            raise DockerError("%s:%s has no image for %s/%s" % (repository, tag, wanted[0], wanted[1]))
        manifest = registry.get_json("manifests/" + entry["digest"], MANIFEST_TYPES)
    diff_ids = registry.get_json("blobs/" + manifest["config"]["digest"])["rootfs"]["diff_ids"]
    held = set()
    for image in daemon.get_json("/images/json"):
        held.update(daemon.get_json("/images/%s/json" % image["Id"]).get("RootFS", {}).get("Layers") or [])
    return [(layer["digest"], layer["size"]) for layer, diff in zip(manifest["layers"], diff_ids) if diff not in held]


def free_bytes(daemon, info=None):
    """(Docker's data root, bytes free there), or (root, None) when the daemon is not on this machine."""
    root = (info or daemon.get_json("/info")).get("DockerRootDir", "/var/lib/docker")
    if daemon.socket_path is None or not os.path.isdir(root):
        return root, None
    stat = os.statvfs(root)
    return root, stat.f_bavail * stat.f_frsize


def gigabytes(n):
    return "%.2f GB" % (n / 1e9)


def room_problem(module, daemon, name, repository, tag, keep_free):
    """Why the host has no room to pull the image (a sentence), or None. When the registry cannot be asked, a warning
    says so and the pull goes ahead: the daemon may reach the registry through a mirror this host cannot."""
    info = daemon.get_json("/info")
    root, free = free_bytes(daemon, info)
    if free is None:
        return None
    try:
        layers = new_layers(module, daemon, info, repository, tag)
    except (DockerError, OSError, ValueError, KeyError, TypeError) as e:
        module.warn("could not learn the size of %s from its registry (%s); pulling it without a space check" % (name, e))
        return None
    compressed = sum(size for digest, size in layers)
    needed = int(compressed * UNPACK_RATIO)
    if free >= needed + keep_free:
        return None
    return ("no room for %s in Docker's data root %s: its %s weigh%s %s compressed, about %s unpacked, "
            "and %s is to stay free (keep_free), but only %s is free. Make room (docker system df shows what holds "
            "it, docker image prune -a removes unused images) or lower keep_free; nothing was pulled"
            % (name, root, "1 new layer" if len(layers) == 1 else "%d new layers" % len(layers),
               "s" if len(layers) == 1 else "", gigabytes(compressed), gigabytes(needed), gigabytes(keep_free),
               gigabytes(free)))
