"""The Modelfile parser of ``herd create``, checked against the cases of Ollama's ``parser/parser_test.go``."""

import hashlib
import json
from pathlib import Path

import pytest

from herd.modelfile import (
    Command,
    DeprecatedParameterWarning,
    Modelfile,
    ModelfileError,
    file_digest,
    local_path_resolver,
    parse_modelfile,
    read_modelfile,
    typed_parameters,
)

INVALID_COMMAND = (
    'command must be one of "from", "license", "template", "system", "adapter", "draft", "renderer", "parser", '
    '"parameter", "message", or "requires"'
)
LLAMA3_TEMPLATE = (
    "{{ if .System }}<|start_header_id|>system<|end_header_id|>\n\n{{ .System }}<|eot_id|>{{ end }}"
    "{{ if .Prompt }}<|start_header_id|>user<|end_header_id|>\n\n{{ .Prompt }}<|eot_id|>{{ end }}"
    "<|start_header_id|>assistant<|end_header_id|>\n\n{{ .Response }}<|eot_id|>"
)


def FROM(value: str) -> Command:
    return Command("from", value)


def PARAM(name: str, value: str) -> Command:
    return Command("parameter", value, name)


def MSG(role: str, content: str) -> Command:
    return Command("message", content, role)


def no_model_files(argument: str) -> None:
    return None


