"""The `qinglian` command carries the classifier's commands as the architecture's contract says."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO, shared_models_dir


def test_qinglian_classify_and_model_list(tmp_path: Path) -> None:
    shutil.copytree(shared_models_dir(), tmp_path / "models")
    env = {"PATH": "/usr/bin:/bin", "QINGLIAN_DATA_DIR": str(tmp_path), "COLUMNS": "200"}
    lines = '{"id": "a", "text": "村支书把低保名额给了自己亲戚，村务三年不公开"}\n医院骨科医生收红包才肯排手术\n'
    result = subprocess.run([sys.executable, "-m", "bot.cli", "classify", "-"], input=lines, cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    answers = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(a["id"], a["label"]) for a in answers] == [("a", "village_affairs"), (2, "medical")]
    assert all(len(a["top"]) == 3 for a in answers)
    listed = subprocess.run([sys.executable, "-m", "bot.cli", "model", "list"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0 and "default model" in listed.stdout
