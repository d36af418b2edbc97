#!/usr/bin/python
# Copyright: llmserve.cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: image_pull
short_description: Pull an image only when it is missing or the registry holds another digest, with a true check mode
version_added: 0.1.0
description:
  - Pulls an image from its registry when the host does not have it, or when the registry's digest
    for the tag differs from every digest the host's copy was pulled under.
  - Unlike M(community.docker.docker_image_pull) with O(community.docker.docker_image_pull#module:pull=always),
    check mode asks the registry for the tag's digest (through the Docker daemon and the host's stored
    login) instead of assuming a change, so check mode on a converged cluster reports no change.
  - Talks to the Docker Engine API with Python's standard library only; the login is the one
    M(community.docker.docker_login) or C(docker login) stored in the Docker configuration file
    (E(DOCKER_CONFIG)/config.json, else C(~/.docker/config.json)), credential helpers included.
author:
  - llmserve.cluster maintainers (@llmserve)
attributes:
  check_mode:
    support: full
    description: Compares the registry's digest with the local one; pulls nothing.
  diff_mode:
    support: full
    description: Shows the local and the registry digest.
  idempotent:
    support: full
    description: An image whose digest matches the registry's is left alone.
options:
  name:
    description:
      - Image reference, V(registry:port/repository:tag) or V(repository@sha256:...).
      - Without a tag, V(latest) is used.
    type: str
    required: true
  docker_host:
    description:
      - Where the Docker daemon listens, V(unix:///path/to/socket) or V(tcp://host:port).
        With O(tls) or O(validate_certs), V(tcp) is spoken as HTTPS.
      - SSH (V(ssh://)) is not supported by this module.
      - Without it, E(DOCKER_HOST) is used, else the default.
    type: str
    default: unix:///var/run/docker.sock
    aliases:
      - docker_url
  tls_hostname:
    description:
      - The name the Docker daemon's certificate must carry, when it is not the host of O(docker_host).
      - Without it, E(DOCKER_TLS_HOSTNAME) is used.
    type: str
  api_version:
    description:
      - Docker Engine API version to speak; V(auto) uses the daemon's own.
      - Without it, E(DOCKER_API_VERSION) is used, else the default.
    type: str
    default: auto
    aliases:
      - docker_api_version
  timeout:
    description:
      - Seconds to wait for each answer of the daemon; the pull itself may take as long as it needs.
      - Without it, E(DOCKER_TIMEOUT) is used, else the default.
    type: int
    default: 60
  ca_path:
    description:
      - CA certificate to verify the daemon's certificate with (O(validate_certs=true)).
      - Without it, C(ca.pem) in E(DOCKER_CERT_PATH) is used when that variable is set.
    type: path
    aliases:
      - ca_cert
      - tls_ca_cert
      - cacert_path
  client_cert:
    description:
      - Client certificate for TLS to the daemon.
      - Without it, C(cert.pem) in E(DOCKER_CERT_PATH) is used when that variable is set.
    type: path
    aliases:
      - tls_client_cert
      - cert_path
  client_key:
    description:
      - Key of O(client_cert).
      - Without it, C(key.pem) in E(DOCKER_CERT_PATH) is used when that variable is set.
    type: path
    aliases:
      - tls_client_key
      - key_path
  tls:
    description:
      - Speak TLS to the daemon without verifying its certificate. O(validate_certs=true) takes precedence.
      - Without it, E(DOCKER_TLS) is used, else the default.
    type: bool
    default: false
  validate_certs:
    description:
      - Speak TLS to the daemon and verify its certificate.
      - Without it, E(DOCKER_TLS_VERIFY) is used, else the default.
    type: bool
    default: false
    aliases:
      - tls_verify
  debug:
    description:
      - Accepted as community.docker's modules accept it; this module prints nothing more with it.
    type: bool
    default: false
notes:
  - The host needs no Python package beyond the standard library. The daemon must speak Docker Engine
    API 1.30 (Docker 17.06) or newer, which has the C(/distribution) endpoint this module asks.
requirements:
  - Docker Engine API 1.30 or newer
"""

EXAMPLES = r"""
- name: Pull the engine image on every host, only if it changed
  llmserve.cluster.image_pull:
    name: registry.example.com:5000/llmserve/vllm-cpu:0.32.0
"""

RETURN = r"""
image_id:
  description: Id of the local image after the task (before it, in check mode).
  returned: when the image exists locally after the task
  type: str
  sample: sha256:2cb2fe2b9d88...
registry_digest:
  description: The digest the registry holds for the tag; not asked when a pull was needed anyway.
  returned: when the registry was asked
  type: str
  sample: sha256:7d4a...
"""

import base64
import json
import os
import pwd
import socket
import ssl
import traceback
from http.client import HTTPConnection, HTTPException
from urllib.parse import quote, urlencode, urlsplit

from ansible.module_utils.basic import AnsibleModule, env_fallback

INDEX_NAME = "docker.io"
INDEX_URL = "https://index.docker.io/v1/"
MIN_API_VERSION = (1, 30)  # GET /distribution/{name}/json


class DockerError(Exception):
    """What the daemon, the configuration or a credential helper refused; the text says what."""


class NotFound(DockerError):
    pass


class UnixHTTPConnection(HTTPConnection):
    def __init__(self, socket_path, timeout):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = socket_path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.socket_path)
        self.sock = sock


class TLSHTTPConnection(HTTPConnection):
    def __init__(self, host, port, timeout, context, server_hostname):
        super().__init__(host, port, timeout=timeout)
        self.context = context
        self.server_hostname = server_hostname

    def connect(self):
        super().connect()
        self.sock = self.context.wrap_socket(self.sock, server_hostname=self.server_hostname)


def parse_repository_tag(name):
    """(repository, tag or digest or None), as the Docker CLI splits a reference."""
    parts = name.rsplit("@", 1)
    if len(parts) == 2:
        return parts[0], parts[1]
    parts = name.rsplit(":", 1)
    if len(parts) == 2 and "/" not in parts[1]:
        return parts[0], parts[1]
    return name, None


def resolve_index_name(name):
    name = name.replace("http://", "").replace("https://", "").split("/", 1)[0]
    return INDEX_NAME if name == "index." + INDEX_NAME else name


def registry_of(repository):
    """The registry a repository lives in (docker.io when its first part names no host)."""
    if "://" in repository:
        raise DockerError("repository name cannot contain a scheme (%s)" % repository)
    parts = repository.split("/", 1)
    if len(parts) == 1 or ("." not in parts[0] and ":" not in parts[0] and parts[0] != "localhost"):
        return INDEX_NAME
    if parts[0].startswith("-") or parts[0].endswith("-"):
        raise DockerError("invalid registry name (%s): cannot begin or end with a hyphen" % parts[0])
    return resolve_index_name(parts[0])


def docker_config():
    """The Docker client's configuration file as a dict ({} without one)."""
    home = os.environ.get("HOME") or pwd.getpwuid(os.getuid()).pw_dir
    candidates = [os.path.join(os.environ["DOCKER_CONFIG"], "config.json")] if os.environ.get("DOCKER_CONFIG") else []
    candidates += [os.path.join(home, ".docker", "config.json"), os.path.join(home, ".dockercfg")]
    for path in candidates:
        if os.path.exists(path):
            try:
                with open(path) as f:
                    config = json.load(f)
            except (OSError, ValueError):
                return {}
            return config if isinstance(config, dict) else {}
    return {}


def decode_auth(entry, registry):
    if "identitytoken" in entry:
        return {"IdentityToken": entry["identitytoken"]}
    if "auth" not in entry:
        return {}  # the login lives in a credential store
    username, password = base64.b64decode(entry["auth"]).decode("utf-8").split(":", 1)
    return dict(username=username, password=password, email=entry.get("email"), serveraddress=registry)


def credential_helper(module, helper, registry):
    """The login docker-credential-<helper> keeps for the registry, or None."""
    program = "docker-credential-" + helper
    path = module.get_bin_path(program)
    if path is None:
        raise DockerError("%s not installed or not available in PATH" % program)
    rc, out, err = module.run_command([path, "get"], data=registry, binary_data=True)
    if rc != 0:
        if "credentials not found" in out + err:
            return None
        raise DockerError('credentials store %s exited with "%s"' % (program, (out or err).strip()))
    data = json.loads(out)
    if not data.get("Username") and not data.get("Secret"):
        return None
    if data["Username"] == "<token>":
        return {"ServerAddress": registry, "IdentityToken": data["Secret"]}
    return {"ServerAddress": registry, "Username": data["Username"], "Password": data["Secret"]}


def auth_header(module, registry, config):
    """X-Registry-Auth for the registry from the stored login, or None (anonymous pulls work too)."""
    auths = config.get("auths") or {}
    for key, entry in auths.items():
        if not isinstance(entry, dict):
            raise DockerError("invalid configuration for registry %s in the Docker configuration file" % key)
    if not auths and not config.get("credsStore") and not config.get("credHelpers"):
        # the old file layout (~/.dockercfg): the login entries alone, if that is what it holds
        auths = config if all(isinstance(entry, dict) for entry in config.values()) else {}
    found = None
    helper_key = INDEX_URL if registry == INDEX_NAME else registry
    helper = (config.get("credHelpers") or {}).get(helper_key) or config.get("credsStore")
    if helper:
        found = credential_helper(module, helper, helper_key)
    if found is None:
        key = registry if registry in auths else next((k for k in auths if resolve_index_name(k) == registry), None)
        found = decode_auth(auths[key], key) if key is not None else None
    if not found:
        return None
    return base64.urlsafe_b64encode(json.dumps(found).encode("ascii")).decode("ascii")


class Daemon:
    """The Docker Engine API, over the unix socket or TCP (TLS) the connection options name."""

    def __init__(self, module):
        p = module.params
        host = p["docker_host"]
        url = urlsplit(host if "://" in host else "tcp://" + host)
        self.timeout = p["timeout"]
        self.where = host
        cert_dir = os.environ.get("DOCKER_CERT_PATH")

        def from_cert_dir(value, filename):
            return value or (os.path.join(cert_dir, filename) if cert_dir else None)

        ca = from_cert_dir(p["ca_path"], "ca.pem")
        cert, key = from_cert_dir(p["client_cert"], "cert.pem"), from_cert_dir(p["client_key"], "key.pem")
        self.context = self.socket_path = None
        if url.scheme in ("unix", "http+unix"):
            self.socket_path = url.path
        elif url.scheme in ("tcp", "http", "https"):
            use_tls = p["validate_certs"] or p["tls"] or url.scheme == "https"
            verify = p["validate_certs"] or (url.scheme == "https" and not p["tls"])
            self.address = (url.hostname, url.port or (2376 if use_tls else 2375))
            if use_tls:
                if verify:
                    self.context = ssl.create_default_context(cafile=ca)
                else:
                    self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                    self.context.check_hostname = False
                    self.context.verify_mode = ssl.CERT_NONE
                if cert and key:
                    self.context.load_cert_chain(cert, key)
                self.server_hostname = p["tls_hostname"] or url.hostname
        else:
            raise DockerError("docker_host %s: only unix:// and tcp:// are supported" % host)
        version = p["api_version"]
        if version == "auto":
            self.prefix = ""
            version = self.get_json("/version")["ApiVersion"]
        try:
            too_old = tuple(int(n) for n in version.split(".")) < MIN_API_VERSION
        except ValueError:
            raise DockerError("api_version %s is not a version number" % version)
        if too_old:
            raise DockerError("Docker API version is %s; this module needs %s or newer"
                              % (version, ".".join(str(n) for n in MIN_API_VERSION)))
        self.prefix = "/v" + version

    def open(self, method, path, params=None, headers=None, timeout=None):
        """Send one request; return the response after checking its status."""
        if self.socket_path is not None:
            conn = UnixHTTPConnection(self.socket_path, timeout)
        elif self.context is not None:
            conn = TLSHTTPConnection(self.address[0], self.address[1], timeout, self.context, self.server_hostname)
        else:
            conn = HTTPConnection(self.address[0], self.address[1], timeout=timeout)
        target = self.prefix + path + ("?" + urlencode(params) if params else "")
        conn.request(method, target, headers=headers or {})
        response = conn.getresponse()
        if response.status >= 400:
            body = response.read().decode("utf-8", "replace")
            conn.close()
            try:
                explanation = json.loads(body)["message"]
            except (ValueError, KeyError, TypeError):
                explanation = body.strip()
            error = NotFound if response.status == 404 else DockerError
            raise error("%s %s: %s %s (%s)" % (method, path, response.status, response.reason, explanation))
        return response

    def get_json(self, path, headers=None):
        response = self.open("GET", path, headers=headers, timeout=self.timeout)
        try:
            return json.loads(response.read().decode("utf-8"))
        finally:
            response.close()

    def find_image(self, repository, tag):
        """The local image's inspection, or None."""
        try:
            return self.get_json("/images/%s/json" % quote(reference(repository, tag), safe="/:"))
        except NotFound:
            return None

    def registry_digest(self, repository, tag, auth):
        """The digest the registry holds for repository:tag, asked through the daemon with the stored login."""
        info = self.get_json("/distribution/%s/json" % quote(reference(repository, tag), safe="/:"),
                             headers={"X-Registry-Auth": auth} if auth else None)
        return info["Descriptor"]["digest"]

    def pull(self, repository, tag, auth):
        """Pull; the daemon reports failures inside its stream of progress messages."""
        response = self.open("POST", "/images/create", params=dict(fromImage=repository, tag=tag),
                             headers={"X-Registry-Auth": auth} if auth else None)
        for line in iter(response.readline, b""):
            line = line.strip()
            if not line:
                continue
            message = json.loads(line.decode("utf-8"))
            if message.get("error"):
                detail = message.get("errorDetail") or {}
                raise DockerError(detail.get("message") or message["error"])
        response.close()


def reference(repository, tag):
    return repository + ("@" if tag.startswith("sha256:") else ":") + tag


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            docker_host=dict(type="str", default="unix:///var/run/docker.sock", aliases=["docker_url"],
                             fallback=(env_fallback, ["DOCKER_HOST"])),
            tls_hostname=dict(type="str", fallback=(env_fallback, ["DOCKER_TLS_HOSTNAME"])),
            api_version=dict(type="str", default="auto", aliases=["docker_api_version"],
                             fallback=(env_fallback, ["DOCKER_API_VERSION"])),
            timeout=dict(type="int", default=60, fallback=(env_fallback, ["DOCKER_TIMEOUT"])),
            ca_path=dict(type="path", aliases=["ca_cert", "tls_ca_cert", "cacert_path"]),
            client_cert=dict(type="path", aliases=["tls_client_cert", "cert_path"]),
            client_key=dict(type="path", aliases=["tls_client_key", "key_path"], no_log=False),
            tls=dict(type="bool", default=False, fallback=(env_fallback, ["DOCKER_TLS"])),
            validate_certs=dict(type="bool", default=False, aliases=["tls_verify"],
                                fallback=(env_fallback, ["DOCKER_TLS_VERIFY"])),
            debug=dict(type="bool", default=False),
        ),
        required_together=[["client_cert", "client_key"]],
        supports_check_mode=True,
    )
    name = module.params["name"]
    try:
        daemon = Daemon(module)
    except (DockerError, OSError, HTTPException, ValueError, KeyError) as e:
        module.fail_json(msg="cannot talk to the Docker daemon at %s: %s" % (module.params["docker_host"], e),
                         exception=traceback.format_exc())
    try:
        repository, tag = parse_repository_tag(name)
        tag = tag or "latest"
        local = daemon.find_image(repository, tag)
        result = dict(changed=False)
        auth = None
        if local is None:
            result["changed"] = True
        else:
            auth = auth_header(module, registry_of(repository), docker_config())
            remote = daemon.registry_digest(repository, tag, auth)
            result["registry_digest"] = remote
            result["changed"] = not any(d.endswith("@" + remote) for d in local.get("RepoDigests") or [])
        before = local["Id"] if local else None
        if result["changed"] and not module.check_mode:
            if auth is None:
                auth = auth_header(module, registry_of(repository), docker_config())
            daemon.pull(repository, tag, auth)
            local = daemon.find_image(repository, tag)
        if local:
            result["image_id"] = local["Id"]
        result["diff"] = dict(before=dict(id=before),
                              after=dict(id=result.get("image_id"), registry_digest=result.get("registry_digest")))
        module.exit_json(**result)
    except (DockerError, OSError, HTTPException, ValueError, KeyError) as e:
        module.fail_json(msg="pulling %s failed: %s" % (name, e), exception=traceback.format_exc())


if __name__ == "__main__":
    main()
