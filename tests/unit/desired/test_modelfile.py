"""reconciler.desired.modelfile: Ollama's Modelfile grammar, typed parameters, clear errors."""

from __future__ import annotations

import pytest

from reconciler.desired.modelfile import (
    Modelfile,
    ModelfileError,
    is_local_path,
    local_files,
    parameters_from_show,
    parse,
    to_create_request,
)

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64


def error(text: str, **kwargs) -> ModelfileError:
    with pytest.raises(ModelfileError) as caught:
        parse(text, **kwargs)
    return caught.value


def test_a_full_modelfile():
    mf = parse(
        '''# Mario, from the Ollama docs
FROM llama3.2

# sets the temperature to 1 [higher is more creative]
PARAMETER temperature 1
PARAMETER num_ctx 4096
PARAMETER stop "<|start_header_id|>"
PARAMETER stop <|eot_id|>
PARAMETER use_mmap false
SYSTEM You are Mario from Super Mario Bros, acting as an assistant.
TEMPLATE """{{ if .System }}<|start_header_id|>system<|end_header_id|>

{{ .System }}<|eot_id|>{{ end }}"""
MESSAGE user Is Toronto in Canada?
MESSAGE assistant yes
LICENSE """MIT License
Copyright (c) Someone"""
LICENSE Apache-2.0
'''
    )
    assert mf.from_ == "llama3.2"
    assert mf.parameters == {
        "temperature": 1.0,
        "num_ctx": 4096,
        "stop": ["<|start_header_id|>", "<|eot_id|>"],
        "use_mmap": False,
    }
    assert isinstance(mf.parameters["temperature"], float)
    assert isinstance(mf.parameters["num_ctx"], int)
    assert mf.system == "You are Mario from Super Mario Bros, acting as an assistant."
    assert mf.template == (
        "{{ if .System }}<|start_header_id|>system<|end_header_id|>\n\n"
        "{{ .System }}<|eot_id|>{{ end }}"
    )
    assert mf.messages == [("user", "Is Toronto in Canada?"), ("assistant", "yes")]
    assert mf.license == ["MIT License\nCopyright (c) Someone", "Apache-2.0"]
    assert mf.lines["from"] == 2 and mf.lines["parameter:num_ctx"] == 6
    assert local_files(mf) == []

    assert to_create_request("mario", mf) == {
        "model": "mario",
        "from": "llama3.2",
        "template": mf.template,
        "system": mf.system,
        "license": ["MIT License\nCopyright (c) Someone", "Apache-2.0"],
        "parameters": {
            "temperature": 1.0,
            "num_ctx": 4096,
            "stop": ["<|start_header_id|>", "<|eot_id|>"],
            "use_mmap": False,
        },
        "messages": [
            {"role": "user", "content": "Is Toronto in Canada?"},
            {"role": "assistant", "content": "yes"},
        ],
    }


def test_grammar_details_follow_ollama():
    mf = parse(
        "\ufefffrom  llama3.1:8b  \r\n"  # BOM, CRLF, lower case, outer blanks
        "\tSyStEm   keep   inner   spaces  \r\n"
        '  system "later ones win # not a comment"\n'
        'TEMPLATE """\n{{ .Prompt }}\n"""\n'
        "parameter num_predict -1\n"
        "PARAMETER num_ctx 2048\n"
        "PARAMETER num_ctx 8192\n"  # the last one wins
        'PARAMETER stop ""\n'
        "PARAMETER top_p .9\n"
        "PARAMETER seed +42\n"
        'MESSAGE system "say ""hi"" now"\n'  # inner quotes: no escapes, kept
        'MESSAGE user """two\nlines"""\n'
    )
    assert mf.from_ == "llama3.1:8b"
    assert mf.system == "later ones win # not a comment"
    assert mf.template == "\n{{ .Prompt }}\n"
    assert mf.parameters == {
        "num_predict": -1,
        "num_ctx": 8192,
        "stop": [""],
        "top_p": 0.9,
        "seed": 42,
    }
    assert mf.messages == [("system", 'say ""hi"" now'), ("user", "two\nlines")]
    assert parse("FROM x\nSYSTEM  keep   inner  \n").system == "keep   inner"


def test_a_quoted_value_may_span_lines():
    mf = parse('FROM x\nSYSTEM "one\ntwo"\nPARAMETER temperature 0.5\n')
    assert mf.system == "one\ntwo"
    assert mf.parameters == {"temperature": 0.5}


def test_deprecated_parameters_are_dropped_with_a_warning():
    mf = parse("FROM x\nPARAMETER mirostat 2\nPARAMETER num_gpu 99\n")
    assert mf.parameters == {"num_gpu": 99}
    assert mf.warnings == ["line 2: parameter mirostat is deprecated; Ollama ignores it"]


