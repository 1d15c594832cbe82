import os
import sys

import pytest

ROOT_REASON = "needs root: namespaces, mounts and cgroups are tested against the real kernel"


def pytest_collection_modifyitems(config, items):
    if os.geteuid() == 0:
        return
    for item in items:
        if "integration" in str(item.fspath) or "vm" in str(item.fspath):
            item.add_marker(pytest.mark.skip(reason=ROOT_REASON))
    print(f"\nnspod tests: not root, integration tests skipped ({ROOT_REASON})", file=sys.stderr)
