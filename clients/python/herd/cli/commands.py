"""Model commands as ``ollama`` has them: list, ps, show, cp, rm, stop, create.

Each is a client of the REST API at ``OLLAMA_HOST``; output follows ``ollama``'s tables.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path

from herd.cli.api import ApiError, Client


def human_bytes(n: int) -> str:
    """Decimal sizes as ``ollama list`` prints them: ``98 MB``, ``1.2 GB``."""
    for unit, size in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("KB", 10**3)):
        if n >= size:
            value = n / size
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
    return f"{n} B"


def _parse_time(text: str) -> datetime:
    # RFC3339 with up to nanoseconds; Python reads microseconds.
    head, _, rest = text.partition(".")
    if rest:
        digits = "".join(c for c in rest if c.isdigit())
        zone = rest[len(digits):]
        text = f"{head}.{digits[:6]}{zone}"
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def human_time(text: str, now: datetime | None = None) -> str:
    """``2 hours ago`` or ``4 minutes from now``, as go-humanize phrases it."""
    moment = _parse_time(text)
    now = now or datetime.now(timezone.utc)
    seconds = (now - moment).total_seconds()
    if moment.year > 2200:
        return "Forever"
    suffix = "ago" if seconds >= 0 else "from now"
    seconds = abs(seconds)
    for unit, size in (("year", 31536000), ("month", 2592000), ("week", 604800), ("day", 86400),
                       ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count > 1 else ''} {suffix}"
    return f"Less than a second {suffix}" if seconds < 1 else f"{int(seconds)} seconds {suffix}"


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("    ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)


def list_models(args: argparse.Namespace, client: Client) -> int:
    rows = [["NAME", "ID", "SIZE", "MODIFIED"]]
    for model in client.get("/api/tags")["models"]:
        # A remote model's size is its stub's few hundred bytes: ollama prints "-".
        size = "-" if model.get("remote_model") else human_bytes(model["size"])
        rows.append([model["name"], model["digest"][:12], size, human_time(model["modified_at"])])
    print(_table(rows))
    return 0


def ps(args: argparse.Namespace, client: Client) -> int:
    rows = [["NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL"]]
    for model in client.get("/api/ps")["models"]:
        share = model.get("size_vram", 0) / model["size"] if model["size"] else 0
        processor = "100% GPU" if share >= 1 else "100% CPU" if share == 0 else f"{1 - share:.0%}/{share:.0%} CPU/GPU"
        rows.append([model["name"], model["digest"][:12], human_bytes(model["size"]), processor,
                     str(model.get("context_length", "")), human_time(model["expires_at"])])
    print(_table(rows))
    return 0


def show(args: argparse.Namespace, client: Client) -> int:
    shown = client.post("/api/show", {"model": args.model, "verbose": args.verbose})
    for flag in ("license", "modelfile", "parameters", "system", "template"):
        if getattr(args, flag):
            print(shown.get(flag, ""))
            return 0
    info = shown.get("model_info", {})
    arch = info.get("general.architecture", "")
    details = shown.get("details", {})
    remote = [("Remote model", shown.get("remote_model", "")), ("Remote URL", shown["remote_host"])] \
        if shown.get("remote_host") else []
    rows = [
        *remote,
        ("architecture", arch),
        ("parameters", details.get("parameter_size", "")),
        ("context length", info.get(f"{arch}.context_length", "")),
        ("embedding length", info.get(f"{arch}.embedding_length", "")),
        ("quantization", details.get("quantization_level", "")),
    ]
    print("  Model")
    for key, value in rows:
        if value != "":
            print(f"    {key:<20}{value}")
    if shown.get("capabilities"):
        print("\n  Capabilities")
        for capability in shown["capabilities"]:
            print(f"    {capability}")
    if shown.get("parameters"):
        print("\n  Parameters")
        for line in shown["parameters"].splitlines():
            key, _, value = line.partition(" ")
            print(f"    {key:<20}{value.strip()}")
    if shown.get("system"):
        print("\n  System")
        print("    " + shown["system"].strip().replace("\n", "\n    "))
    if shown.get("license"):
        print("\n  License")
        print("    " + "\n    ".join(shown["license"].strip().splitlines()[:2]))
    return 0


def copy(args: argparse.Namespace, client: Client) -> int:
    client.post("/api/copy", {"source": args.source, "destination": args.destination})
    print(f"copied '{args.source}' to '{args.destination}'")
    return 0


def remove(args: argparse.Namespace, client: Client) -> int:
    for model in args.models:
        client.post("/api/delete", {"model": model}, method="DELETE")
        print(f"deleted '{model}'")
    return 0


def stop(args: argparse.Namespace, client: Client) -> int:
    client.post("/api/generate", {"model": args.model, "keep_alive": 0, "stream": False})
    return 0


def create(args: argparse.Namespace, client: Client) -> int:
    from herd.modelfile import ModelfileError, local_path_resolver, read_modelfile

    path = Path(args.file or "Modelfile")
    try:
        modelfile = read_modelfile(path)
        request, uploads = modelfile.to_create_request(args.model, local_path_resolver(path.parent.resolve()))
    except OSError as exc:
        raise ApiError(f"cannot read {path}: {exc.strerror}") from None
    except ModelfileError as exc:
        raise ApiError(str(exc)) from None
    # The local files, in the order their digests appear in the request.
    digests = [d for key in ("files", "adapters", "draft_files") for d in request.get(key, {}).values()]
    for digest, upload in zip(digests, uploads):
        print(f"gathering model components: {upload.name}", file=sys.stderr)
        client.upload_blob(digest, upload)
    if args.quantize:
        request["quantize"] = args.quantize
    for update in client.stream("/api/create", request):
        print(update["status"], file=sys.stderr)
    return 0


class ProgressPrinter:
    """Ollama-style progress: a status per line, and a bar per layer that redraws in place on a
    terminal (elsewhere each layer prints when it starts and when it is done)."""

    BAR_WIDTH = 25

    def __init__(self, out=sys.stderr):
        self.out = out
        self.live = out.isatty()
        self.bar = ""  # the status whose bar is on screen
        self.last = ""

    def update(self, line: dict) -> None:
        status, total = line.get("status", ""), line.get("total")
        if self.live and self.bar and self.bar != status:
            print(file=self.out)
            self.bar = ""
        if total:
            done = line.get("completed", 0)
            filled = self.BAR_WIDTH * done // total
            text = (f"{status}: {done * 100 // total:3d}% ▕{'█' * filled}{' ' * (self.BAR_WIDTH - filled)}▏ "
                    f"{human_bytes(done)}/{human_bytes(total)}")
            if self.live:
                print("\r" + text, end="", file=self.out, flush=True)
                self.bar = status
            elif status != self.last or done >= total:
                print(text, file=self.out, flush=True)
        elif status != self.last:
            print(status, file=self.out, flush=True)
        self.last = status


def transfer(client: Client, path: str, model: str, insecure: bool) -> None:
    """A pull or push (``path``), its progress printed as ``ollama`` prints it."""
    printer = ProgressPrinter()
    for line in client.stream(path, {"model": model, "insecure": insecure}):
        printer.update(line)


def pull(args: argparse.Namespace, client: Client) -> int:
    transfer(client, "/api/pull", args.model, args.insecure)
    return 0


def push(args: argparse.Namespace, client: Client) -> int:
    transfer(client, "/api/push", args.model, args.insecure)
    return 0


CONNECT_INSTRUCTIONS = "If your browser did not open, navigate to:\n    {url}\n\n"


def signin(args: argparse.Namespace, client: Client) -> int:
    """Whether the server's key is linked to an account; if not, the URL that links it."""
    try:
        user = client.post("/api/me", None)
    except ApiError as error:
        if error.status != 401:
            raise
        print("You need to be signed in to Ollama to run Cloud models.\n")
        if url := error.body.get("signin_url"):
            print(CONNECT_INSTRUCTIONS.format(url=url), end="")
        return 0
    if user and user.get("name"):
        print(f"You are already signed in as user '{user['name']}'\n")
    return 0