def test_local_files_and_the_create_request():
    mf = parse(
        "FROM ./weights/model-Q4_K_M.gguf\n"
        "FROM ./weights/mmproj.gguf\n"
        "ADAPTER ./loras/style.gguf\n"
        "PARAMETER num_ctx 8192\n"
    )
    assert mf.from_ == "./weights/model-Q4_K_M.gguf"
    assert mf.also_from == ["./weights/mmproj.gguf"]
    assert local_files(mf) == [
        "./weights/model-Q4_K_M.gguf",
        "./weights/mmproj.gguf",
        "./loras/style.gguf",
    ]
    digests = {
        "./weights/model-Q4_K_M.gguf": D1,
        "./weights/mmproj.gguf": D2,
        "./loras/style.gguf": D1.replace("1", "3"),
    }
    assert to_create_request("vision:q4", mf, adapter_digests=digests) == {
        "model": "vision:q4",
        "files": {"model-Q4_K_M.gguf": D1, "mmproj.gguf": D2},
        "adapters": {"style.gguf": D1.replace("1", "3")},
        "parameters": {"num_ctx": 8192},
    }
    partial = {k: v for k, v in digests.items() if "lora" not in k}
    with pytest.raises(ValueError, match=r"no blob digest for local file '\./loras/style\.gguf'"):
        to_create_request("vision:q4", mf, adapter_digests=partial)


def test_what_counts_as_a_local_file():
    assert is_local_path("/models/x.gguf")
    assert is_local_path("./x")
    assert is_local_path("../x")
    assert is_local_path("~/x")
    assert is_local_path("weights/Model.GGUF")
    assert not is_local_path("llama3.1:8b")
    assert not is_local_path("hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M")
    assert not is_local_path("myuser/mymodel")


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("FORM llama3\n", 1, "unknown instruction 'FORM'; expected one of FROM, PARAMETER"),
        ("FROM x\n\n  RUN echo hi\n", 3, "unknown instruction 'RUN'"),
        ("FROM x\nFROM: y\n", 2, "unknown instruction 'FROM:'"),
        ("FROM x\n123 y\n", 2, "unknown instruction '123'"),
        ("FROM\n", 1, "FROM needs a model name or a file path"),
        ('FROM ""\n', 1, "FROM needs a model name or a file path"),
        ("FROM llama3 # base\n", 1, "FROM 'llama3 # base' is not a model name"),
        ("FROM x\nSYSTEM\n", 2, "SYSTEM needs a value"),
        ("FROM x\nSYSTEM   \n", 2, "SYSTEM needs a value"),
        ("FROM ./a.gguf\nFROM llama3\n", 2, "but 'llama3' names a model"),
        ("FROM x\nADAPTER\n", 2, "ADAPTER needs the path of an adapter file"),
        ("FROM x\nPARAMETER num_ctx\n", 2, "PARAMETER needs a name and a value"),
        ("FROM x\nPARAMETER\n", 2, "PARAMETER needs a name and a value"),
        ("FROM x\nPARAMETER num-ctx 5\n", 2, "PARAMETER needs a name and a value"),
        ("FROM x\nPARAMETER context 4096\n", 2, "unknown parameter 'context'"),
        ("FROM x\nPARAMETER num_ctx 4k\n", 2, "parameter num_ctx must be a whole number, not '4k'"),
        ("FROM x\nPARAMETER num_ctx 4096.0\n", 2, "must be a whole number"),
        ("FROM x\nPARAMETER temperature warm\n", 2, "temperature must be a number, not 'warm'"),
        ("FROM x\nPARAMETER temperature 1_0\n", 2, "temperature must be a number"),
        ("FROM x\nPARAMETER use_mmap maybe\n", 2, "use_mmap must be true or false, not 'maybe'"),
        ("FROM x\nMESSAGE tool hi\n", 2, "message role 'tool' is not one of system, user"),
        ("FROM x\nMESSAGE user\n", 2, "MESSAGE needs a name and a value"),
        (
            'FROM x\n\nTEMPLATE """{{ .Prompt }}\nPARAMETER num_ctx 5\n',
            3,
            'the triple-quoted value of TEMPLATE is never closed: end it with """',
        ),
        ('FROM x\nSYSTEM "hello\n', 2, "the quoted value of SYSTEM is never closed"),
        ("# only a comment\n", None, "no FROM line"),
        ("", None, "no FROM line"),
        ("FROM llama3\nFROM mistral\n", 2, "FROM appears again (first on line 1)"),
        (
            "FROM x\nADAPTER a/lora.gguf\nADAPTER b/lora.gguf\n",
            3,
            "'b/lora.gguf' and 'a/lora.gguf' have the same file name",
        ),
    ],
)
def test_errors_name_the_line(text, line, message):
    caught = error(text)
    assert caught.line == line
    assert message in caught.message


def test_error_text_names_the_file():
    caught = error("FROM x\nPARAMETER num_ctx big\n", source="models/mario/Modelfile")
    assert str(caught) == (
        "models/mario/Modelfile, line 2: parameter num_ctx must be a whole number, not 'big'"
    )
    assert str(error("SYSTEM hi\n")) == (
        "Modelfile: no FROM line: a Modelfile must name the model or file it builds on"
    )


def test_the_dataclass_defaults():
    mf = Modelfile(from_="x")
    assert to_create_request("y", mf) == {"model": "y", "from": "x"}
    assert local_files(mf) == []


def test_parameters_from_show():
    shown = (
        "num_ctx                        8192\n"
        'stop                           "<|start_header_id|>"\n'
        'stop                           "say \\"hi\\""\n'
        "temperature                    0.7\n"
        "mirostat                       1\n"
        "some_new_knob                  3\n"
    )
    assert parameters_from_show(shown) == {
        "num_ctx": 8192,
        "stop": ["<|start_header_id|>", 'say "hi"'],
        "temperature": 0.7,
        "some_new_knob": "3",
    }
    assert parameters_from_show("") == {}
