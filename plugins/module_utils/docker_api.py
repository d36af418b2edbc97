# Copyright: llmserve.cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Docker Engine API over its unix socket or TCP (TLS), and the registry login the Docker client stored,
with Python's standard library only: image_pull and deploy_state speak to the daemon through it."""

from __future__ import annotations

import base64
import json
import os
import pwd
import socket
import ssl
from http.client import HTTPConnection
from urllib.parse import quote, urlencode, urlsplit

from ansible.module_utils.basic import env_fallback

# The daemon's connection options, named and defaulted as community.docker's modules name them
DOCKER_ARGS = dict(
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
)
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


def stored_login(module, registry, config):
    """The login stored for the registry (username and password, or an identity token), or None."""
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
    return found or None


def auth_header(module, registry, config):
    """X-Registry-Auth for the registry from the stored login, or None (anonymous pulls work too)."""
    found = stored_login(module, registry, config)
    return base64.urlsafe_b64encode(json.dumps(found).encode("ascii")).decode("ascii") if found else None


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

    def open(self, method, path, params=None, headers=None, timeout=None, body=None):
        """Send one request (body: an object sent as JSON); return the response after checking its status."""
        if self.socket_path is not None:
            conn = UnixHTTPConnection(self.socket_path, timeout)
        elif self.context is not None:
            conn = TLSHTTPConnection(self.address[0], self.address[1], timeout, self.context, self.server_hostname)
        else:
            conn = HTTPConnection(self.address[0], self.address[1], timeout=timeout)
        target = self.prefix + path + ("?" + urlencode(params) if params else "")
        headers = dict(headers or {}, **({"Content-Type": "application/json"} if body is not None else {}))
        conn.request(method, target, body=None if body is None else json.dumps(body), headers=headers)
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

    def exec_status(self, container, argv):
        """The exit code of argv run in a running container (docker exec), its output dropped: the start request
        returns when the command ends."""
        response = self.open("POST", "/containers/%s/exec" % quote(container, safe=""), timeout=self.timeout,
                             body=dict(Cmd=argv, AttachStdout=True, AttachStderr=True))
        exec_id = json.loads(response.read().decode("utf-8"))["Id"]
        response.close()
        response = self.open("POST", "/exec/%s/start" % exec_id, timeout=self.timeout, body=dict(Detach=False))
        response.read()
        response.close()
        return self.get_json("/exec/%s/json" % exec_id)["ExitCode"]

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


def image_state(module, daemon, name):
    """(repository, tag, local image inspection or None, the registry's digest or None, whether a pull is due):
    due when the host lacks the image or the registry holds a digest the local copy was not pulled under."""
    repository, tag = parse_repository_tag(name)
    tag = tag or "latest"
    local = daemon.find_image(repository, tag)
    if local is None:
        return repository, tag, None, None, True
    remote = daemon.registry_digest(repository, tag, auth_header(module, registry_of(repository), docker_config()))
    return repository, tag, local, remote, not any(d.endswith("@" + remote) for d in local.get("RepoDigests") or [])
