# Copyright: llmserve.cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """How a module reaches the Docker daemon (image_pull, deploy_state): community.docker's option names."""

    DOCUMENTATION = r"""
options:
  docker_host:
    description:
      - Where the Docker daemon listens, V(unix:///path/to/socket) or V(tcp://host:port).
        With O(tls) or O(validate_certs), V(tcp) is spoken as HTTPS.
      - SSH (V(ssh://)) is not supported by the module.
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
      - Accepted as community.docker's modules accept it; the module prints nothing more with it.
    type: bool
    default: false
"""
