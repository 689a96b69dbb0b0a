"""The client package must import without the server's heavy dependencies."""

from __future__ import annotations

import subprocess
import sys

CHECK = (
    "import cliplens_client, cliplens_client.cli, sys; "
    "assert 'torch' not in sys.modules and 'ray' not in sys.modules, "
    "sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'ray'))"
)


def test_client_imports_without_torch_or_ray() -> None:
    result = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
