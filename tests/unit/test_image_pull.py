"""image_pull, run by ansible against a stand-in Docker daemon on a unix socket (no docker needed).

The stand-in answers the four Engine API calls the module makes (/version, image inspect,
/distribution, /images/create) and checks the X-Registry-Auth header against a stored login, so the
digest logic, check mode, the login lookup and the pull's error stream are tested here; the real
daemon and registry are tested by tests/integration/test_image_pull.py on the test bed.
"""
import base64
import json
import os
import socketserver
import ssl
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

REPO = Path(__file__).resolve().parents[2]
REGISTRY = "registry.test:5000"
IMAGE = REGISTRY + "/llmserve/probe"
LOGIN = {"username": "deploy", "password": "s3cret-pull"}


class JSONHandler(BaseHTTPRequestHandler):
    """A stand-in's request handler: silent, answering JSON."""

    def log_message(self, *args):
        pass

    def reply(self, status, body, headers=()):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class FakeDaemon:
    """Images on the host, digests at the registry, and the requests the module made."""

    def __init__(self, path, api_version="1.43", tls=None):
        self.api_version = api_version
        self.local = {}      # reference -> {"Id", "RepoDigests"}
        self.registry = {}   # reference -> digest
        self.requests = []   # (method, path, decoded X-Registry-Auth or None)
        self.pull_error = None
        self.root = str(path.parent) if path else "/nonexistent"   # DockerRootDir: free space is measured there
        self.index = {}        # registry -> {"Secure": bool} (the daemon's /info RegistryConfig.IndexConfigs)
        self.containers = {}  # name -> inspection (deploy_state's tests)
        self.exec_codes = {}  # name -> exit code of any command run in it (docker exec)
        self.execs = {}       # exec id -> (container, argv)
        daemon = self

        class Handler(JSONHandler):
            protocol_version = "HTTP/1.1"

            def auth(self):
                header = self.headers.get("X-Registry-Auth")
                return json.loads(base64.urlsafe_b64decode(header)) if header else None

            def authorised(self, auth):
                return auth and ((auth.get("username"), auth.get("password")) == (LOGIN["username"], LOGIN["password"])
                                 or (auth.get("Username"), auth.get("Password")) == (LOGIN["username"], LOGIN["password"]))

            def do_GET(self):
                url = urlsplit(self.path)
                path, auth = unquote(url.path), self.auth()
                daemon.requests.append(("GET", path, auth))
                prefix = "/v%s" % daemon.api_version
                if path in ("/version", prefix + "/version"):
                    return self.reply(200, {"ApiVersion": daemon.api_version, "Version": "27.5.1", "Os": "linux",
                                            "Arch": "amd64"})
                if path == prefix + "/info":
                    return self.reply(200, {"DockerRootDir": daemon.root,
                                            "RegistryConfig": {"IndexConfigs": daemon.index}})
                if path == prefix + "/images/json":
                    return self.reply(200, [{"Id": image["Id"]} for image in daemon.local.values()])
                if path.startswith(prefix + "/containers/") and path.endswith("/json"):
                    name = path[len(prefix + "/containers/"):-len("/json")]
                    if name in daemon.containers:
                        return self.reply(200, daemon.containers[name])
                    return self.reply(404, {"message": "No such container: " + name})
                if path.startswith(prefix + "/exec/") and path.endswith("/json"):
                    name, argv = daemon.execs[path[len(prefix + "/exec/"):-len("/json")]]
                    return self.reply(200, {"ExitCode": daemon.exec_codes.get(name, 0), "Running": False})
                if path.startswith(prefix + "/images/") and path.endswith("/json"):
                    ref = path[len(prefix + "/images/"):-len("/json")]
                    by_id = {image["Id"]: image for image in daemon.local.values()}
                    if ref in daemon.local or ref in by_id:
                        return self.reply(200, daemon.local.get(ref) or by_id[ref])
                    return self.reply(404, {"message": "No such image: " + ref})
                if path.startswith(prefix + "/distribution/") and path.endswith("/json"):
                    ref = path[len(prefix + "/distribution/"):-len("/json")]
                    if not self.authorised(auth):
                        return self.reply(401, {"message": "unauthorized: authentication required"})
                    if ref not in daemon.registry:
                        return self.reply(404, {"message": "manifest unknown"})
                    return self.reply(200, {"Descriptor": {"digest": daemon.registry[ref]}})
                return self.reply(404, {"message": "page not found"})

            def do_POST(self):
                url = urlsplit(self.path)
                path, auth, query = unquote(url.path), self.auth(), parse_qs(url.query)
                daemon.requests.append(("POST", path, auth))
                prefix = "/v%s" % daemon.api_version
                if path.startswith(prefix + "/containers/") and path.endswith("/exec"):
                    name = path[len(prefix + "/containers/"):-len("/exec")]
                    body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                    if daemon.containers.get(name, {}).get("State", {}).get("Running") is not True:
                        return self.reply(409, {"message": "container %s is not running" % name})
                    daemon.execs["e-%d" % len(daemon.execs)] = (name, body["Cmd"])
                    return self.reply(201, {"Id": "e-%d" % (len(daemon.execs) - 1)})
                if path.startswith(prefix + "/exec/") and path.endswith("/start"):
                    return self.reply(200, {})
                assert path == prefix + "/images/create", path
                repository, tag = query["fromImage"][0], query["tag"][0]
                ref = repository + ("@" if tag.startswith("sha256:") else ":") + tag
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                lines = [{"status": "Pulling from " + repository, "id": tag},
                         {"status": "Downloading", "progressDetail": {"current": 1, "total": 2}, "id": "layer"}]
                if not self.authorised(auth):
                    lines.append({"errorDetail": {"message": "unauthorized: authentication required"},
                                  "error": "unauthorized: authentication required"})
                elif daemon.pull_error:
                    lines.append({"errorDetail": {"message": daemon.pull_error}, "error": daemon.pull_error})
                else:
                    digest = daemon.registry[ref]
                    daemon.local[ref] = {"Id": "sha256:id-of-" + digest[7:],
                                         "RepoDigests": [repository + "@" + digest]}
                    lines.append({"status": "Digest: " + digest})
                for line in lines:
                    chunk = json.dumps(line).encode() + b"\r\n"
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.write(b"0\r\n\r\n")

        class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
            daemon_threads = True

        class TLSServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
            daemon_threads = True

            def get_request(self):
                sock, address = super().get_request()
                return tls.wrap_socket(sock, server_side=True), address

        self.server = TLSServer(("127.0.0.1", 0), Handler) if tls else Server(str(path), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def publish(self, ref, digest):
        self.registry[ref] = digest

    def posts(self):
        return [r for r in self.requests if r[0] == "POST"]


@pytest.fixture
def daemon(tmp_path):
    fake = FakeDaemon(tmp_path / "docker.sock")
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


@pytest.fixture
def home(tmp_path):
    """A HOME whose Docker configuration holds the registry login, as docker_login writes it."""
    home = tmp_path / "home"
    (home / ".docker").mkdir(parents=True)
    token = base64.b64encode(("%s:%s" % (LOGIN["username"], LOGIN["password"])).encode()).decode()
    (home / ".docker" / "config.json").write_text(json.dumps({"auths": {REGISTRY: {"auth": token}}}))
    return home


def pull(tmp_path, home, name, check_mode=False, path=None, **options):
    """Run the module once on localhost; return (rc, result)."""
    args = dict(dict(name=name, docker_host="unix://%s" % (tmp_path / "docker.sock")), **options)
    return run_module("llmserve.cluster.image_pull", args, home, check_mode, path)


def run_module(module, args, home, check_mode=False, path=None):
    """Run a module of this collection once on localhost, with HOME and PATH as given; return (rc, result)."""
    cmd = [str(Path(sys.executable).parent / "ansible"), "localhost", "-m", module,
           "-a", json.dumps(args)] + (["--check", "--diff"] if check_mode else ["--diff"])
    env = {**os.environ, "HOME": str(home), "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
           "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1", "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
           "ANSIBLE_LOCALHOST_WARNING": "0", "ANSIBLE_COLLECTIONS_PATH": str(REPO / ".collections")}
    for var in ("DOCKER_HOST", "DOCKER_CONFIG", "DOCKER_TLS", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH",
                "DOCKER_API_VERSION"):
        env.pop(var, None)
    if path:
        env["PATH"] = "%s:%s" % (path, env["PATH"])
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=120, env=env)
    out = json.loads(res.stdout[res.stdout.index("{"):])
    return res.returncode, out["plays"][0]["tasks"][0]["hosts"]["localhost"]


