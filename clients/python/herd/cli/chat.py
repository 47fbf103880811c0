"""``herd run MODEL`` at a terminal: a chat that streams and keeps its history, as ``ollama run`` has it.

Lines starting with ``/`` are session commands (``/?`` lists them); a line starting with ``\"\"\"``
opens a multi-line message that the next ``\"\"\"`` closes. Readline gives the line editing and
history.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field

from herd.cli.api import ApiError, Client
from herd.cli.commands import show
from herd.cli.wrap import WordWrap
from herd.gofmt import go_duration

try:  # line editing where the platform has it
    import readline  # noqa: F401
except ImportError:
    pass

USAGE = """Available Commands:
  /set            Set session variables
  /show           Show model information
  /load <model>   Load a session or model
  /save <model>   Save your current session
  /clear          Clear session context
  /bye            Exit
  /?, /help       Help for a command

Use \"\"\" to begin a multi-line message.
"""
USAGE_SET = """Available Commands:
  /set parameter ...     Set a parameter
  /set system <string>   Set system message
  /set wordwrap          Enable wordwrap
  /set nowordwrap        Disable wordwrap
  /set format json       Enable JSON mode
  /set noformat          Disable formatting
  /set verbose           Show LLM stats
  /set quiet             Disable LLM stats
  /set think             Enable thinking
  /set nothink           Disable thinking
"""
USAGE_SHOW = """Available Commands:
  /show info         Show details for this model
  /show license      Show model license
  /show modelfile    Show Modelfile for this model
  /show parameters   Show parameters for this model
  /show system       Show system message
  /show template     Show prompt template
"""
SHOW_FIELDS = ("license", "modelfile", "parameters", "system", "template")


def parameter_value(key: str, words: list[str]):
    """A ``/set parameter`` value typed as the API wants it: stop is a list, numbers are numbers."""
    if key == "stop":
        return words
    text = " ".join(words)
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def summary(done: dict) -> str:
    """The ``--verbose`` block, line for line as Ollama's ``Metrics.Summary``."""
    lines = []
    if done.get("total_duration"):
        lines.append(f"total duration:       {go_duration(done['total_duration'])}")
    if done.get("load_duration"):
        lines.append(f"load duration:        {go_duration(done['load_duration'])}")
    if done.get("prompt_eval_count"):
        lines.append(f"prompt eval count:    {done['prompt_eval_count']} token(s)")
    if done.get("prompt_eval_duration"):
        lines.append(f"prompt eval duration: {go_duration(done['prompt_eval_duration'])}")
        lines.append(f"prompt eval rate:     {done.get('prompt_eval_count', 0) / (done['prompt_eval_duration'] / 1e9):.2f} tokens/s")
    if done.get("eval_count"):
        lines.append(f"eval count:           {done['eval_count']} token(s)")
    if done.get("eval_duration"):
        lines.append(f"eval duration:        {go_duration(done['eval_duration'])}")
        lines.append(f"eval rate:            {done.get('eval_count', 0) / (done['eval_duration'] / 1e9):.2f} tokens/s")
    return "\n".join(lines)


@dataclass
class Session:
    model: str
    verbose: bool = False
    format: str = ""
    think: object = None
    hide_thinking: bool = False
    keep_alive: str | None = None
    word_wrap: bool = True
    system: str = ""
    options: dict = field(default_factory=dict)
    messages: list[dict] = field(default_factory=list)

    def set_system(self, text: str) -> None:
        self.system = text
        if self.messages and self.messages[-1]["role"] == "system":
            self.messages[-1] = {"role": "system", "content": text}
        else:
            self.messages.append({"role": "system", "content": text})


