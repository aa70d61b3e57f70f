"""docs/agents.md runs as written: its files are written, its commands run,
and their stdout is what the page says.

The page marks what is tested with HTML comments before a fenced block:
`<!-- doc-test: file NAME -->` (write the block to NAME),
`<!-- doc-test: append NAME -->` (add it at the end of NAME),
`<!-- doc-test: run -->` (run the shell block), and
`<!-- doc-test: output -->` or `<!-- doc-test: output in any order -->` (the
previous command's exact stdout). The kit is installed the way the page says,
with pip, into a private virtual environment; `skep` is the workspace's build.
"""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import DEADLINE, KIT, REPO, group_members, skep_binary

PAGE = REPO / "docs" / "agents.md"
MARKED = re.compile(r"<!-- doc-test: (?P<what>[^>]*?) -->\n```[a-z]*\n(?P<body>.*?)```", re.S)


def marked_blocks():
    return [(m["what"].strip(), m["body"]) for m in MARKED.finditer(PAGE.read_text())]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A fresh directory with the kit pip-installed into a venv and skep and the npm package at hand."""
    root = tmp_path_factory.mktemp("agents-doc")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    # A copy, so pip's build leaves nothing in the checkout.
    shutil.copytree(KIT, root / "kit", ignore=shutil.ignore_patterns("tests", "__pycache__", ".pytest_cache"))
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, str(root / "kit")], check=True, timeout=300)
    work = root / "work"
    (work / "node_modules").mkdir(parents=True)
    # `require('skep/agent')` as in a project depending on the npm package.
    (work / "node_modules" / "skep").symlink_to(REPO / "orchestrator-bindings")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = os.pathsep.join([str(venv / "bin"), str(Path(skep_binary()).parent), env["PATH"]])
    # The doc's `skep call` starts the project's daemon (docs/daemon.md), as it
    # would for a reader: in a runtime directory of this test's, stopped after it.
    run = root / "run"
    run.mkdir(mode=0o700)
    env["XDG_RUNTIME_DIR"] = str(run)
    env["XDG_STATE_HOME"] = str(root / "state")
    env.pop("SKEP_NO_DAEMON", None)
    yield work, env
    subprocess.run([skep_binary(), "down"], cwd=work, env=env, timeout=60, capture_output=True)
    leftovers = [p.name for p in (run / "skep").glob("*.sock")] if (run / "skep").exists() else []
    assert not leftovers, f"daemons left running: {leftovers}"


def test_every_marked_block_is_a_file_a_command_or_its_output():
    kinds = [what.split()[0] for what, _ in marked_blocks()]
    assert set(kinds) <= {"file", "append", "run", "output"}, kinds
    assert kinds.count("run") == kinds.count("output") >= 4


def test_the_page_runs_as_written(project):
    work, env = project
    blocks = marked_blocks()
    ran = 0
    for i, (what, body) in enumerate(blocks):
        if what.startswith(("file ", "append ")):
            path = work / what.split(" ", 1)[1]
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a" if what.startswith("append ") else "w") as f:
                f.write(body)
        elif what == "run":
            expected_what, expected = blocks[i + 1]
            assert expected_what.startswith("output"), f"the command {body!r} has no output block after it"
            proc = subprocess.Popen(
                ["bash", "-euo", "pipefail", "-c", body],
                cwd=work,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
            try:
                out, err = proc.communicate(timeout=DEADLINE * 3)
            finally:
                if proc.returncode is None:
                    os.killpg(proc.pid, 9)
                    proc.wait()
            assert proc.returncode == 0, f"{body}\nexited {proc.returncode}; stderr:\n{err.decode()}"
            got, want = out.decode().splitlines(), expected.splitlines()
            if expected_what == "output in any order":
                got, want = sorted(got), sorted(want)
            assert got == want, f"{body}\nstderr:\n{err.decode()}"
            assert group_members(proc.pid) == [], "the example left a process behind"
            ran += 1
    assert ran >= 4
