"""The test harness itself: a machine without the dev services fails the suite, it never skips.

Runs pytest in a child process on two tiny tests that ask for a real Anvil and a real IPFS node,
with the devnet tools pointed at an empty directory (`FEDLEDGER_NODE_MODULES`, what `make setup`
fills), and reads the outcome.
"""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = '''
def test_needs_a_chain(anvil):
    assert anvil.rpc_url


def test_needs_an_ipfs_node(ipfs_node):
    assert ipfs_node.api_url
'''


def test_missing_anvil_and_js_ipfs_fail_with_the_fix_instead_of_skipping(tmp_path):
    probe_dir = tmp_path / "probe"
    probe_dir.mkdir()
    (probe_dir / "conftest.py").write_text('pytest_plugins = ["tests.plugins.chain", "tests.plugins.ipfs"]\n')
    (probe_dir / "test_probe.py").write_text(PROBE)
    empty = tmp_path / "node_modules"
    empty.mkdir()
    env = dict(os.environ, FEDLEDGER_NODE_MODULES=str(empty), PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", "--rootdir", str(probe_dir),
                          str(probe_dir)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    text = out.stdout + out.stderr
    assert out.returncode == 1, text  # pytest's "some tests failed or errored"
    assert "2 errors" in text and "skipped" not in text, text
    assert "Anvil not installed: run `make setup`" in text, text
    assert "js-ipfs not installed: run `make setup`" in text, text