class Chat:
    def __init__(self, session: Session, client: Client, out=sys.stdout):
        self.session = session
        self.client = client
        self.out = out
        self.pending: list[str] | None = None  # lines of an open \"\"\" block
        self.pending_is_system = False

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def loop(self) -> int:
        while True:
            try:
                line = input("... " if self.pending is not None else ">>> ")
            except EOFError:
                self.say("")
                return 0
            except KeyboardInterrupt:
                self.pending = None
                self.say("\nUse Ctrl + d or /bye to exit.")
                continue
            if self.pending is not None:
                closed = line.endswith('"""')
                self.pending.append(line[:-3] if closed else line)
                if closed:
                    self.finish_multiline()
            elif line.startswith('"""'):
                self.start_multiline(line[3:], for_system=False)
            elif line.startswith("/"):
                if self.command(line) == "bye":
                    return 0
            elif line.strip():
                self.turn(line)

    def start_multiline(self, first: str, for_system: bool) -> None:
        """Text after an opening \"\"\"; a closing one on the same line ends it at once."""
        self.pending, self.pending_is_system = [], for_system
        closed = first.endswith('"""')
        self.pending.append(first[:-3] if closed else first)
        if closed:
            self.finish_multiline()

    def finish_multiline(self) -> None:
        text, self.pending = "\n".join(self.pending), None
        if self.pending_is_system:
            self.session.set_system(text)
            self.say("Set system message.")
        else:
            self.turn(text)

    def command(self, line: str) -> str | None:
        words = line.split()
        name = words[0]
        if name in ("/bye", "/exit"):
            return "bye"
        if name in ("/?", "/help"):
            topic = words[1] if len(words) > 1 else ""
            print({"set": USAGE_SET, "/set": USAGE_SET, "show": USAGE_SHOW, "/show": USAGE_SHOW}.get(topic, USAGE),
                  file=sys.stderr)
        elif name == "/clear":
            self.session.messages = [{"role": "system", "content": self.session.system}] if self.session.system else []
            self.say("Cleared session context")
        elif name == "/set":
            self.set(words[1:], line)
        elif name == "/show":
            self.show(words[1:])
        elif name == "/load":
            self.load(words[1:])
        elif name == "/save":
            self.save(words[1:])
        else:
            self.say(f"Unknown command '{name}'. Type /? for help")
        return None

    def set(self, words: list[str], line: str) -> None:
        s = self.session
        what = words[0] if words else ""
        if what == "verbose":
            s.verbose = True
            self.say("Set 'verbose' mode.")
        elif what == "quiet":
            s.verbose = False
            self.say("Set 'quiet' mode.")
        elif what in ("wordwrap", "nowordwrap"):
            s.word_wrap = what == "wordwrap"
            self.say(f"Set '{what}' mode.")
        elif what == "format":
            if len(words) < 2 or words[1] != "json":
                self.say("Invalid or missing format. For 'json' mode use '/set format json'")
            else:
                s.format = "json"
                self.say("Set format to 'json' mode.")
        elif what == "noformat":
            s.format = ""
            self.say("Disabled format.")
        elif what == "think":
            s.think = words[1] if len(words) > 1 else True
            self.say(f"Set 'think' mode to '{words[1]}'." if len(words) > 1 else "Set 'think' mode.")
        elif what == "nothink":
            s.think = False
            self.say("Set 'nothink' mode.")
        elif what == "parameter" and len(words) >= 3:
            s.options[words[1]] = parameter_value(words[1], words[2:])
            self.say(f"Set parameter '{words[1]}' to '{', '.join(words[2:])}'")
        elif what == "system" and len(words) >= 2:
            text = line.split(None, 2)[2]
            if text.startswith('"""'):
                self.start_multiline(text[3:], for_system=True)
            else:
                s.set_system(text)
                self.say("Set system message.")
        elif what in ("", "parameter", "system"):
            print(USAGE_SET, file=sys.stderr)
        else:
            self.say(f"Unknown command '/set {what}'. Type /? for help")

    def show(self, words: list[str]) -> None:
        what = words[0] if words else ""
        flags = {flag: what == flag for flag in SHOW_FIELDS}
        if what != "info" and not any(flags.values()):
            print(USAGE_SHOW, file=sys.stderr)
            return
        try:
            show(argparse.Namespace(model=self.session.model, verbose=False, **flags), self.client)
        except ApiError as error:
            self.say(f"error: {error}")

    def load(self, words: list[str]) -> None:
        if len(words) != 1:
            self.say("Usage:\n  /load <modelname>")
            return
        try:
            self.client.post("/api/show", {"model": words[0]})
        except ApiError:
            self.say(f"Couldn't find model '{words[0]}'")
            return
        self.session.model, self.session.messages = words[0], []
        self.say(f"Loading model '{words[0]}'")
        self.client.post("/api/generate", {"model": words[0]})

    def save(self, words: list[str]) -> None:
        if len(words) != 1:
            self.say("Usage:\n  /save <modelname>")
            return
        s = self.session
        body = {"model": words[0], "from": s.model, "messages": [m for m in s.messages if m["role"] != "system"],
                "stream": False}
        if s.system:
            body["system"] = s.system
        if s.options:
            body["parameters"] = s.options
        try:
            self.client.post("/api/create", body)
        except ApiError as error:
            self.say(f"error: {error}")
            return
        self.say(f"Created new model '{words[0]}'")

    def turn(self, text: str) -> None:
        """Sends ``text`` with the history, streams the reply, and keeps both in the history."""
        s = self.session
        s.messages.append({"role": "user", "content": text})
        body = {"model": s.model, "messages": s.messages, "options": s.options}
        if s.format:
            body["format"] = s.format
        if s.think is not None:
            body["think"] = s.think
        if s.keep_alive:
            body["keep_alive"] = s.keep_alive
        reply, done = [], {}
        out = WordWrap.for_terminal(self.out, s.word_wrap)
        try:
            for chunk in self.client.stream("/api/chat", body):
                message = chunk.get("message", {})
                if message.get("thinking") and not s.hide_thinking:
                    out.write(message["thinking"])
                if message.get("content"):
                    reply.append(message["content"])
                    out.write(message["content"])
                out.flush()
                if chunk.get("done"):
                    done = chunk
        except ApiError as error:
            s.messages.pop()
            self.say(f"Error: {error}")
            return
        except KeyboardInterrupt:
            self.say("")
        s.messages.append({"role": "assistant", "content": "".join(reply)})
        self.say("\n")
        if s.verbose and done:
            print(summary(done), file=sys.stderr, flush=True)