def test_missing_image_is_pulled_with_the_stored_login(tmp_path, home, daemon):
    daemon.publish(IMAGE + ":1.0", "sha256:aaa")
    rc, result = pull(tmp_path, home, IMAGE + ":1.0")
    assert rc == 0, result
    assert result["changed"] is True and result["image_id"] == "sha256:id-of-aaa"
    assert "registry_digest" not in result, "a missing image is pulled without asking the registry first"
    (post,) = daemon.posts()
    assert post[2] == dict(LOGIN, email=None, serveraddress=REGISTRY)
    assert result["diff"] == {"before": {"id": None}, "after": {"id": "sha256:id-of-aaa", "registry_digest": None}}


def test_converged_image_is_left_alone_and_check_mode_says_so(tmp_path, home, daemon):
    daemon.publish(IMAGE + ":1.0", "sha256:aaa")
    daemon.local[IMAGE + ":1.0"] = {"Id": "sha256:old", "RepoDigests": [IMAGE + "@sha256:aaa"]}
    for check_mode in (False, True):
        rc, result = pull(tmp_path, home, IMAGE + ":1.0", check_mode=check_mode)
        assert rc == 0, result
        assert result["changed"] is False
        assert result["image_id"] == "sha256:old" and result["registry_digest"] == "sha256:aaa"
    assert daemon.posts() == []


