"""Make the collection importable as ``ansible_collections.llmserve.cluster`` for the unit tests.

`make collection` links this checkout as .collections/ansible_collections/llmserve/cluster; the
planner's tests import it from there, exactly as Ansible does.
"""
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
COLLECTIONS = REPO / ".collections"
LINK = COLLECTIONS / "ansible_collections" / "llmserve" / "cluster"

if LINK.is_dir() and LINK.resolve() == REPO.resolve():
    if str(COLLECTIONS) not in sys.path:
        sys.path.insert(0, str(COLLECTIONS))
else:
    raise pytest.UsageError("%s is missing (or does not point at this checkout); run `make collection` to link "
                            "the collection before the unit tests" % LINK)