@pytest.mark.parametrize(
    "text, commands",
    [
        pytest.param(
            f'\nFROM model1\nADAPTER adapter1\nLICENSE MIT\nPARAMETER param1 value1\nPARAMETER param2 value2\n'
            f'TEMPLATE """{LLAMA3_TEMPLATE}"""    \n',
            [FROM("model1"), Command("adapter", "adapter1"), Command("license", "MIT"), PARAM("param1", "value1"),
             PARAM("param2", "value2"), Command("template", LLAMA3_TEMPLATE)],
            id="every-command",
        ),
        pytest.param(
            'FROM "     model 1"\nADAPTER      adapter3\nLICENSE "MIT       "\nPARAMETER param1        value1\n'
            'TEMPLATE """   {{ .Prompt }}   """    \n',
            [FROM("     model 1"), Command("adapter", "adapter3"), Command("license", "MIT       "),
             PARAM("param1", "value1"), Command("template", "   {{ .Prompt }}   ")],
            id="quotes-keep-spaces-bare-values-are-trimmed",
        ),
        pytest.param('FROM "FOO  BAR  "', [FROM("FOO  BAR  ")], id="from-quoted"),
        pytest.param("FROM     FOOO BAR    ", [FROM("FOOO BAR")], id="from-spaces-inside"),
        pytest.param("FROM /what/is/the path ", [FROM("/what/is/the path")], id="from-path"),
        pytest.param("FROM llama3:7b-instruct-q4_K_M", [FROM("llama3:7b-instruct-q4_K_M")], id="from-tag"),
        pytest.param("PARAMETER param1 value1\nFROM foo", [PARAM("param1", "value1"), FROM("foo")], id="from-last"),
        pytest.param(
            "PARAMETER what the \nFROM lemons make lemonade ",
            [PARAM("what", "the"), FROM("lemons make lemonade")],
            id="trailing-spaces",
        ),
        pytest.param("from foo\nSyStEm hi\nparameter Seed 1", [FROM("foo"), Command("system", "hi"),
                                                             PARAM("Seed", "1")], id="commands-case-insensitive"),
        pytest.param("\n# comment\nFROM foo\n\t# indented comment\n\t", [FROM("foo")], id="comments"),
        pytest.param("FROM foo # not a comment", [FROM("foo # not a comment")], id="hash-inside-a-value"),
        pytest.param("\ufeffFROM foo\n", [FROM("foo")], id="bom"),
        pytest.param("FROM foo\r\nSYSTEM hi\r\n", [FROM("foo"), Command("system", "hi")], id="crlf"),
        pytest.param("FROM test\n\tSYSTEM 你好👋", [FROM("test"), Command("system", "你好👋")], id="multibyte"),
        pytest.param("FROM foo\nRENDERER r1\nPARSER p1\nDRAFT ./assistant\nREQUIRES 0.14.0",
                     [FROM("foo"), Command("renderer", "r1"), Command("parser", "p1"), Command("draft", "./assistant"),
                      Command("requires", "0.14.0")], id="renderer-parser-draft-requires"),
        pytest.param(
            "FROM foo\nMESSAGE system You are a file parser. Always parse things.\nMESSAGE user Hey there!\n"
            "MESSAGE assistant Hello, I want to parse all the things!",
            [FROM("foo"), MSG("system", "You are a file parser. Always parse things."), MSG("user", "Hey there!"),
             MSG("assistant", "Hello, I want to parse all the things!")],
            id="messages",
        ),
        pytest.param('FROM foo\nMESSAGE system """\nYou are a multiline file parser.\n"""\n\t\t\t',
                     [FROM("foo"), MSG("system", "\nYou are a multiline file parser.\n")], id="message-multiline"),
        pytest.param('FROM foo\nSYSTEM """\nThis is a\nmultiline system.\n"""\n\t\t\t',
                     [FROM("foo"), Command("system", "\nThis is a\nmultiline system.\n")], id="triple-quoted"),
        pytest.param('FROM foo\nSYSTEM """This is a\nmultiline system."""',
                     [FROM("foo"), Command("system", "This is a\nmultiline system.")], id="triple-quoted-tight"),
        pytest.param('FROM foo\nSYSTEM "This is\ntwo lines"',
                     [FROM("foo"), Command("system", "This is\ntwo lines")], id="double-quoted-multiline"),
        pytest.param('FROM foo\nSYSTEM """\nThis is a multiline system with "quotes".\n"""\n',
                     [FROM("foo"), Command("system", '\nThis is a multiline system with "quotes".\n')],
                     id="quotes-inside-triple-quotes"),
        pytest.param('FROM foo\nSYSTEM """"""\n', [FROM("foo"), Command("system", "")], id="empty-triple"),
        pytest.param('FROM foo\nSYSTEM ""\n', [FROM("foo"), Command("system", "")], id="empty-double"),
        pytest.param('FROM foo\nSYSTEM "\'"\n', [FROM("foo"), Command("system", "'")], id="single-quote-inside"),
        pytest.param('FROM foo\nSYSTEM """\'\'"\'""\'""\'"\'\'\'\'\'""\'""\'"""\n',
                     [FROM("foo"), Command("system", '\'\'"\'""\'""\'"\'\'\'\'\'""\'""\'')], id="quote-soup"),
        pytest.param('FROM foo\nTEMPLATE """\n{{ .Prompt }}\n"""', [FROM("foo"), Command("template", "\n{{ .Prompt }}\n")],
                     id="triple-quoted-at-eof"),
        pytest.param("FROM foo\nLICENSE MIT\nLICENSE Apache-2.0",
                     [FROM("foo"), Command("license", "MIT"), Command("license", "Apache-2.0")], id="license-repeats"),
    ],
)
def test_parses_as_ollama_does(text: str, commands: list[Command]) -> None:
    assert parse_modelfile(text).commands == commands


@pytest.mark.parametrize(
    "value, expected",
    [("### User:", "### User:"), ("### User: ", "### User:"), ('"### User:"', "### User:"),
     ('"### User: "', "### User: "), ('"""### User:"""', "### User:"), ('"""### User:\n"""', "### User:\n"),
     ("<|endoftext|>", "<|endoftext|>"), ("</s>", "</s>")],
)
def test_stop_values(value: str, expected: str) -> None:
    assert parse_modelfile(f"FROM foo\nPARAMETER stop {value}\n").commands[1] == PARAM("stop", expected)


