"""The README and docs/: the set-up commands (what CI runs, how a stock Linux machine gets PyTorch's CPU build),
the example, and every relative link."""

import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
CPU_FIRST = ("{ .venv/bin/pip install -q --retries 0 --timeout 5 --index-url https://download.pytorch.org/whl/cpu "
             "torch==2.13.0 || true; }")


def section(title: str) -> str:
    return README.read_text().split(f"## {title}", 1)[1].split("\n## ", 1)[0]


def setup_blocks() -> list[str]:
    return re.findall(r"```bash\n(.+?)\n```", section("Set-up"))


def test_the_readme_has_two_setup_commands_and_ci_runs_exactly_the_test_command():
    main, tests = setup_blocks()
    assert main.endswith("&& .venv/bin/vrfer predict --samples")
    assert tests.startswith("bash .ci/browser-deps.sh; ") and tests.endswith("-m pytest -q -rs --durations=15")
    ci = [line for line in (REPO / ".ci" / "run").read_text().splitlines() if line and not line.startswith(("#", "set ", "cd "))]
    assert ci == [tests]


def test_both_commands_pin_torch_in_the_same_pip_call_as_vrfer():
    """torch==2.13.0 named beside the package: pip takes that version (and keeps one already installed)."""
    for cmd in setup_blocks():
        calls = [c.split("&&")[0].split("||")[0] for c in cmd.split(".venv/bin/pip install")[1:]]
        vrfer = [c for c in calls if "-e ." in c or "-e '.[test]'" in c]
        assert len(vrfer) == 1 and "torch==2.13.0" in vrfer[0].split()


def test_both_commands_try_pytorchs_cpu_index_first_and_go_on_without_it():
    """A stock machine gets the CPU build (PyPI's torch is the CUDA build); a machine that cannot reach
    download.pytorch.org gives up within seconds (no retries, 5 s timeout) and the next pip call installs torch."""
    for cmd in setup_blocks():
        _, rest = cmd.split("python3 -m venv .venv && ", 1)
        assert rest.startswith(CPU_FIRST + " && .venv/bin/pip install -q torch==2.13.0 -e ")
    text = section("Set-up")
    assert "CUDA build" in text and "docs/SETUP.md" in text


def test_the_setup_commands_are_valid_bash():
    for cmd in setup_blocks():
        subprocess.run(["bash", "-n", "-c", cmd], check=True)


def test_the_readme_example_prints_what_vrfer_prints():
    block = re.findall(r"```console\n(.+?)\n```", section("Example"), re.S)[0].splitlines()
    assert block[0].startswith("$ .venv/bin/vrfer ")
    argv = shlex.split(block[0][len("$ .venv/bin/vrfer "):])
    out = subprocess.run([sys.executable, "-m", "vrfer", *argv], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == block[1:]


def github_anchors(text: str) -> Iterator[str]:
    """The anchors GitHub gives a Markdown file's headings (lower case, punctuation dropped, spaces to '-')."""
    seen: dict[str, int] = {}
    fenced = False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        m = None if fenced else re.match(r"^#{1,6} (.+)$", line)
        if m:
            slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
            n = seen.get(slug, 0)
            seen[slug] = n + 1
            yield slug if n == 0 else f"{slug}-{n}"


def test_every_relative_link_in_the_readme_and_docs_resolves():
    bad = []
    for md in [README, *sorted((REPO / "docs").glob("*.md"))]:
        text = re.sub(r"```.*?```", "", md.read_text(), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            dest = (md.parent / path).resolve() if path else md
            if not dest.exists():
                bad.append(f"{md.name}: {target} (no such file)")
            elif anchor and anchor not in set(github_anchors(dest.read_text())):
                bad.append(f"{md.name}: {target} (no such heading)")
    assert not bad, bad