def test_new_digest_at_the_registry_check_mode_pulls_nothing_then_the_run_pulls(tmp_path, home, daemon):
    daemon.local[IMAGE + ":1.0"] = {"Id": "sha256:old", "RepoDigests": [IMAGE + "@sha256:aaa"]}
    daemon.publish(IMAGE + ":1.0", "sha256:bbb")
    rc, would = pull(tmp_path, home, IMAGE + ":1.0", check_mode=True)
    assert rc == 0 and would["changed"] is True and would["image_id"] == "sha256:old"
    assert daemon.posts() == [], "check mode must not pull"
    rc, pulled = pull(tmp_path, home, IMAGE + ":1.0")
    assert rc == 0 and pulled["changed"] is True and pulled["image_id"] == "sha256:id-of-bbb"
    assert pulled["registry_digest"] == would["registry_digest"] == "sha256:bbb"
    assert pulled["diff"]["before"] == {"id": "sha256:old"}


def test_no_tag_means_latest_and_a_digest_reference_is_kept(tmp_path, home, daemon):
    daemon.publish(IMAGE + ":latest", "sha256:ccc")
    rc, result = pull(tmp_path, home, IMAGE)
    assert rc == 0 and result["image_id"] == "sha256:id-of-ccc"
    daemon.publish(IMAGE + "@sha256:ddd", "sha256:ddd")
    rc, result = pull(tmp_path, home, IMAGE + "@sha256:ddd")
    assert rc == 0 and result["image_id"] == "sha256:id-of-ddd"
    rc, again = pull(tmp_path, home, IMAGE + "@sha256:ddd")
    assert rc == 0 and again["changed"] is False
    assert ("GET", "/v1.43/distribution/%s@sha256:ddd/json" % IMAGE, dict(LOGIN, email=None, serveraddress=REGISTRY)) \
        in daemon.requests


