#!/usr/bin/env bash
# Build the collection tarball, install it as a user would, and run ansible-test sanity on what
# was installed (no ignore file).
set -euo pipefail
cd "$(dirname "$0")/.."
# outside this checkout: inside it, ansible-test would list files with git, which ignores build output
root=${TMPDIR:-/tmp}/llmserve-sanity
rm -rf "$root" && mkdir -p "$root"
ansible-galaxy collection build --force --output-path "$root" . >/dev/null 2>&1
tarball=$(ls "$root"/llmserve-cluster-*.tar.gz)
ansible-galaxy collection install --force --no-deps -p "$root/collections" "$tarball" >/dev/null 2>&1
# ansible-test bootstraps pip in its venvs with get-pip.py from a host that is not reachable here
pip_version=$(python - <<'PY'
import re, ansible_test, pathlib
src = pathlib.Path(ansible_test.__file__).parent.joinpath("_internal/python_requirements.py").read_text()
print(re.search(r"pip='([0-9.]+)'", src).group(1))
PY
)
cache=~/.ansible/test/cache/get_pip_${pip_version//./_}.py
mkdir -p "$(dirname "$cache")"
cp tests/sanity_get_pip.py "$cache"
cd "$root/collections/ansible_collections/llmserve/cluster"
ansible-test sanity --python "$(python -c 'import sys; print("%d.%d" % sys.version_info[:2])')" \
  --requirements --color no "$@" 2>&1 \
  | { grep -v -E 'is ignored: it is neither|^(Collecting|  Downloading|Installing collected|Successfully installed|Looking in|Using cached pip)|━' || true; }
