"""The front door: every ```python block of README.md and docs/*.md runs, and the README's
install / test / main-job commands are what CI runs, the main job verbatim.

A python block that cannot run here (it needs a GPU, a checkpoint, several hosts) is marked with
``<!-- skip-snippet -->`` on the line right before its opening fence. The blocks of one file run
in order in one namespace, so a block may use what an earlier one defined.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
CI_SCRIPT = os.path.join(ROOT, ".ci", "run")
SKIP_MARK = "<!-- skip-snippet -->"
MAIN_JOB_TIMEOUT_S = 900


@dataclasses.dataclass(frozen=True)
class Block:
    file: str   # relative to the repository root
    line: int   # 1-based line of the opening fence
    lang: str
    code: str
    skip: bool


def fenced_blocks(path: str) -> list[Block]:
    """Every fenced code block of a markdown file (```lang ... ```), in order."""
    rel = os.path.relpath(path, ROOT)
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        m = re.match(r"^(\s*)```\s*([\w+-]*)\s*$", lines[i])
        if not m:
            i += 1
            continue
        indent, lang, start = m.group(1), m.group(2).lower(), i
        body, i = [], i + 1
        while i < len(lines) and not re.match(r"^\s*```\s*$", lines[i]):
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i])
            i += 1
        if i == len(lines):
            raise ValueError(f"{rel}:{start + 1}: unclosed ``` block")
        skip = start > 0 and lines[start - 1].strip() == SKIP_MARK
        blocks.append(Block(rel, start + 1, lang, "\n".join(body) + "\n", skip))
        i += 1
    return blocks


def _doc_files() -> list[str]:
    return [README] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))


PY_BLOCKS = [b for path in _doc_files() for b in fenced_blocks(path) if b.lang == "python"]


def test_there_are_python_snippets():
    assert any(b.file == "README.md" for b in PY_BLOCKS), "README.md has no ```python block"


# One namespace per file; blocks run in file order (earlier ones first if a test is run alone).
_NAMESPACES: dict[str, dict] = {}


def _file_state(file: str) -> dict:
    return _NAMESPACES.setdefault(file, {"ns": {"__name__": "__snippet__"}, "done": set(),
                                         "failed": None})


def _exec(block: Block, ns: dict) -> None:
    # Padding keeps the markdown line numbers in tracebacks ("README.md", line N).
    code = "\n" * block.line + block.code
    exec(compile(code, block.file, "exec"), ns)  # noqa: S102 - running the docs is the point


@pytest.mark.parametrize("block", PY_BLOCKS, ids=[f"{b.file}:{b.line}" for b in PY_BLOCKS])
def test_python_snippet(block: Block):
    if block.skip:
        pytest.skip(f"{block.file}:{block.line} is marked {SKIP_MARK}")
    state = _file_state(block.file)
    for earlier in PY_BLOCKS:
        if earlier.file != block.file or earlier.line >= block.line or earlier.skip:
            continue
        if earlier.line not in state["done"]:
            state["done"].add(earlier.line)
            try:
                _exec(earlier, state["ns"])
            except Exception:
                state["failed"] = state["failed"] or earlier.line
    if state["failed"] is not None:
        pytest.skip(f"depends on {block.file}:{state['failed']}, which failed")
    state["done"].add(block.line)
    try:
        _exec(block, state["ns"])
    except Exception:
        state["failed"] = block.line
        raise


def test_block_parser_and_skip_mark(tmp_path, monkeypatch):
    md = tmp_path / "x.md"
    md.write_text("text\n```python\na = 1\n```\n<!-- skip-snippet -->\n```python\nraise SystemExit\n```\n"
                  "- item:\n  ```bash\n  echo hi  # comment\n  ```\n", encoding="utf-8")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", str(tmp_path))
    blocks = fenced_blocks(str(md))
    assert [(b.line, b.lang, b.skip) for b in blocks] == [(2, "python", False), (6, "python", True),
                                                            (10, "bash", False)]
    assert blocks[0].code == "a = 1\n" and blocks[2].code == "echo hi  # comment\n"
    assert _strip_comment("pytest -q   # run the tests") == ("pytest -q", "run the tests")
    # A failing block's traceback points at its markdown line.
    bad = Block("x.md", 2, "python", "x = 1\nraise ValueError('boom')\n", False)
    with pytest.raises(ValueError) as info:
        _exec(bad, {})
    assert info.traceback[-1].lineno + 1 == 4 and str(info.traceback[-1].path).endswith("x.md")


# ------------------------------------------------------------------- the README's commands
def _strip_comment(line: str) -> tuple[str, str]:
    m = re.match(r"^(.*?)\s+#\s?(.*)$", line)
    return (m.group(1).strip(), m.group(2).strip()) if m else (line.strip(), "")


@dataclasses.dataclass(frozen=True)
class Commands:
    install: str
    test: str
    main_job: str


def readme_commands() -> Commands:
    """The README's first ```bash block: exactly an install, a test and a main-job line."""
    bash = [b for b in fenced_blocks(README) if b.lang in ("bash", "sh", "shell")]
    assert bash, "README.md has no ```bash block"
    block = bash[0]
    lines = [_strip_comment(ln) for ln in block.code.splitlines() if ln.strip()]
    where = f"README.md:{block.line}"
    assert len(lines) == 3, f"{where}: expected 3 commands (install, test, main job), got {lines}"
    (install, c1), (test, c2), (main_job, c3) = lines
    assert re.match(r"^(python3? -m )?pip install ", install), f"{where}: not an install line: {install!r}"
    assert "install" in c1.lower(), f"{where}: the first comment should say 'install': {c1!r}"
    assert re.match(r"^(python3? -m )?pytest\b", test), f"{where}: not a test line: {test!r}"
    assert "test" in c2.lower(), f"{where}: the second comment should say 'test': {c2!r}"
    assert "main job" in c3.lower(), f"{where}: the third comment should say 'main job': {c3!r}"
    return Commands(install, test, main_job)


