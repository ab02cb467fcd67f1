"""A non-editable install ships the Hydra configs inside the package."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_ships_configs_and_uses_them(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
         "-w", str(tmp_path / "wheel"), "-q"],
        check=True, cwd=tmp_path,
    )  # fmt: skip
    wheel = next((tmp_path / "wheel").glob("svg_lightning-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {p.relative_to(ROOT / "conf").as_posix() for p in (ROOT / "conf").rglob("*.yaml")}
    assert {f"svg_lightning/conf/{n}" for n in expected} <= names
    modules = {p.relative_to(ROOT / "src").as_posix() for p in (ROOT / "src").rglob("*.py")}
    assert modules <= names, sorted(modules - names)
    target = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(target)
    code = (
        "from hydra import compose, initialize_config_dir\n"
        "from svg_lightning.config import config_dir\n"
        "print(config_dir())\n"
        "with initialize_config_dir(config_dir=config_dir(), version_base='1.3'):\n"
        "    print(compose('train', overrides=['+experiment=bair_lp']).model.backbone)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env={"PYTHONPATH": str(target)}, cwd=tmp_path,
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert out == [str(target / "svg_lightning" / "conf"), "vgg64"]
