"""Safety rules checked on the source and on the guards: no pickle loading, no network during a run."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from bench.safety import _network_audit_hook, is_loopback

ROOT = Path(__file__).resolve().parent.parent
SOURCE_DIRS = ("bench", "impl_torch", "impl_tf")


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node, ast.unparse(node.func)


def _keyword(call: ast.Call, name: str):
    for keyword in call.keywords:
        if keyword.arg == name:
            return keyword.value
    return None


def pickle_loads(path: Path, root: Path = ROOT) -> list[str]:
    """List the calls in `path` that could unpickle a file."""
    problems = []
    for call, name in _calls(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        where = f"{path.relative_to(root)}:{call.lineno}: {name}"
        if name in ("pickle.load", "pickle.loads", "joblib.load", "dill.load", "cloudpickle.load", "pd.read_pickle"):
            problems.append(where)
        elif name == "torch.load":
            weights_only = _keyword(call, "weights_only")
            if not (isinstance(weights_only, ast.Constant) and weights_only.value is True):
                problems.append(f"{where} without weights_only=True")
        elif name in ("np.load", "numpy.load"):
            allow = _keyword(call, "allow_pickle")
            if not (isinstance(allow, ast.Constant) and allow.value is False):
                problems.append(f"{where} without allow_pickle=False")
    return problems


def test_source_never_unpickles():
    files = [path for directory in SOURCE_DIRS for path in sorted((ROOT / directory).rglob("*.py"))]
    assert len(files) > 20
    problems = [problem for path in files for problem in pickle_loads(path)]
    assert problems == []


def test_pickle_check_catches_unsafe_calls(tmp_path):
    sample = tmp_path / "unsafe.py"
    sample.write_text(
        "import numpy as np, torch, pickle\n"
        "np.load('a.npz')\n"
        "np.load('b.npz', allow_pickle=True)\n"
        "torch.load('c.pt')\n"
        "torch.load('d.pt', weights_only=True)\n"
        "pickle.load(open('e', 'rb'))\n"
    )
    problems = pickle_loads(sample, tmp_path)
    assert [problem.split(": ")[0] for problem in problems] == ["unsafe.py:2", "unsafe.py:3", "unsafe.py:4", "unsafe.py:6"]


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "LOCALHOST.", "127.8.9.10", None, b"localhost"])
def test_loopback_hosts_allowed(host):
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["192.0.2.1", "example.org", "2001:db8::1", "", 42])
def test_other_hosts_not_loopback(host):
    assert not is_loopback(host)


@pytest.mark.parametrize(
    ("event", "args"),
    [
        ("socket.connect", (None, ("192.0.2.1", 443))),
        ("socket.connect", (None, ("2001:db8::1", 443, 0, 0))),
        ("socket.sendto", (None, ("192.0.2.1", 53))),
        ("socket.getaddrinfo", ("example.org", 443, 0, 0, 0)),
        ("socket.gethostbyname", ("example.org",)),
    ],
)
def test_network_hook_blocks_other_hosts(event, args):
    with pytest.raises(PermissionError, match="bench data --download"):
        _network_audit_hook(event, args)


@pytest.mark.parametrize(
    ("event", "args"),
    [
        ("socket.connect", (None, ("127.0.0.1", 8080))),
        ("socket.connect", (None, "/tmp/socket")),
        ("socket.getaddrinfo", ("localhost", 80, 0, 0, 0)),
        ("socket.bind", (None, ("0.0.0.0", 0))),
        ("open", ("file", "r", 0)),
    ],
)
def test_network_hook_allows_local_use(event, args):
    _network_audit_hook(event, args)


def test_cli_installs_network_guard():
    # sys.audit raises the event a connection would raise, without opening any socket.
    code = (
        "import sys\n"
        "from bench import cli\n"
        "cli.main(['list'])\n"
        "try:\n"
        "    sys.audit('socket.connect', None, ('192.0.2.1', 80))\n"
        "except PermissionError as error:\n"
        "    print('blocked:', error)\n"
    )
    completed = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert "blocked: network access to '192.0.2.1'" in completed.stdout
