"""``herd run MODEL [PROMPT]``: one prompt, its streamed answer, as ``ollama run`` does without a terminal.

The prompt comes from the arguments, from stdin (put before them), or both. A model that is not
in the store is pulled first. With ``--verbose`` the timings follow on stderr in Ollama's words.
"""

from __future__ import annotations

import argparse
import json
import sys

from herd.cli.api import ApiError, Client
from herd.cli.chat import Chat, Session, summary
from herd.cli.commands import transfer
from herd.cli.wrap import WordWrap
from herd.durations import parse_go_duration

THINK_VALUES = ("true", "false", "high", "medium", "low", "max")


def show_or_pull(client: Client, model: str, insecure: bool) -> dict:
    """The model's /api/show answer, pulling it first when the store does not have it."""
    try:
        return client.post("/api/show", {"model": model})
    except ApiError as error:
        if error.status != 404:
            raise
    transfer(client, "/api/pull", model, insecure)
    return client.post("/api/show", {"model": model})


def _request(args: argparse.Namespace, prompt: str) -> dict:
    body: dict = {"model": args.model, "prompt": prompt}
    if args.format:
        # As Ollama's CLI: "json", or the text of a JSON Schema sent as JSON.
        body["format"] = args.format if args.format == "json" else json.loads(args.format)
    if args.keepalive:
        parse_go_duration(args.keepalive)  # Go's error for a bad value, before any request
        body["keep_alive"] = args.keepalive
    if args.think is not None:
        if args.think not in THINK_VALUES:
            raise ValueError(f'invalid value for --think: "{args.think}" (must be true, false, high, medium, low, or max)')
        body["think"] = {"true": True, "false": False}.get(args.think, args.think)
    return body


def run(args: argparse.Namespace, client: Client) -> int:
    parts = list(args.prompt)
    if not sys.stdin.isatty():
        piped = sys.stdin.read()
        if piped:
            parts.insert(0, piped)
    try:
        body = _request(args, " ".join(parts))
    except ValueError as error:
        print(f"Error: {error}", file=sys.stderr)
        return 1
    show_or_pull(client, args.model, args.insecure)
    if not parts and sys.stdin.isatty() and sys.stdout.isatty():
        return interactive(args, body, client)
    out = WordWrap.for_terminal(sys.stdout, enabled=not args.nowordwrap)
    thinking_open = False
    done: dict = {}
    for chunk in client.stream("/api/generate", body):
        if chunk.get("thinking") and not args.hidethinking:
            if not thinking_open:
                out.write("Thinking...\n")
                thinking_open = True
            out.write(chunk["thinking"])
        if chunk.get("response"):
            if thinking_open:
                out.write("\n...done thinking.\n\n")
                thinking_open = False
            out.write(chunk["response"])
        out.flush()
        if chunk.get("done"):
            done = chunk
    if body["prompt"]:
        out.write("\n\n")
        out.flush()
    if args.verbose and done:
        print(summary(done), file=sys.stderr)
    return 0


def bare_flags_as_true(argv: list[str]) -> list[str]:
    """``--think`` alone means ``--think=true``: as with cobra, a value needs ``=``, so the next word stays prompt."""
    return ["--think=true" if word == "--think" else word for word in argv]


def interactive(args: argparse.Namespace, body: dict, client: Client) -> int:
    client.post("/api/generate", {k: v for k, v in body.items() if k in ("model", "keep_alive")})  # load it now
    session = Session(model=args.model, verbose=args.verbose, format=body.get("format", ""), think=body.get("think"),
                      hide_thinking=args.hidethinking, keep_alive=body.get("keep_alive"),
                      word_wrap=not args.nowordwrap)
    return Chat(session, client).loop()


def add_run_command(commands) -> None:
    parser = commands.add_parser("run", help="run a model on a prompt")
    parser.add_argument("model")
    parser.add_argument("prompt", nargs="*", help="the prompt (stdin, when piped, comes first)")
    parser.add_argument("--verbose", action="store_true", help="show timings for the response")
    parser.add_argument("--format", help='response format (e.g. "json")')
    parser.add_argument("--keepalive", help="how long the model stays loaded (e.g. 5m)")
    parser.add_argument("--think", help="think before answering: true, false, high, medium, low or max")
    parser.add_argument("--hidethinking", action="store_true", help="leave the thinking out of the output")
    parser.add_argument("--nowordwrap", action="store_true", help="do not wrap words at the terminal's edge")
    parser.add_argument("--insecure", action="store_true", help="use an insecure registry when pulling")
    parser.set_defaults(func=run)