@pytest.mark.parametrize(
    "text, message",
    [
        pytest.param("", "no FROM line", id="empty"),
        pytest.param("PARAMETER param1 value1", "no FROM line", id="no-from"),
        pytest.param("# FROM foo\n", "no FROM line", id="from-in-a-comment"),
        pytest.param("\nFROM foo\nBADCOMMAND param1 value1\n", f"(line 3): {INVALID_COMMAND}", id="bad-command"),
        pytest.param("FROM foo\nFROM\n", f"(line 3): {INVALID_COMMAND}", id="command-without-value"),
        pytest.param("FROM foo\nSYSTEM: hi\n", f"(line 2): {INVALID_COMMAND}", id="punctuation-in-command"),
        pytest.param("\nFROM foo\nMESSAGE badguy I'm a bad guy!\n",
                     '(line 3): message role must be one of "system", "user", or "assistant"', id="bad-role"),
        pytest.param("FROM foo\r\nFROM foo\r\nBAD x\r\n", f"(line 3): {INVALID_COMMAND}", id="crlf-line-number"),
        pytest.param("\nFROM foo\nPARAMETER param1\n", "unexpected EOF: param1", id="parameter-without-value"),
        pytest.param("\nFROM foo\nMESSAGE system\n", "unexpected EOF: system", id="message-without-text"),
        pytest.param("\nFROM foo\nMESSAGE system", "unexpected EOF", id="message-at-eof"),
        pytest.param('\nFROM foo\nSYSTEM """This is a multiline system.""\n\t\t\t', "unexpected EOF",
                     id="unterminated-triple-quote"),
        pytest.param('\nFROM foo\nSYSTEM "\n\t\t\t', "unexpected EOF", id="unterminated-quote"),
        pytest.param("FROM", "unexpected EOF", id="command-at-eof"),
    ],
)
def test_refused_with_ollamas_message(text: str, message: str) -> None:
    with pytest.raises(ModelfileError) as error:
        parse_modelfile(text)
    assert str(error.value) == message


def test_utf16_files_are_read_by_their_byte_order_mark(tmp_path: Path) -> None:
    text = "FROM bob\nPARAMETER param1 1\nSYSTEM You are a utf16 file 👋.\n"
    expected = [FROM("bob"), PARAM("param1", "1"), Command("system", "You are a utf16 file 👋.")]
    for encoding, bom in (("utf-16-le", b"\xff\xfe"), ("utf-16-be", b"\xfe\xff"), ("utf-8", b"\xef\xbb\xbf")):
        path = tmp_path / f"Modelfile.{encoding}"
        path.write_bytes(bom + text.encode(encoding))
        assert read_modelfile(path).commands == expected


@pytest.mark.parametrize(
    "text",
    [
        "FROM foo\nADAPTER adapter1\nLICENSE MIT\nPARAMETER param1 value1\nTEMPLATE template1\n"
        "MESSAGE system You are a file parser. Always parse things.\nMESSAGE user Hey there!\n",
        'FROM foo\nMESSAGE system """\nYou are a store greeter. Always respond with "Hello!".\n"""\n'
        "MESSAGE assistant Hello, I want to parse all the things!\n",
        'FROM foo\nLICENSE """\nVery long and boring legal text.\n"Oh look, a quote!"\n"""\n\nPARAMETER param1 value1\n',
        'FROM foo\nSYSTEM ""\n',
        'FROM "  spaced  "\nSYSTEM """"quoted" as a whole"""\nPARAMETER stop "<end> "\nPARAMETER stop """"\nSTOP"""\n',
        'FROM foo\nSYSTEM """ends with a quote: \n"hi\""""\n',
    ],
)
def test_round_trip(text: str) -> None:
    modelfile = parse_modelfile(text)
    assert parse_modelfile(str(modelfile)) == modelfile


def test_renders_in_ollamas_format() -> None:
    modelfile = parse_modelfile(
        'from foo\nparameter stop "### User: "\nmessage user Hi!\nsystem """\nBe "nice".\n"""\nlicense MIT\n'
    )
    assert str(modelfile) == (
        'FROM foo\nPARAMETER stop "### User: "\nMESSAGE user Hi!\nSYSTEM """\nBe "nice".\n"""\nLICENSE MIT\n'
    )


# --- parameters -------------------------------------------------------------------------------------------


