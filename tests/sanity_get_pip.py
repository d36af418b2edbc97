"""Stand-in for pypa's get-pip.py, which ansible-test downloads from a host we cannot reach.

ansible-test runs it as `python get_pip_X_Y.py [pip install options] pip==X.Y`; like get-pip.py,
it runs pip install with those arguments, using the pip wheel that ensurepip bundles with
Python instead of a pip embedded in the script. The requested pip itself comes from PyPI.
"""
import glob
import os
import sys

import ensurepip

wheel = glob.glob(os.path.join(os.path.dirname(ensurepip.__file__), "_bundled", "pip-*.whl"))[0]
sys.path.insert(0, wheel)

from pip._internal.cli.main import main  # noqa: E402  pylint: disable=wrong-import-position

# get-pip's own flags: it would otherwise add setuptools and wheel; we install only what is named
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.exit(main(["install", "--upgrade", "--force-reinstall", *args]))
