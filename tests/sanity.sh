#!/usr/bin/env bash
# Build the collection tarball, install it as a user would, and run ansible-test sanity on what
# was installed (no ignore file).
set -euo pipefail
cd "$(dirname "$0")/.."
# outside this checkout: inside it, ansible-test would list files with git, which ignores build output
root=$(mktemp -d "${TMPDIR:-/tmp}/llmserve-sanity.XXXXXX")
trap 'rm -rf "$root"' EXIT
quietly() { local out; out=$("$@" 2>&1) || { echo "$out" >&2; return 1; }; }
quietly ansible-galaxy collection build --force --output-path "$root" .
tarball=$(ls "$root"/llmserve-cluster-*.tar.gz)
quietly ansible-galaxy collection install --force --no-deps -p "$root/collections" "$tarball"
# the collections we depend on, as the pinned `ansible` package ships them (Galaxy is not reachable)
site=$(python -c 'import ansible_collections, os; print(os.path.dirname(ansible_collections.__file__))' 2>/dev/null \
  || python -c 'import ansible_collections; print(list(ansible_collections.__path__)[0])')
for dep in community/docker ansible/utils; do
  mkdir -p "$root/collections/ansible_collections/$(dirname $dep)"
  cp -r "$site/$dep" "$root/collections/ansible_collections/$dep"
done
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
