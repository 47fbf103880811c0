"""The `herd` command as a user types it, against the running server."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import BASE_MODEL, CHAT_MODEL
from tests.terminal import render

pytestmark = pytest.mark.integration


def herd(server, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, OLLAMA_HOST=server.base_url.removeprefix("http://"))
    return subprocess.run([sys.executable, "-m", "herd.cli.main", *args], env=env, input=stdin,
                          capture_output=True, text=True, timeout=300)


def test_list_shows_the_bundled_models(server):
    result = herd(server, "list")
    assert result.returncode == 0
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["NAME", "ID", "SIZE", "MODIFIED"]
    names = [row.split()[0] for row in rows]
    assert CHAT_MODEL in names and BASE_MODEL in names
    # MODIFIED ("7 seconds ago") may tick between the two calls.
    columns = lambda text: [line.split()[:4] for line in text.splitlines()]  # noqa: E731
    assert columns(herd(server, "ls").stdout) == columns(result.stdout)


def test_show_prints_the_model_summary_and_single_fields(server):
    summary = herd(server, "show", CHAT_MODEL).stdout
    assert "architecture        llama" in summary
    assert "context length      8192" in summary
    assert "quantization        Q4_1" in summary
    assert "Capabilities" in summary and "tools" in summary
    assert herd(server, "show", CHAT_MODEL, "--template").stdout.startswith("{{- if .Messages }}")
    assert 'stop' in herd(server, "show", CHAT_MODEL, "--parameters").stdout


def test_ps_and_stop(server):
    herd(server, "stop", BASE_MODEL)
    import httpx

    httpx.post(server.base_url + "/api/generate", json={"model": BASE_MODEL, "prompt": "", "keep_alive": "10m"}, timeout=120)
    listed = herd(server, "ps").stdout
    assert listed.splitlines()[0].split() == ["NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL"]
    row = next(line for line in listed.splitlines() if line.startswith(BASE_MODEL))
    assert "100% CPU" in row and "from now" in row
    assert herd(server, "stop", BASE_MODEL).returncode == 0
    assert BASE_MODEL not in herd(server, "ps").stdout


def test_cp_and_rm(server):
    copied = herd(server, "cp", CHAT_MODEL, "cli-copy")
    assert (copied.returncode, copied.stdout.strip()) == (0, f"copied '{CHAT_MODEL}' to 'cli-copy'")
    assert "cli-copy:latest" in herd(server, "list").stdout
    removed = herd(server, "rm", "cli-copy")
    assert (removed.returncode, removed.stdout.strip()) == (0, "deleted 'cli-copy'")
    assert "cli-copy" not in herd(server, "list").stdout


def test_errors_are_one_line_and_a_nonzero_exit(server):
    result = herd(server, "show", "no-such-model")
    assert result.returncode == 1
    assert result.stderr.strip() == "Error: model 'no-such-model:latest' not found"
    unreachable = subprocess.run([sys.executable, "-m", "herd.cli.main", "list"], capture_output=True, text=True,
                                 env=dict(os.environ, OLLAMA_HOST="127.0.0.1:9"), timeout=60)
    assert unreachable.returncode == 1
    assert unreachable.stderr.strip() == "Error: could not connect to herd: is `herd serve` running?"


def test_create_from_a_modelfile_with_a_local_gguf_and_from_a_model_name(server, tmp_path):
    import json

    manifest = json.loads((server.models_dir / "manifests/registry.ollama.ai/library/smollm2/135m").read_text())
    layer = next(l for l in manifest["layers"] if l["mediaType"].endswith(".model"))
    (tmp_path / "weights.gguf").write_bytes((server.models_dir / "blobs" / layer["digest"].replace(":", "-")).read_bytes())
    (tmp_path / "Modelfile").write_text(
        '# a model from local weights\nFROM ./weights.gguf\nTEMPLATE """{{ .Prompt }}"""\nPARAMETER num_predict 5\n'
    )
    made = herd(server, "create", "from-file", "-f", str(tmp_path / "Modelfile"))
    assert made.returncode == 0, made.stderr
    assert made.stderr.strip().splitlines()[-1] == "success"
    assert "num_predict" in herd(server, "show", "from-file", "--parameters").stdout

    (tmp_path / "Named").write_text(f"FROM {CHAT_MODEL}\nSYSTEM You answer in one word.\nPARAMETER stop END\n")
    assert herd(server, "create", "one-word", "-f", str(tmp_path / "Named")).returncode == 0
    assert herd(server, "show", "one-word", "--system").stdout.strip() == "You answer in one word."

    (tmp_path / "Bad").write_text("FROM x\nPARAMETER nonsense 1\n")
    bad = herd(server, "create", "bad", "-f", str(tmp_path / "Bad"))
    assert bad.returncode == 1 and "unknown parameter 'nonsense'" in bad.stderr
    for name in ("from-file", "one-word"):
        herd(server, "rm", name)


def test_run_prints_the_streamed_answer_to_a_prompt_argument(server):
    # The chat model ends its answer; the base model would write until its context is full.
    result = herd(server, "run", CHAT_MODEL, "What is the capital of France?", "--keepalive", "1m")
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith("\n\n") and result.stdout.strip()
    assert "\x1b" not in result.stdout  # a pipe is never word-wrapped


def test_run_reads_a_piped_prompt_and_verbose_prints_ollamas_timings(server):
    result = herd(server, "run", CHAT_MODEL, "--verbose", stdin="Say hello in one word.")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    lines = result.stderr.splitlines()
    keys = [line.split(":")[0] for line in lines]
    expected = ["total duration", "load duration", "prompt eval count", "prompt eval duration", "prompt eval rate",
                "eval count", "eval duration", "eval rate"]
    assert keys == [key for key in expected if key in keys] and len(keys) >= 7  # load only when it loaded
    assert lines[-1].startswith("eval rate:") and lines[-1].endswith(" tokens/s")


def test_run_with_format_json_answers_json(server, tmp_path):
    # Greedy, because a sampled 135M model can repeat keys until its context is full and the JSON is cut off.
    (tmp_path / "Modelfile").write_text(f"FROM {CHAT_MODEL}\nPARAMETER temperature 0\n")
    assert herd(server, "create", "greedy-json", "-f", str(tmp_path / "Modelfile")).returncode == 0
    try:
        result = herd(server, "run", "greedy-json", "--format", "json", "Give the name and age of a cat as JSON.")
        assert result.returncode == 0, result.stderr
        assert isinstance(json.loads(result.stdout), dict)
    finally:
        herd(server, "rm", "greedy-json")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--keepalive", "soon"], 'Error: time: invalid duration "soon"'),
        (["--think"], f'Error: "{CHAT_MODEL}" does not support thinking'),
        (["--think=maybe"], 'Error: invalid value for --think: "maybe" (must be true, false, high, medium, low, or max)'),
    ],
)
def test_run_errors_are_one_line_and_a_failing_exit(server, args, message):
    result = herd(server, "run", CHAT_MODEL, *args, "Hello")
    assert result.returncode == 1
    assert result.stderr.strip() == message


def test_run_pulls_a_missing_model_first_and_reports_what_the_pull_says(server):
    # Nothing listens on port 9 of loopback: the pull fails, and run says so in one line.
    result = herd(server, "run", "127.0.0.1:9/library/absent:latest", "Hello", "--insecure")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("Error: ")
    assert "pulling manifest" in result.stderr


class Terminal:
    """``herd`` on a pseudo-terminal, typed at as a user would."""

    def __init__(self, server, *args: str, columns: int = 80):
        import fcntl
        import pty
        import struct
        import termios

        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
        env = dict(os.environ, OLLAMA_HOST=server.base_url.removeprefix("http://"), TERM="dumb")
        env.pop("COLUMNS", None)  # the window size, not the environment, must decide the width
        self.process = subprocess.Popen([sys.executable, "-m", "herd.cli.main", *args], env=env,
                                        stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
        os.close(slave)
        self.seen = ""

    def expect(self, text: str, timeout: float = 120) -> str:
        """Everything printed until ``text`` (which is consumed with it)."""
        import select
        import time

        deadline = time.monotonic() + timeout
        while text not in self.seen:
            ready, _, _ = select.select([self.master], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise AssertionError(f"no {text!r} in {self.seen[-2000:]!r}")
            self.seen += os.read(self.master, 65536).decode("utf-8", "replace")
        before, _, self.seen = self.seen.partition(text)
        return before

    def read_to_exit(self, timeout: float = 120) -> str:
        """Everything printed until the program exits."""
        import select

        self.process.wait(timeout=timeout)
        while select.select([self.master], [], [], 1)[0]:
            try:
                data = os.read(self.master, 65536)
            except OSError:  # EIO: the program's end of the terminal is closed
                break
            if not data:
                break
            self.seen += data.decode("utf-8", "replace")
        return self.seen

    def type(self, line: str) -> None:
        os.write(self.master, (line + "\n").encode())

    def say(self, line: str) -> str:
        """Types ``line`` and returns what comes back before the next prompt."""
        self.type(line)
        return self.expect(">>> ")


def test_run_without_a_prompt_at_a_terminal_is_a_chat_with_history_and_commands(server):
    term = Terminal(server, "run", CHAT_MODEL)
    try:
        term.expect(">>> ")
        assert "Set parameter 'num_predict' to '12'" in term.say("/set parameter num_predict 12")
        assert "Set system message." in term.say("/set system You are a terse assistant.")
        assert term.say("My name is Ada.").strip() != "My name is Ada."  # the model answered something
        term.type('"""What is')
        term.expect("... ")
        term.say('my name?"""')
        for line, shown in [
            ("/set verbose", "Set 'verbose' mode."),
            ("Thanks.", "eval rate:"),
            ("/show info", "architecture"),
            ("/save ada-chat", "Created new model 'ada-chat'"),
            ("/clear", "Cleared session context"),
            ("/nonsense", "Unknown command '/nonsense'. Type /? for help"),
        ]:
            assert shown in term.say(line)
        term.type("/bye")
        assert term.process.wait(timeout=30) == 0
    finally:
        if term.process.poll() is None:
            term.process.kill()
        os.close(term.master)
    # The saved session carries the system message, the parameter and the three turns.
    shown = herd(server, "show", "ada-chat", "--modelfile").stdout
    assert "You are a terse assistant." in shown and "num_predict 12" in shown
    assert shown.count("MESSAGE user") == 3 and shown.count("MESSAGE assistant") == 3
    herd(server, "rm", "ada-chat")


def test_run_wraps_words_at_the_terminal_edge_unless_told_not_to(server, tmp_path):
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text(f"FROM {CHAT_MODEL}\nPARAMETER temperature 0\nPARAMETER num_predict 80\n")
    assert herd(server, "create", "wrap-test", "-f", str(modelfile)).returncode == 0
    screens = {}
    try:
        for flag in ("--keepalive=1m", "--nowordwrap"):
            term = Terminal(server, "run", "wrap-test", "Describe the sea in a long paragraph.", flag, columns=40)
            try:
                screens[flag] = render(term.read_to_exit())
                assert term.process.returncode == 0
            finally:
                os.close(term.master)
    finally:
        herd(server, "rm", "wrap-test")
    wrapped, unwrapped = screens["--keepalive=1m"], screens["--nowordwrap"]
    assert max(len(line) for line in unwrapped) > 35  # the answer is long enough to need wrapping
    assert max(len(line) for line in wrapped) <= 35  # the margin: 40 columns less 5
    assert " ".join(wrapped).split() == " ".join(unwrapped).split()