def test_failure_in_the_pull_stream_fails_the_task(tmp_path, home, daemon):
    daemon.publish(IMAGE + ":1.0", "sha256:aaa")
    daemon.pull_error = "write /var/lib/docker/tmp: no space left on device"
    rc, result = pull(tmp_path, home, IMAGE + ":1.0")
    assert rc != 0 and result["failed"] is True
    assert result["msg"].startswith("no room for %s:1.0 in Docker's data root %s (" % (IMAGE, tmp_path))
    assert result["msg"].endswith(" GB free now): the pull stopped: " + daemon.pull_error)
    daemon.pull_error = "received unexpected HTTP status: 502 Bad Gateway"
    rc, result = pull(tmp_path, home, IMAGE + ":1.0")
    assert rc != 0 and result["msg"] == "pulling %s:1.0 failed: %s" % (IMAGE, daemon.pull_error)


def test_without_a_login_the_registry_refusal_is_reported(tmp_path, daemon):
    daemon.publish(IMAGE + ":1.0", "sha256:bbb")
    daemon.local[IMAGE + ":1.0"] = {"Id": "sha256:old", "RepoDigests": [IMAGE + "@sha256:aaa"]}
    rc, result = pull(tmp_path, tmp_path / "empty-home", IMAGE + ":1.0", check_mode=True)
    assert rc != 0
    assert "401" in result["msg"] and "unauthorized: authentication required" in result["msg"]
    assert all(auth is None for dummy, dummy2, auth in daemon.requests)


def test_login_from_a_credential_helper(tmp_path, home, daemon):
    (home / ".docker" / "config.json").write_text(json.dumps({"auths": {REGISTRY: {}}, "credsStore": "fake"}))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    helper = bin_dir / "docker-credential-fake"
    helper.write_text("#!/bin/sh\nserver=$(cat)\n[ \"$1\" = get ] && [ \"$server\" = %s ] || "
                      "{ echo 'credentials not found in native keychain'; exit 1; }\n"
                      "echo '{\"ServerURL\": \"%s\", \"Username\": \"%s\", \"Secret\": \"%s\"}'\n"
                      % (REGISTRY, REGISTRY, LOGIN["username"], LOGIN["password"]))
    helper.chmod(0o755)
    daemon.publish(IMAGE + ":1.0", "sha256:aaa")
    rc, result = pull(tmp_path, home, IMAGE + ":1.0", path=bin_dir)
    assert rc == 0, result
    (post,) = daemon.posts()
    assert post[2] == {"ServerAddress": REGISTRY, "Username": LOGIN["username"], "Password": LOGIN["password"]}


