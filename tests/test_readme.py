"""The README's set-up commands: what CI runs, and a CPU build of PyTorch on any Linux machine."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def setup_commands() -> list[str]:
    section = (REPO / "README.md").read_text().split("## Set-up", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section)


def test_ci_runs_exactly_the_readmes_test_command():
    main, tests = setup_commands()
    ci = [line for line in (REPO / ".ci" / "run").read_text().splitlines() if line and not line.startswith(("#", "set ", "cd "))]
    assert ci == [tests]


def test_both_commands_take_torch_from_pytorchs_cpu_index_before_anything_else():
    for cmd in setup_commands():
        first_pip = cmd.split(".venv/bin/pip install", 2)[1]
        assert "torch==" in first_pip and "--index-url https://download.pytorch.org/whl/cpu" in first_pip
        assert "-e ." not in first_pip   # the project's other dependencies come from the usual index
