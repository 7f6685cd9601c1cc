"""Find the fenced code blocks of README.md and docs/**/*.md, and run them as printed.

A block is named by its file, the heading it sits under and its position among that heading's
blocks: ``README.md § Walk-through with curl #0``. test_readme.py claims every block by that name.

The only change made to a block's text before it runs is :func:`point_at`: the service's base URL
(``http://localhost:8000``, ``localhost:8000``, ``https://abpilot.example.com``) becomes the test
server's; and, in the blocks that name a PostgreSQL or Redis server, :func:`on_store` points that
URL at the test's own database server (a fresh schema, or a key prefix). Everything else a block
needs comes from its surroundings, never from editing it: the working directory, environment
variables (``PORT`` for ``abpilot serve``, ``ABPILOT_API_KEY``), and curl's configuration file
(``$CURL_HOME/.curlrc`` says ``fail-with-body``, so a 4xx or 5xx fails the block). Bash blocks run
under ``bash -euo pipefail``: a failing command fails the block.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
NODE_MODULES = ROOT / "tests" / "featurevisor" / "node" / "node_modules"
TIMEOUT_S = 120
EFFECT_TIMEOUT_S = 60

# The base URLs the docs print, longest first so "http://localhost:8000" is replaced whole.
PRINTED_BASE_URLS = ("http://localhost:8000", "https://abpilot.example.com", "localhost:8000")

# Settings a block must not inherit from whoever runs the tests: each block's environment is the
# test's own, as a fresh shell on a fresh machine would have it.
_SETTINGS = (
    "STORE",
    "DATABASE_URL",
    "REDIS_URL",
    "REDIS_PREFIX",
    "REDIS_CLUSTER",
    "HOST",
    "PORT",
    "WORKERS",
    "API_KEYS",
    "JWT_SECRET",
    "DATAFILES_DIR",
    "ABPILOT_API_KEY",
    "WAREHOUSE_URL",
    "WAREHOUSE_SOURCES_FILE",
)


@dataclass(frozen=True)
class Block:
    path: str  # relative to the repository root
    heading: str  # the nearest heading above the block, without its #s
    index: int  # position among the blocks under that heading
    language: str
    text: str
    line: int  # line of the opening fence

    @property
    def id(self) -> str:
        return f"{self.path} § {self.heading} #{self.index}"


_FENCE = re.compile(r"^(`{3,}|~{3,})\s*([\w+-]*)")


def parse_blocks(path: Path) -> list[Block]:
    """Every fenced block of the Markdown file ``path``, in order."""
    relative = path.relative_to(ROOT).as_posix()
    lines = path.read_text().splitlines()
    blocks: list[Block] = []
    heading = "(top)"
    seen: dict[str, int] = {}
    i = 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        if fence is None:
            if lines[i].startswith("#"):
                heading = lines[i].lstrip("#").strip()
            i += 1
            continue
        marker, language = fence.groups()
        end = i + 1
        while end < len(lines) and not lines[end].startswith(marker):
            end += 1
        assert end < len(lines), f"{relative}:{i + 1}: a code fence is never closed"
        index = seen.get(heading, 0)
        seen[heading] = index + 1
        text = "\n".join(lines[i + 1 : end]) + "\n"
        blocks.append(Block(relative, heading, index, language, text, i + 1))
        i = end + 1
    return blocks


def doc_files() -> list[Path]:
    """README.md and every Markdown file under docs/ (docs/migrating/*.md included)."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]


def all_blocks() -> dict[str, Block]:
    found: dict[str, Block] = {}
    for path in doc_files():
        for block in parse_blocks(path):
            assert block.id not in found, f"two blocks named {block.id}"
            found[block.id] = block
    return found


# Blocks a test exercised (ran or compared), so the claim decorator can check its test did.
EXERCISED: set[str] = set()


def point_at(text: str, server: str | None) -> str:
    """The block's text with its printed base URL replaced by ``server``: the only edit made."""
    if server is None:
        return text
    for printed in PRINTED_BASE_URLS:
        target = server if printed.startswith("http") else server.removeprefix("http://")
        text = text.replace(printed, target)
    return text


def on_store(block: Block, printed: str, url: str) -> Block:
    """``block`` with the store URL it prints replaced by the test's ``url``."""
    assert printed in block.text, f"{block.id} no longer names {printed}"
    text = block.text.replace(printed, url)
    return Block(block.path, block.heading, block.index, block.language, text, block.line)


def block_env(tmp: Path, **extra: str) -> dict[str, str]:
    """A clean environment for a block: no abpilot settings, this venv's scripts on PATH, and
    curl configured to fail on an HTTP error."""
    curl_home = tmp / "curl-home"
    curl_home.mkdir(exist_ok=True)
    (curl_home / ".curlrc").write_text("fail-with-body\nshow-error\n")
    env = {k: v for k, v in os.environ.items() if k not in _SETTINGS}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["CURL_HOME"] = str(curl_home)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str


def run(
    block: Block,
    *,
    cwd: Path,
    server: str | None = None,
    env: dict[str, str] | None = None,
    expect_returncode: int = 0,
    timeout: float = TIMEOUT_S,
) -> Run:
    """Run a bash or python block to completion in ``cwd``; it must exit ``expect_returncode``."""
    text = point_at(block.text, server)
    if block.language == "bash":
        command = ["bash", "-euo", "pipefail", "-c", text]
    elif block.language == "python":
        script = cwd / f"readme-block-{block.line}.py"
        script.write_text(text)
        command = [sys.executable, str(script)]
    else:
        raise AssertionError(f"{block.id}: cannot run a {block.language!r} block to completion")
    done = subprocess.run(
        command,
        cwd=cwd,
        env=env if env is not None else block_env(cwd),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    EXERCISED.add(block.id)
    assert done.returncode == expect_returncode, (
        f"{block.id} (line {block.line}) exited {done.returncode}, "
        f"not {expect_returncode}:\n{done.stdout}\n{done.stderr}"
    )
    return Run(done.returncode, done.stdout, done.stderr)


def output_comments(block: Block) -> list[str]:
    """The outputs a bash block prints as comments: a ``# {``, ``# [`` or ``# e.g. {`` line and
    the ``#   …`` lines continuing it, joined."""
    comments: list[str] = []
    current: list[str] | None = None
    for line in block.text.splitlines():
        if current is not None and re.match(r"#\s{2,}\S", line):
            current.append(line.lstrip("#").strip())
            continue
        if current is not None:
            comments.append("".join(current))
            current = None
        if re.match(r"# (e\.g\. )?[\[{]", line):
            current = [line[2:].strip()]
    if current is not None:
        comments.append("".join(current))
    return comments


ELLIPSIS = "\u2026"
_MORE = "<…more…>"  # what a bare … becomes: "and other members / elements"


class Printed(float):
    """A number as the docs print it; it matches a value that rounds to it."""

    literal: str

    def __new__(cls, literal: str) -> Printed:
        number = super().__new__(cls, float(literal))
        number.literal = literal
        return number


def parse_printed(text: str) -> object:
    """Parse printed JSON in which ``…`` may stand for a string's rest (inside a string), for
    more members of an object or for more elements at the end of an array (bare)."""
    out: list[str] = []
    stack: list[str] = []
    in_string = escaped = False
    for char in text:
        if in_string:
            out.append(char)
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
            continue
        if char == '"':
            in_string = True
        elif char in "{[":
            stack.append(char)
        elif char in "}]":
            stack.pop()
        elif char == ELLIPSIS:
            out.append(f'"{_MORE}": null' if stack and stack[-1] == "{" else f'"{_MORE}"')
            continue
        out.append(char)
    return json.loads("".join(out), parse_float=Printed)


def _matches(printed: object, actual: object, example: bool) -> bool:
    """``actual`` is what ``printed`` shows; with ``example`` only the shape must agree."""
    if isinstance(printed, dict):
        if not isinstance(actual, dict):
            return False
        keys = set(printed) - {_MORE}
        if not keys <= set(actual) or (_MORE not in printed and keys != set(actual)):
            return False
        return all(_matches(printed[key], actual[key], example) for key in keys)
    if isinstance(printed, list):
        if not isinstance(actual, list):
            return False
        more = bool(printed) and printed[-1] == _MORE
        items = printed[:-1] if more else printed
        assert _MORE not in items, "… may only end an array"
        if len(actual) < len(items) or (not more and len(actual) != len(items)):
            return False
        return all(_matches(p, a, example) for p, a in zip(items, actual, strict=False))
    if isinstance(printed, str):
        if not isinstance(actual, str):
            return False
        if example:
            return True
        pattern = ".*".join(re.escape(part) for part in printed.split(ELLIPSIS))
        return re.fullmatch(pattern, actual, re.S) is not None
    if isinstance(printed, bool):
        return isinstance(actual, bool) and (example or actual is printed)
    if printed is None:
        return actual is None
    if isinstance(printed, int):
        if isinstance(actual, bool) or not isinstance(actual, int | float):
            return False
        return example or actual == printed
    if isinstance(printed, Printed):
        if isinstance(actual, bool) or not isinstance(actual, int | float):
            return False
        return example or _rounds_to(float(actual), printed)
    raise AssertionError(f"unexpected printed value {printed!r}")


def _rounds_to(actual: float, printed: Printed) -> bool:
    """``actual`` rounded to as many significant digits as ``printed`` shows equals it."""
    mantissa = printed.literal.lower().split("e")[0].lstrip("-").replace(".", "")
    digits = len(mantissa.lstrip("0"))
    if float(printed) == 0 or digits == 0:
        decimals = len(printed.literal.split(".")[1]) if "." in printed.literal else 0
        return round(actual, decimals) == 0
    return f"{actual:.{digits - 1}e}" == f"{float(printed):.{digits - 1}e}"


def json_documents(stdout: str) -> list[object]:
    """The JSON objects and arrays in ``stdout`` (curl prints them back to back), in order."""
    decoder = json.JSONDecoder()
    documents: list[object] = []
    position = 0
    while True:
        starts = [i for i in (stdout.find("{", position), stdout.find("[", position)) if i >= 0]
        if not starts:
            return documents
        start = min(starts)
        try:
            document, position = decoder.raw_decode(stdout, start)
        except json.JSONDecodeError:
            position = start + 1
            continue
        documents.append(document)


def assert_printed(printed_text: str, actual: object, where: str) -> None:
    """``actual`` is what the docs print as ``printed_text`` (``e.g.``: the same shape)."""
    example = printed_text.startswith("e.g. ")
    printed = parse_printed(printed_text.removeprefix("e.g. "))
    assert _matches(printed, actual, example), (
        f"{where}: the docs print\n  {printed_text}\nbut the service gives\n  {json.dumps(actual)}"
    )


def assert_output_comments(block: Block, stdout: str) -> int:
    """Each output a bash block prints as a comment is one of the JSON documents it really
    printed, in order. Returns how many comments were checked."""
    documents = json_documents(stdout)
    position = 0
    comments = output_comments(block)
    for comment in comments:
        example = comment.startswith("e.g. ")
        printed = parse_printed(comment.removeprefix("e.g. "))
        for index in range(position, len(documents)):
            if _matches(printed, documents[index], example):
                position = index + 1
                break
        else:
            raise AssertionError(
                f"{block.id}: the printed output\n  {comment}\nis none of the documents the "
                f"block printed after the previous one:\n"
                + "\n".join(json.dumps(d)[:400] for d in documents[position:])
            )
    return len(comments)


@contextlib.contextmanager
def background(
    block: Block, *, cwd: Path, env: dict[str, str], server: str | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a long-running block (a server, an app that refreshes forever) while the caller
    checks its effect; stop it (its whole process group) afterwards."""
    text = point_at(block.text, server)
    if block.language == "bash":
        command = ["bash", "-euo", "pipefail", "-c", text]
    elif block.language == "js":
        script = cwd / f"readme-block-{block.line}.mjs"
        script.write_text(text)
        command = ["node", str(script)]
    else:
        raise AssertionError(f"{block.id}: cannot run a {block.language!r} block in background")
    log = (cwd / f"readme-block-{block.line}.log").open("wb")
    process = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    EXERCISED.add(block.id)
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def log_of(block: Block, cwd: Path) -> str:
    return (cwd / f"readme-block-{block.line}.log").read_text(errors="replace")


def wait_until(
    check: Callable[[], bool], process: subprocess.Popen[bytes], what: str, log: Callable[[], str]
) -> None:
    """Poll ``check`` until it holds; fail if the process exits first or nothing happens in
    ``EFFECT_TIMEOUT_S`` seconds (a bound on a hang, not a timing assertion)."""
    deadline = time.monotonic() + EFFECT_TIMEOUT_S
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            if check():
                return
        if process.poll() is not None:
            with contextlib.suppress(httpx.TransportError):
                if check():
                    return
            raise AssertionError(f"exited {process.returncode} before {what}:\n{log()}")
        time.sleep(0.1)
    raise AssertionError(f"still waiting for {what} after {EFFECT_TIMEOUT_S} s:\n{log()}")


def wait_ready(url: str, process: subprocess.Popen[bytes], block: Block, cwd: Path) -> None:
    """Wait until the server ``block`` started (in ``cwd``) answers ``/readyz`` with 200."""
    wait_until(
        lambda: httpx.get(f"{url}/readyz").status_code == 200,
        process,
        "a ready server",
        lambda: log_of(block, cwd),
    )


def node_project(tmp: Path, sdk_major: int) -> Path:
    """A directory where ``import ... from "@featurevisor/sdk"`` resolves to the official SDK of
    major ``sdk_major`` (tests/featurevisor installs both side by side under npm aliases)."""
    project = tmp / f"node-sdk{sdk_major}"
    scope = project / "node_modules" / "@featurevisor"
    scope.mkdir(parents=True)
    (scope / "sdk").symlink_to(NODE_MODULES / f"fv-sdk{sdk_major}", target_is_directory=True)
    version = subprocess.run(
        ["node", "-p", 'require("@featurevisor/sdk/package.json").version'],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=True,
    ).stdout.strip()
    assert version.split(".")[0] == str(sdk_major), (sdk_major, version)
    return project