def test_tls_to_a_tcp_daemon_verifies_its_certificate(tmp_path, home):
    """validate_certs with ca_path and tls_hostname; a wrong name is refused."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=docker.test", "-addext", "subjectAltName=DNS:docker.test", "-keyout",
                    str(tmp_path / "key.pem"), "-out", str(tmp_path / "ca.pem")], check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "ca.pem", tmp_path / "key.pem")
    fake = FakeDaemon(None, tls=context)
    try:
        fake.publish(IMAGE + ":1.0", "sha256:aaa")
        host = "tcp://127.0.0.1:%d" % fake.server.server_address[1]
        rc, result = pull(tmp_path, home, IMAGE + ":1.0", docker_host=host, validate_certs=True,
                          ca_path=str(tmp_path / "ca.pem"), tls_hostname="docker.test")
        assert rc == 0 and result["image_id"] == "sha256:id-of-aaa", result
        rc, result = pull(tmp_path, home, IMAGE + ":1.0", docker_host=host, validate_certs=True,
                          ca_path=str(tmp_path / "ca.pem"))
        assert rc != 0 and "certificate" in result["msg"].lower(), result
        rc, result = pull(tmp_path, home, IMAGE + ":1.0", docker_host=host, tls=True)
        assert rc == 0 and result["changed"] is False, result
    finally:
        fake.server.shutdown()
        fake.server.server_close()


def test_daemon_too_old_or_absent_is_named(tmp_path, home, daemon):
    daemon.api_version = "1.24"
    rc, result = pull(tmp_path, home, IMAGE + ":1.0")
    assert rc != 0 and "Docker API version is 1.24; this module needs 1.30 or newer" in result["msg"]
    rc, result = pull(tmp_path, home, IMAGE + ":1.0", docker_host="unix://%s" % (tmp_path / "nowhere.sock"))
    assert rc != 0 and result["msg"].startswith("cannot talk to the Docker daemon at unix://")
    rc, result = pull(tmp_path, home, IMAGE + ":1.0", docker_host="ssh://root@host")
    assert rc != 0 and "only unix:// and tcp:// are supported" in result["msg"]


def test_module_imports_nothing_from_another_collection():
    """Only this collection's own module_utils and fragments: no other collection's internals to break under us."""
    import re
    for path in ("plugins/modules/image_pull.py", "plugins/modules/deploy_state.py", "plugins/module_utils/docker_api.py",
                 "plugins/module_utils/registry.py"):
        source = (REPO / path).read_text()
        assert set(re.findall(r"ansible_collections\.(\w+\.\w+)", source)) <= {"llmserve.cluster"}, path
        assert re.findall(r"^  - (\S+)$", source.split("extends_documentation_fragment:")[-1], re.M)[:1] in (
            [], ["llmserve.cluster.docker_daemon"]), path

# ---------------------------------------------------------------- room for the image (the registry's manifest)

class FakeRegistry:
    """A registry's HTTP API v2 over plain HTTP: an index with one amd64 manifest, its config blob, and a login
    asked for by a Basic challenge (registry:2 with htpasswd) or a Bearer one with a token endpoint (Docker Hub)."""

    def __init__(self, layers, scheme="Basic"):
        # layers: [(compressed size, diff id)]
        self.requests = []
        config = {"rootfs": {"type": "layers", "diff_ids": [diff for dummy, diff in layers]}}
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {"digest": "sha256:config", "size": 2},
                    "layers": [{"digest": "sha256:blob%d" % i, "size": size} for i, (size, dummy) in enumerate(layers)]}
        index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
            {"digest": "sha256:arm", "platform": {"os": "linux", "architecture": "arm64"}},
            {"digest": "sha256:amd", "platform": {"os": "linux", "architecture": "amd64"}}]}
        pages = {"/v2/llmserve/probe/manifests/1.0": index, "/v2/llmserve/probe/manifests/sha256:amd": manifest,
                 "/v2/llmserve/probe/blobs/sha256:config": config}
        basic = "Basic " + base64.b64encode(("%s:%s" % (LOGIN["username"], LOGIN["password"])).encode()).decode()
        registry = self

        class Handler(JSONHandler):

            def do_GET(self):
                url = urlsplit(self.path)
                registry.requests.append((url.path, self.headers.get("Authorization")))
                if url.path == "/token":
                    if self.headers.get("Authorization") != basic:
                        return self.reply(401, {"errors": [{"code": "UNAUTHORIZED"}]})
                    assert parse_qs(url.query) == {"service": ["fake"], "scope": ["repository:llmserve/probe:pull"]}
                    return self.reply(200, {"token": "t0ken"})
                wanted = basic if scheme == "Basic" else "Bearer t0ken"
                if self.headers.get("Authorization") != wanted:
                    challenge = 'Basic realm="fake"' if scheme == "Basic" else (
                        'Bearer realm="http://%s:%d/token",service="fake",scope="repository:llmserve/probe:pull"'
                        % self.server.server_address)
                    return self.reply(401, {"errors": [{"code": "UNAUTHORIZED"}]}, [("WWW-Authenticate", challenge)])
                if url.path not in pages:
                    return self.reply(404, {"errors": [{"code": "MANIFEST_UNKNOWN"}]})
                return self.reply(200, pages[url.path])

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.address = "127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def registry_for(tmp_path, home, daemon):
    """registry_for(layers, scheme) -> the image's name in a fake registry the daemon knows as insecure (HTTP),
    with the login stored for it."""
    started = []

    def start(layers, scheme="Basic"):
        registry = FakeRegistry(layers, scheme)
        started.append(registry)
        daemon.index[registry.address] = {"Secure": False}
        token = base64.b64encode(("%s:%s" % (LOGIN["username"], LOGIN["password"])).encode()).decode()
        (home / ".docker" / "config.json").write_text(json.dumps({"auths": {registry.address: {"auth": token}}}))
        name = registry.address + "/llmserve/probe:1.0"
        daemon.publish(name, "sha256:aaa")
        return registry, name
    yield start
    for registry in started:
        registry.server.shutdown()
        registry.server.server_close()


TERABYTE = 10 ** 12


@pytest.mark.parametrize("scheme", ["Basic", "Bearer"])
def test_no_room_for_the_new_layers_is_named_and_nothing_is_pulled(tmp_path, home, daemon, registry_for, scheme):
    registry, name = registry_for([(5 * TERABYTE, "sha256:huge"), (1000, "sha256:small")], scheme)
    for check_mode in (True, False):
        rc, result = pull(tmp_path, home, name, check_mode=check_mode)
        assert rc != 0, result
        assert result["msg"].startswith(
            "no room for %s in Docker's data root %s: its 2 new layers weigh 5000.00 GB compressed, about "
            "17500.00 GB unpacked, and 0.00 GB is to stay free (keep_free), but only " % (name, tmp_path))
        assert result["msg"].endswith(" GB is free. Make room (docker system df shows what holds it, docker image "
                                      "prune -a removes unused images) or lower keep_free; nothing was pulled")
    assert daemon.posts() == []
    assert ("/v2/llmserve/probe/blobs/sha256:config", "Bearer t0ken" if scheme == "Bearer" else
            "Basic " + base64.b64encode(b"deploy:s3cret-pull").decode()) in registry.requests


def test_layers_the_host_holds_need_no_room_and_keep_free_is_kept(tmp_path, home, daemon, registry_for):
    registry, name = registry_for([(5 * TERABYTE, "sha256:huge"), (1000, "sha256:small")])
    # an older image of the host holds the huge layer: only the small one is new
    daemon.local["other:old"] = {"Id": "sha256:other", "RepoDigests": [], "RootFS": {"Layers": ["sha256:huge"]}}
    rc, result = pull(tmp_path, home, name)
    assert rc == 0 and result["changed"] is True, result
    # the same small pull, with more to stay free than the disk has
    del daemon.local[name]
    rc, result = pull(tmp_path, home, name, keep_free=10 ** 15)
    assert rc != 0 and "its 1 new layer weighs 0.00 GB compressed" in result["msg"], result
    assert "and 1000000.00 GB is to stay free (keep_free)" in result["msg"]
    rc, result = pull(tmp_path, home, name, keep_free="1M")
    assert rc == 0 and result["changed"] is True, result


def test_a_registry_that_cannot_be_asked_warns_and_the_pull_goes_on(tmp_path, home, daemon):
    # registry.test does not resolve from here; the daemon may still reach it (a mirror, its own DNS)
    daemon.publish(IMAGE + ":1.0", "sha256:aaa")
    rc, result = pull(tmp_path, home, IMAGE + ":1.0")
    assert rc == 0 and result["changed"] is True, result
    (warning,) = result["warnings"]
    assert warning.startswith("could not learn the size of %s:1.0 from its registry (" % IMAGE)
    assert warning.endswith("); pulling it without a space check")
