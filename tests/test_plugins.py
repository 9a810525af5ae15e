"""The entry-point path end to end: install the example plugin, discover it, build it, run it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from support import tiny_dataset

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "plugins" / "cdr-hashed-bow"


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example plugin pip-installed (no deps, offline) into a throwaway site dir."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(target),
            str(PLUGIN),
        ],
        check=True,
        capture_output=True,
    )
    return target


def _run(site: Path, code: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)


def test_cli_lists_the_installed_plugin(plugin_site: Path) -> None:
    result = _run(
        plugin_site,
        "import sys; sys.argv = ['cdr', 'components']; "
        "from rich.console import Console; import cdr.cli.common as c; "
        "c.console = Console(width=200); "
        "import cdr.cli.components as m; m.console = c.console; "
        "from cdr.cli.app import main; main()",
    )
    assert result.returncode == 0, result.stderr
    line = next(x for x in result.stdout.splitlines() if "hashed-bow" in x)
    assert "plugin: cdr-hashed-bow" in line


def test_plugin_encoder_builds_and_encodes(plugin_site: Path) -> None:
    result = _run(
        plugin_site,
        "from cdr.registry import Registry; from cdr.components import BuildContext; "
        "from cdr.interfaces import Encoder; import sys; sys.path.insert(0, 'tests'); "
        "from support import tiny_dataset; import torch; "
        "c = Registry().get('encoders', 'hashed-bow'); "
        "enc = c.build(c.config_cls(dim=16), BuildContext()); "
        "assert isinstance(enc, Encoder); ds = tiny_dataset(); "
        "x = enc.encode(ds.target, 'item'); u = enc.encode(ds.target, 'user'); "
        "print(tuple(x.shape), tuple(u.shape), round(float(x.norm(dim=1).mean()), 4))",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["(3,", "16)", "(4,", "16)", "1.0"]


def test_duplicate_names_across_distributions_are_an_error(tmp_path: Path) -> None:
    from importlib.metadata import EntryPoint

    from cdr.errors import PluginError
    from cdr.registry import Registry

    class _Dist:
        def __init__(self, name: str) -> None:
            self.name = name

    first = EntryPoint("dot", "cdr.scorers.dot:component", "cdr.scorers")
    second = EntryPoint("dot", "cdr.scorers.dot:component", "cdr.scorers")
    object.__setattr__(first, "dist", _Dist("cdr"))
    object.__setattr__(second, "dist", _Dist("evil-plugin"))
    registry = Registry([first, second])
    with pytest.raises(PluginError, match="registered by both cdr and evil-plugin"):
        registry.get("scorers", "dot")


def test_tiny_dataset_fixture_is_consistent() -> None:
    ds = tiny_dataset()
    assert torch.equal(ds.overlapping_users(), torch.tensor([0, 1]))
    assert torch.equal(ds.side_users(), torch.tensor([3]))
    assert torch.equal(ds.source_only_users(), torch.tensor([2]))
