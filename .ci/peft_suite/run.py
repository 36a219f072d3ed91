#!/usr/bin/env python
"""Run PEFT's own custom-model tests on mLoRA: `python .ci/peft_suite/run.py [--workdir DIR] [pytest args...]`.

It takes the source distribution of the *installed* peft version from the package registry (`pip download`), unpacks
its tests into a work folder, puts `test_mlora_custom_models.py` beside them and runs PEFT's `TestPeftCustomModel`
on the MLoraConfig cases that file defines. Only tests that take a config case are selected (`-k MLoraConfig`);
the class's other tests exercise other PEFT methods. The exit status is pytest's.

Needs the registry (CI runs it in `.ci/run`); the tests themselves run offline.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from importlib.metadata import version
from pathlib import Path

HERE = Path(__file__).resolve().parent
WRAPPER = HERE / "test_mlora_custom_models.py"


def peft_source(version_string: str, workdir: Path) -> Path:
    """The unpacked source distribution of peft `version_string` in `workdir` (downloaded once)."""
    source = workdir / f"peft-{version_string}"
    if (source / "tests" / "test_custom_models.py").is_file():
        return source
    workdir.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps"]
    subprocess.run([*pip, "--no-binary", ":all:", f"peft=={version_string}", "--dest", str(workdir)], check=True)
    archive = workdir / f"peft-{version_string}.tar.gz"
    if not archive.is_file():
        raise SystemExit(f"pip did not save {archive.name} in {workdir}; found {sorted(os.listdir(workdir))}.")
    with tarfile.open(archive) as tar:
        tar.extractall(workdir, filter="data")
    if not (source / "tests" / "test_custom_models.py").is_file():
        raise SystemExit(f"The source distribution of peft {version_string} has no tests/test_custom_models.py.")
    return source


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "hf_wlora-peft-suite")
    args, pytest_args = parser.parse_known_args()
    peft_version = version("peft")
    source = peft_source(peft_version, args.workdir)
    tests = source / "tests"
    # PEFT's tests import each other relatively (`from .testing_common import ...`), as a package.
    (tests / "__init__.py").touch()
    shutil.copy(WRAPPER, tests / WRAPPER.name)
    print(f"PEFT {peft_version}'s TestPeftCustomModel on mLoRA, from {source}", flush=True)
    command = [sys.executable, "-m", "pytest", f"tests/{WRAPPER.name}", "-k", "MLoraConfig", "-q", "-rfEs"]
    # PEFT's own addopts ask for pytest-cov; the cache would write into the work folder
    command += ["-o", "addopts=", "-p", "no:cacheprovider", *pytest_args]
    environment = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(command, cwd=source, env=environment).returncode


if __name__ == "__main__":
    sys.exit(main())
