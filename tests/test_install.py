"""The package as shipped: a wheel built from the checkout, installed non-editable into fresh virtualenvs.

- with everything (the dev venv's packages underneath, ``--no-deps``): every console-script command a
  newcomer tries first, and ``gym.make`` of every id, imported from the installed copy, not the checkout;
- as the base install (``pip install perception-r1``, no extras: no torch): envs, metrics and the
  reference agents' evaluation work, and the commands that need torch say how to get it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.documented import ROOT, VENV_BIN, user_environment

pytestmark = pytest.mark.slow

LOCK = ROOT / "requirements" / "lock.txt"
ENV_CHECK = """
import sys, gymnasium as gym, perception_env
assert perception_env.__file__.startswith(sys.prefix), perception_env.__file__  # the installed copy
for env_id in sorted(perception_env.ENV_IDS):
    env = gym.make(env_id)
    env.reset(seed=0)
    _, reward, *_ = env.step(env.unwrapped.oracle_answer())
    print(env_id, reward)
print("torch imported:", "torch" in sys.modules)
"""


def run(args: list, cwd: Path, timeout: int = 300, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=user_environment(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check:
        assert done.returncode == 0, (
            f"{args} exited {done.returncode}:\n{(done.stdout + done.stderr)[-4000:]}"
        )
    return done


def shipped_files(dest: Path) -> Path:
    """The files a clean clone has (tracked and new, not ignored): a stale build/ here cannot leak in."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    for name in listed:
        if (ROOT / name).is_file() and not name.startswith("tests/fixtures/"):
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    return dest


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    source = shipped_files(tmp_path_factory.mktemp("source"))
    out = tmp_path_factory.mktemp("dist")
    run(
        [
            VENV_BIN / "python",
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            out,
            source,
        ],
        cwd=source,
    )
    (found,) = out.glob("perception_r1-*.whl")
    return found


def new_venv(path: Path, with_pip: bool) -> Path:
    run([sys.executable, "-m", "venv", *([] if with_pip else ["--without-pip"]), path], cwd=path.parent)
    return path


@pytest.fixture(scope="module")
def full_install(wheel, tmp_path_factory) -> Path:
    """A fresh venv that sees the dev venv's packages (a .pth line: the dev venv's own editable hook is
    not run) and has the wheel installed on top, without dependencies."""
    venv = new_venv(tmp_path_factory.mktemp("full") / "venv", with_pip=False)
    dev_site = sysconfig.get_paths()["purelib"]
    site = Path(sysconfig.get_paths(vars={"base": str(venv), "platbase": str(venv)})["purelib"])
    (site / "dev_packages.pth").write_text(dev_site + "\n")
    run(
        [
            VENV_BIN / "python",
            "-m",
            "pip",
            "--python",
            venv / "bin" / "python",
            "install",
            "--quiet",
            "--no-deps",
            wheel,
        ],
        cwd=venv.parent,
    )
    return venv


@pytest.fixture(scope="module")
def base_install(wheel, tmp_path_factory) -> Path:
    """``pip install perception-r1`` (no extras) into a fresh venv, at the locked versions."""
    venv = new_venv(tmp_path_factory.mktemp("base") / "venv", with_pip=True)
    run(
        [venv / "bin" / "python", "-m", "pip", "install", "--quiet", "-c", LOCK, wheel],
        cwd=venv.parent,
        timeout=900,
    )
    return venv


def test_the_wheel_holds_every_package_folder(wheel):
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    shipped = {str(Path(n).parent) for n in names if n.endswith("__init__.py")}
    for root in ("perception_env", "agents"):
        for folder in (ROOT / root).rglob("*.py"):
            package = str(folder.parent.relative_to(ROOT))
            assert package in shipped, f"{package} has Python files but is not in the wheel (no __init__.py?)"


def test_installed_console_script(full_install, tmp_path):
    cli = full_install / "bin" / "perception-r1"
    assert "demo" in run([cli, "--help"], tmp_path).stdout
    assert "--learning-rate" in run([cli, "train", "--help"], tmp_path).stdout
    out = run(
        [
            cli,
            "eval",
            "--env",
            "PerceptionR1/Detection-v0",
            "--agent",
            "oracle",
            "--limit",
            "20",
            "--output",
            tmp_path / "ev",
            "--quiet",
        ],
        tmp_path,
    ).stdout
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["metrics"]["AP"] == 1.0, out
    out = run([cli, "tour", "--out", tmp_path / "tour", "--episodes", "1"], tmp_path).stdout
    assert len(list((tmp_path / "tour").glob("*.png"))) == 8, out
    lines = run([full_install / "bin" / "python", "-c", ENV_CHECK], tmp_path).stdout.splitlines()
    assert len(lines) == 5 and all(float(line.split()[1]) > 0 for line in lines[:4]), lines


def test_base_install_without_torch(base_install, tmp_path):
    python, cli = base_install / "bin" / "python", base_install / "bin" / "perception-r1"
    assert run([python, "-c", "import torch"], tmp_path, check=False).returncode != 0  # really no torch
    lines = run([python, "-c", ENV_CHECK], tmp_path).stdout.splitlines()
    assert lines[-1] == "torch imported: False" and all(float(line.split()[1]) > 0 for line in lines[:4])
    expected_ap = {"oracle": 1.0, "empty": 0.0, "random": 0.0}
    for agent, ap in expected_ap.items():
        run(
            [
                cli,
                "eval",
                "--env",
                "PerceptionR1/Detection-v0",
                "--agent",
                agent,
                "--limit",
                "10",
                "--output",
                tmp_path / agent,
                "--quiet",
            ],
            tmp_path,
        )
        assert json.loads((tmp_path / agent / "metrics.json").read_text())["metrics"]["AP"] == ap, agent
    run([cli, "tour", "--out", tmp_path / "tour", "--episodes", "1"], tmp_path)
    refused = run([cli, "train", "--model", "x"], tmp_path, check=False)
    assert refused.returncode != 0 and "needs torch" in refused.stderr and "Traceback" not in refused.stderr
