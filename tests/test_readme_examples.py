"""The README's examples, run as a new user would: `manage.py up` on a fresh data folder, the `export` line its
banner prints pasted into a shell, its "Try it" curl, then every ```sh block of README.md in order in that one
shell (each ```python block runs there too, with this interpreter), the providers played by the fake provider.

Which blocks run: all of them, except a block whose fence follows the line
`<!-- readme-examples: skip (why) -->` (the install one-liners, and commands that serve until stopped). A fence
in any other language fails the test, so a new example is run or explicitly excluded, never forgotten.

Stricter than a terminal: the shell stops at the first failing command (`set -euo pipefail`, so an unset
variable fails too); `curl` fails on an HTTP error even where the README writes `curl -s`, and still shows the
answer's body; `jq` is not there, as on a fresh machine. The shell runs in a scratch folder holding the
checkout's `manage.py` and a `.venv/bin/python`, so the files the examples write land there, not in the
checkout."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.up_process import ROOT, started_up

README = ROOT / "README.md"
SKIP = re.compile(r"^<!-- readme-examples: skip \((.+)\) -->$")
FENCE = re.compile(r"^```(\S*)\s*$")


@dataclass
class Block:
    line: int  # of the opening fence, 1-based
    language: str
    code: str
    skipped: str | None  # why, when the README says so


def readme_blocks(text: str) -> list[Block]:
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        start, body = i, []
        i += 1
        while i < len(lines) and lines[i].rstrip() != "```":
            body.append(lines[i])
            i += 1
        assert i < len(lines), f"README.md line {start + 1}: a fenced block that never ends"
        marker = SKIP.match(lines[start - 1]) if start else None
        blocks.append(Block(start + 1, opening.group(1), "\n".join(body), marker.group(1) if marker else None))
        i += 1
    return blocks


def _script(blocks: list[Block], export_line: str, try_it: str) -> str:
    parts = [
        "set -euo pipefail",
        'curl() { command curl --fail-with-body --show-error "$@" || {',
        '  local status=$?; echo "  by: curl $*" >&2; return $status; }; }',
        # On any failure (a command's, or an unset variable's), say which example it was.
        "trap 'status=$?; [ $status = 0 ] || echo \"README.md: the example at line $README_LINE failed\" >&2' EXIT",
        "README_LINE=0  # the banner of manage.py up",
        export_line,
        try_it,
        "echo",
    ]
    for block in blocks:
        parts.append(f"README_LINE={block.line}")
        if block.language == "sh":
            parts.append(block.code)
        else:
            parts.append(f"\"$README_PYTHON\" - <<'README_PYTHON_BLOCK'\n{block.code}\nREADME_PYTHON_BLOCK")
    return "\n".join(parts) + "\n"


def _scratch_folder(path: Path) -> Path:
    """What the examples expect around them: `.venv/bin/python` and `manage.py`, those of this checkout. And no jq."""
    bin_dir = path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    python = bin_dir / "python"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    (path / "manage.py").symlink_to(ROOT / "manage.py")
    shims = path / "shims"
    shims.mkdir()
    jq = shims / "jq"
    jq.write_text("#!/bin/sh\necho 'jq is not on a fresh machine: the README must not need it' >&2\nexit 127\n")
    jq.chmod(0o755)
    return shims


def test_every_fenced_block_in_the_readme_is_run_or_excluded_with_a_reason():
    blocks = readme_blocks(README.read_text())
    assert blocks, "README.md has no examples?"
    for block in blocks:
        assert block.language in ("sh", "python") or block.skipped, (
            f"README.md line {block.line}: a ```{block.language} block is neither run by this test (sh, python) nor "
            "excluded with <!-- readme-examples: skip (why) --> on the line above it"
        )
    # The exclusions are the ones that cannot run here, not a way around a broken example.
    skipped = [block.skipped for block in blocks if block.skipped]
    assert len(skipped) <= 3, skipped


def test_the_readmes_examples_work_as_written_with_what_up_prints(tmp_path, fake):
    blocks = [b for b in readme_blocks(README.read_text()) if not b.skipped]
    assert sum(b.language == "sh" for b in blocks) >= 4  # records, prompts, evals, the management API
    work = tmp_path / "work"
    work.mkdir()
    shims = _scratch_folder(work)
    instance = {
        "OPENAI_API_KEY": "sk-instance-openai",
        "INGATE_UPSTREAM_OPENAI": fake.url,
        "ANTHROPIC_API_KEY": "sk-instance-anthropic",
        "INGATE_UPSTREAM_ANTHROPIC": fake.url,
    }
    with started_up(tmp_path / "data", instance) as up:
        env = up.env | {"PATH": f"{shims}{os.pathsep}{up.env['PATH']}", "README_PYTHON": sys.executable}
        script = _script(blocks, up.export_line, up.try_it)
        ran = subprocess.run(["bash", "-c", script], cwd=work, env=env, capture_output=True, text=True, timeout=120)
        server = "".join(up.output)
        assert ran.returncode == 0, (
            f"{ran.stderr[-3000:]}\n--- stdout ---\n{ran.stdout[-3000:]}\n--- server ---\n{server[-2000:]}"
        )

    # What a user would look at afterwards: the dataset export holds both items, the SDK call went out with the
    # prompt version `production` points at after the rollback (v1), and the scored one as written.
    assert (work / "refunds.csv").read_text().count("Acme") == 2
    sdk_calls = [r.json() for r in fake.requests if (r.header("user-agent") or "").startswith("OpenAI/Python")]
    # The guardrails example's call reached the provider with the address as a placeholder (its blocked one never did).
    guarded = [call for call in sdk_calls if call["messages"][0]["content"] == "Reply to <EMAIL_1>"]
    assert len(guarded) == 1 and not any("AKIA" in json.dumps(call) for call in sdk_calls)
    assert [c["messages"][0]["content"] for c in sdk_calls if c not in guarded] == [
        "You help Acme customers with refunds.",
        "Is 7 a prime number?",
    ]
    assert "api thumbs 1.0" in ran.stdout