def _ci_lines() -> list[str]:
    with open(CI_SCRIPT, encoding="utf-8") as f:
        return [ln.strip() for ln in f.read().splitlines()]


def _line_running(lines: list[str], cmd: str) -> int:
    """Index of the one line that runs exactly ``cmd`` (alone, or as ``if ! cmd > log ...``)."""
    pattern = re.compile(r"^(?:if\s+!\s+)?" + re.escape(cmd) + r"(?:\s*$|\s+[>|;&])")
    found = [i for i, ln in enumerate(lines) if pattern.match(ln)]
    assert len(found) == 1, (f".ci/run should run the README's line {cmd!r} exactly once (CI and "
                             f"the README run the same commands), found it on lines "
                             f"{[i + 1 for i in found]}")
    return found[0]


def test_readme_commands_are_what_ci_runs():
    cmds = readme_commands()
    lines = _ci_lines()
    order = [_line_running(lines, c) for c in (cmds.install, cmds.test, cmds.main_job)]
    assert order == sorted(order), ".ci/run must install, then test, then run the main job"
    # No other install of the package: CI's install line is the README's.
    installs = [ln for ln in lines if re.search(r"\bpip install\b", ln)
                and not ln.startswith("#") and "--upgrade pip" not in ln]
    assert len(installs) == 1 and cmds.install in installs[0], installs


def _env_with_scripts() -> dict:
    # Console scripts of this interpreter's environment, as after activating it.
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return env


def test_readme_main_job_runs_verbatim():
    cmd = readme_commands().main_job
    proc = subprocess.run(cmd, shell=True, cwd=ROOT, env=_env_with_scripts(), capture_output=True,
                          text=True, timeout=MAIN_JOB_TIMEOUT_S)
    out = proc.stdout
    assert proc.returncode == 0, f"{cmd!r} exited {proc.returncode}:\n{out}\n{proc.stderr[-3000:]}"
    # The comparison it promises: int8 vs bf16 weights, output agreement of bf16, int8 and int8
    # without the decomposition with the float32 model, forward times. On all-MiniLM-L6-v2 (when
    # installed) the agreement is the embeddings' cosine; on the builtin model the logits' error.
    minilm = "model: all-MiniLM-L6-v2" in out
    m = re.search(r"weights\s+bf16\s+([\d.]+) MiB\s+int8\s+([\d.]+) MiB", out)
    assert m and float(m.group(2)) < float(m.group(1)), out
    rows = {}
    for name, label in (("bf16", r"bf16"), ("t6", r"LLM\.int8 \(threshold 6\)"),
                        ("t0", r"int8, no decomposition \(t=0\)")):
        row = r"\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)%" if minilm else r"\s+([\d.e+-]+)\s+([\d.]+)%"
        m = re.search(r"^\s*" + label + row, out, re.M)
        assert m, f"no {label!r} row in:\n{out}"
        rows[name] = float(m.group(1))
    if minilm:  # mean cosine to the float32 embeddings: higher is better
        assert rows["t6"] >= 0.999 and rows["t0"] < rows["t6"], f"cosines: {rows}\n{out}"
        assert re.search(r"retrieval: 50 queries vs 200 sentences", out), out
    else:  # relative error of the logits: lower is better
        assert rows["t6"] < rows["t0"], f"the outlier decomposition should beat plain int8: {rows}"
    assert re.search(r"forward .*bf16 [\d.]+ ms\s+int8 [\d.]+ ms", out), out