def test_parameters_are_typed_as_ollama_types_them() -> None:
    text = (
        "FROM foo\nPARAMETER num_ctx 4096\nPARAMETER seed -1\nPARAMETER temperature 0.5\nPARAMETER top_p .9\n"
        "PARAMETER min_p 0.123456789\nPARAMETER use_mmap false\nPARAMETER main_gpu 0\nPARAMETER stop <|eot_id|>\n"
        "PARAMETER stop </s>\nPARAMETER repeat_penalty 1e0\nPARAMETER top_k 40\nPARAMETER top_k 20\n"
    )
    parameters = parse_modelfile(text).parameters()
    assert json.dumps(parameters, sort_keys=True) == json.dumps({
        "num_ctx": 4096, "seed": -1, "temperature": 0.5, "top_p": 0.9,
        # sent as the float32 Ollama sends, with its shortest digits
        "min_p": 0.12345679,
        "use_mmap": False, "main_gpu": 0, "stop": ["<|eot_id|>", "</s>"], "repeat_penalty": 1.0, "top_k": 20,
    }, sort_keys=True)


@pytest.mark.parametrize("value", ["1", "t", "T", "TRUE", "true", "True"])
def test_go_booleans(value: str) -> None:
    assert typed_parameters([("use_mmap", value)]) == {"use_mmap": True}


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("num_ctx", "4k", "invalid int value [4k]"),
        ("num_ctx", "1.0", "invalid int value [1.0]"),
        ("seed", "1_000", "invalid int value [1_000]"),
        ("seed", "9223372036854775808", "invalid int value [9223372036854775808]"),
        ("temperature", "hot", "invalid float value [hot]"),
        ("temperature", "1e39", "invalid float value [1e39]"),
        ("temperature", "nan", "invalid float value [nan]"),
        ("use_mmap", "yes", "invalid bool value [yes]"),
        ("numa", "true", "unknown parameter 'numa'"),
        ("Temperature", "0.5", "unknown parameter 'Temperature'"),
        ("template", "x", "unknown parameter 'template'"),
    ],
)
def test_bad_parameters(name: str, value: str, message: str) -> None:
    modelfile = Modelfile([FROM("foo"), PARAM(name, value)])
    with pytest.raises(ModelfileError) as error:
        modelfile.to_create_request("m", no_model_files)
    assert str(error.value) == message


def test_deprecated_parameters_warn_and_are_left_out() -> None:
    modelfile = parse_modelfile("FROM foo\nPARAMETER mirostat 2\nPARAMETER penalize_newline true\nPARAMETER seed 3\n")
    with pytest.warns(DeprecatedParameterWarning) as warned:
        request, _ = modelfile.to_create_request("m", no_model_files)
    assert [str(w.message) for w in warned] == [
        "parameter mirostat is deprecated", "parameter penalize_newline is deprecated"]
    assert request["parameters"] == {"seed": 3}


# --- the create request -----------------------------------------------------------------------------------


def test_create_request_from_a_model_name() -> None:
    modelfile = parse_modelfile(
        "FROM test\nPARAMETER temperature 0.5\nPARAMETER top_k 1\nSYSTEM You are a bot.\nTEMPLATE {{ .Prompt }}\n"
        "LICENSE license1\nLICENSE license2\nMESSAGE user Hello there!\nMESSAGE assistant Hi! How are you?\n"
        "RENDERER qwen3\nPARSER qwen3\nREQUIRES v0.14.0\n"
    )
    request, uploads = modelfile.to_create_request("my-bot", no_model_files)
    assert request == {
        "model": "my-bot",
        "from": "test",
        "system": "You are a bot.",
        "template": "{{ .Prompt }}",
        "license": ["license1", "license2"],
        "parameters": {"temperature": 0.5, "top_k": 1},
        "messages": [{"role": "user", "content": "Hello there!"}, {"role": "assistant", "content": "Hi! How are you?"}],
        "renderer": "qwen3",
        "parser": "qwen3",
        "requires": "0.14.0",
    }
    assert uploads == []


def test_create_request_leaves_out_what_the_modelfile_leaves_empty() -> None:
    request, _ = parse_modelfile('FROM test\nSYSTEM ""\n').to_create_request("m", no_model_files)
    assert request == {"model": "m", "from": "test"}