def signout(args: argparse.Namespace, client: Client) -> int:
    """Unlinks the server's key from its ollama.com account."""
    try:
        client.post("/api/signout", None)
    except ApiError as error:
        if error.status != 401:
            raise
        print("You are not signed in to ollama.com\n")
        return 0
    print("You have signed out of ollama.com\n")
    return 0


def add_commands(commands) -> None:
    """Adds the model commands to the ``herd`` argument parser."""
    list_parser = commands.add_parser("list", aliases=["ls"], help="list models")
    list_parser.set_defaults(func=list_models)
    commands.add_parser("ps", help="list running models").set_defaults(func=ps)
    show_parser = commands.add_parser("show", help="show information for a model")
    show_parser.add_argument("model")
    for flag in ("license", "modelfile", "parameters", "system", "template"):
        show_parser.add_argument(f"--{flag}", action="store_true", help=f"show the model's {flag}")
    show_parser.add_argument("-v", "--verbose", action="store_true", help="show detailed model information")
    show_parser.set_defaults(func=show)
    cp_parser = commands.add_parser("cp", help="copy a model")
    cp_parser.add_argument("source")
    cp_parser.add_argument("destination")
    cp_parser.set_defaults(func=copy)
    rm_parser = commands.add_parser("rm", help="remove a model")
    rm_parser.add_argument("models", nargs="+")
    rm_parser.set_defaults(func=remove)
    stop_parser = commands.add_parser("stop", help="stop a running model")
    stop_parser.add_argument("model")
    stop_parser.set_defaults(func=stop)
    create_parser = commands.add_parser("create", help="create a model from a Modelfile")
    create_parser.add_argument("model")
    create_parser.add_argument("-f", "--file", help="name of the Modelfile (default: Modelfile)")
    create_parser.add_argument("-q", "--quantize", help="quantize the model to this level (e.g. q4_K_M)")
    create_parser.set_defaults(func=create)
    commands.add_parser("signin", help="sign in to ollama.com").set_defaults(func=signin)
    commands.add_parser("signout", help="sign out from ollama.com").set_defaults(func=signout)
    for name, func in (("pull", pull), ("push", push)):
        transfer = commands.add_parser(name, help=f"{name} a model {'from' if name == 'pull' else 'to'} a registry")
        transfer.add_argument("model")
        transfer.add_argument("--insecure", action="store_true", help="use an insecure registry (plain http)")
        transfer.set_defaults(func=func)