def test_from_a_local_gguf_lists_it_by_digest(tmp_path: Path) -> None:
    weights = b"GGUF\x03\x00\x00\x00 any bytes will do"
    (tmp_path / "tiny.gguf").write_bytes(weights)
    (tmp_path / "lora.gguf").write_bytes(b"adapter bytes")
    modelfile = parse_modelfile("FROM ./tiny.gguf\nADAPTER lora.gguf\n")
    request, uploads = modelfile.to_create_request("tiny", local_path_resolver(tmp_path))
    digest = "sha256:" + hashlib.sha256(weights).hexdigest()
    assert request == {
        "model": "tiny",
        "files": {"tiny.gguf": digest},
        "adapters": {"lora.gguf": "sha256:" + hashlib.sha256(b"adapter bytes").hexdigest()},
    }
    assert uploads == [tmp_path / "tiny.gguf", tmp_path / "lora.gguf"]
    assert file_digest(uploads[0]) == digest


def test_model_names_are_not_mistaken_for_paths(tmp_path: Path) -> None:
    request, uploads = parse_modelfile("FROM llama3.2:1b\n").to_create_request("m", local_path_resolver(tmp_path))
    assert request == {"model": "m", "from": "llama3.2:1b"}
    assert uploads == []


def test_from_home_and_absolute_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "home.gguf").write_bytes(b"h")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    resolve = local_path_resolver(elsewhere)
    assert resolve("~/home.gguf") == str(tmp_path / "home.gguf")
    assert resolve(str(tmp_path / "home.gguf")) == str(tmp_path / "home.gguf")
    assert resolve("home.gguf") is None


def test_from_a_model_folder_sends_its_files_by_relative_name(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    (folder / "2_Dense").mkdir(parents=True)
    for name in ("model.safetensors", "config.json", "tokenizer.json", "2_Dense/model.safetensors", "README.md"):
        (folder / name).write_bytes(name.encode())
    request, uploads = parse_modelfile("FROM .\n").to_create_request("m", local_path_resolver(folder))
    assert sorted(request["files"]) == ["2_Dense/model.safetensors", "config.json", "model.safetensors",
                                        "tokenizer.json"]
    assert request["files"]["config.json"] == "sha256:" + hashlib.sha256(b"config.json").hexdigest()
    assert [file_digest(path) for path in uploads] == list(request["files"].values())


def test_a_folder_without_weights_is_refused(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("nothing to see")
    with pytest.raises(ModelfileError, match="^no Modelfile or safetensors files found$"):
        parse_modelfile("FROM .\n").to_create_request("m", local_path_resolver(tmp_path))


def test_a_missing_adapter_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelfileError, match="^ADAPTER missing.gguf: no such file or directory$"):
        parse_modelfile("FROM foo\nADAPTER missing.gguf\n").to_create_request("m", local_path_resolver(tmp_path))


def test_draft_may_not_be_the_model_itself(tmp_path: Path) -> None:
    (tmp_path / "model.gguf").write_bytes(b"model")
    modelfile = parse_modelfile("FROM ./model.gguf\nDRAFT ./model.gguf\n")
    with pytest.raises(ModelfileError, match="DRAFT must not reference the same local path as FROM"):
        modelfile.to_create_request("m", local_path_resolver(tmp_path))


@pytest.mark.parametrize(
    "value, sent", [("0.14.0", "0.14.0"), ("v0.14.0", "0.14.0"), ("0.14", "0.14"), ("1.2.3-rc.1+build.5", "1.2.3-rc.1+build.5")]
)
def test_requires_accepts_semver_as_go_does(value: str, sent: str) -> None:
    request, _ = Modelfile([FROM("foo"), Command("requires", value)]).to_create_request("m", no_model_files)
    assert request["requires"] == sent


@pytest.mark.parametrize("value", ["x.y.z", "0.14.0.1", "01.2.3", "1.2-rc1", "1.2.3-01", "vv1.0.0", ""])
def test_requires_must_be_semver(value: str) -> None:
    modelfile = Modelfile([FROM("foo"), Command("requires", value)])
    with pytest.raises(ModelfileError, match=r"^requires must be a valid semver \(e\.g\. 0\.14\.0\)$"):
        modelfile.to_create_request("m", no_model_files)
