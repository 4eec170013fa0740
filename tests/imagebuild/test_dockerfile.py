"""Dockerfile front end: parsing, variable expansion and the config-only instructions."""

from __future__ import annotations

import pytest

from mpkit.errors import DockerfileError
from mpkit.imagebuild.dockerfile import (
    Instruction,
    NeedsEngineError,
    parse_dockerfile,
    parse_duration,
)
from mpkit.imagebuild.shellwords import expand, expand_words
from mpkit.imagebuild.stage import ImageConfig, StageEvaluator


def instructions(text: str) -> list[Instruction]:
    return parse_dockerfile(text).final_stage.instructions


def evaluate(text: str, **kwargs: object) -> StageEvaluator:
    dockerfile = parse_dockerfile(text)
    evaluator = StageEvaluator(dockerfile, **kwargs)  # type: ignore[arg-type]
    for instr in dockerfile.final_stage.instructions:
        evaluator.apply(instr)
    return evaluator


# --------------------------------------------------------------------------- parsing


def test_lines_comments_and_continuations() -> None:
    text = (
        "# leading comment\n"  # 1
        "\n"  # 2
        "FROM debian:12\n"  # 3
        "RUN apt-get update && \\\n"  # 4
        "    # a comment inside the continuation is dropped\n"  # 5
        "\n"  # 6  (an empty continuation line is allowed)
        "    apt-get install -y curl\n"  # 7
        "  copy  app.py   /app/\n"  # 8  (keywords are case-insensitive)
        'CMD ["python", "/app/app.py"]\n'  # 9
    )
    dockerfile = parse_dockerfile(text)
    stage = dockerfile.final_stage
    assert (stage.base, stage.line) == ("debian:12", 3)
    run, copy, cmd = stage.instructions
    assert (run.line, run.end_line, run.keyword) == (4, 7, "RUN")
    assert run.args == ["apt-get update &&     apt-get install -y curl"]
    assert not run.json_form
    assert (copy.line, copy.keyword, copy.args) == (8, "COPY", ["app.py", "/app/"])
    assert (cmd.line, cmd.args, cmd.json_form) == (9, ["python", "/app/app.py"], True)


def test_continuation_indentation_is_kept_like_buildkit() -> None:
    # buildkit parser/testfiles/continueIndent
    text = (
        "FROM ubuntu:14.04\n"
        "RUN echo hello\\\n  world\\\n  goodnight  \\\n  moon\\\n  light\\\nning\n"
        "RUN echo hello  \\  \nworld\n"
        "RUN echo hi \\\n \\\n world \\\n\\\n good\\\n\\\nnight\n"
        "RUN echo hello \\\n# this is a comment\n\n# another\n\nthis is some more useful stuff\n"
    )
    runs = [i.args[0] for i in instructions(text)]
    assert runs == [
        "echo hello  world  goodnight    moon  lightning",
        "echo hello  world",
        "echo hi   world  goodnight",
        "echo hello this is some more useful stuff",
    ]


def test_continuation_at_end_of_file() -> None:
    (env,) = instructions("FROM a\nENV A=1 \\\n    B=2 \\\n")
    assert env.args == ["A=1", "B=2"]


def test_escape_directive_and_syntax_directive() -> None:
    text = (
        "# syntax=docker/dockerfile:1\n"
        "# escape=`\n"
        "FROM mcr.microsoft.com/windows\n"
        "COPY testfile.txt c:\\\n"
        "RUN dir c:\\ `\n"
        "    && echo done\n"
    )
    dockerfile = parse_dockerfile(text)
    assert dockerfile.escape == "`"
    copy, run = dockerfile.final_stage.instructions
    assert copy.args == ["testfile.txt", "c:\\"]
    assert (run.line, run.args) == (5, ["dir c:\\     && echo done"])


def test_directive_after_a_comment_is_just_a_comment() -> None:
    # buildkit parser/testfiles/escape-after-comment
    text = "# Comment here.\n# escape = `\n\nFROM image\nENV GOPATH \\\n\\go"
    dockerfile = parse_dockerfile(text)
    assert dockerfile.escape == "\\"
    assert dockerfile.final_stage.instructions[0].args == ["GOPATH=\\go"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("# escape=x\nFROM a\n", "invalid escape token"),
        ("# escape=`\n# escape=\\\nFROM a\n", "only one escape parser directive"),
    ],
)
def test_bad_directives(text: str, message: str) -> None:
    with pytest.raises(DockerfileError, match=message):
        parse_dockerfile(text)


def test_byte_order_mark_and_crlf() -> None:
    dockerfile = parse_dockerfile("\ufeffFROM a\r\nCOPY x \\\r\n  /y/\r\n")
    (copy,) = dockerfile.final_stage.instructions
    assert copy.args == ["x", "/y/"]


def test_json_and_shell_forms() -> None:
    cmd, entrypoint, run, copy, bad_json, volume = instructions(
        "FROM a\n"
        'CMD ["echo", "hi there"]\n'
        "ENTRYPOINT /bin/run --flag\n"
        'RUN [ "sh", "-c", "echo $HOME" ]\n'
        'COPY ["my file.txt", "/dest dir/"]\n'
        "CMD [abc\n"
        'VOLUME ["/data", "/logs"]\n'
    )
    assert (cmd.args, cmd.json_form) == (["echo", "hi there"], True)
    assert (entrypoint.args, entrypoint.json_form) == (["/bin/run --flag"], False)
    assert (run.args, run.json_form) == (["sh", "-c", "echo $HOME"], True)
    assert (copy.args, copy.json_form) == (["my file.txt", "/dest dir/"], True)
    assert (bad_json.args, bad_json.json_form) == (["[abc"], False)  # not JSON → shell form
    assert volume.args == ["/data", "/logs"]


def test_json_array_of_non_strings_is_an_error() -> None:
    # buildkit parser/testfiles-negative/shykes-nested-json
    with pytest.raises(DockerfileError, match=r"line 2: .*strings only"):
        parse_dockerfile('FROM a\nCMD [ "echo", [ "nested json" ] ]\n')


def test_env_and_label_forms() -> None:
    env1, env2, env3, env4, label = instructions(
        "FROM a\n"
        'ENV A=1 B="two words" C=a\\ b\n'
        "ENV LEGACY value with  spaces\n"
        "ENV D='single $quoted' E=\"x'y\"\n"
        'ENV name=value \\\n    name2="value2a \\\n           value2b"\n'
        'LABEL "com.example.vendor"="ACME Inc" version=1.0 empty=\n'
    )
    assert env1.pairs() == [("A", "1"), ("B", '"two words"'), ("C", "a\\ b")]
    assert env2.pairs() == [("LEGACY", "value with  spaces")]
    assert env3.pairs() == [("D", "'single $quoted'"), ("E", '"x\'y"')]
    assert env4.pairs() == [("name", "value"), ("name2", '"value2a            value2b"')]
    assert label.pairs() == [
        ('"com.example.vendor"', '"ACME Inc"'),
        ("version", "1.0"),
        ("empty", ""),
    ]


def test_flags() -> None:
    copy, add, run, frm_stage_health = instructions(
        "FROM a\n"
        "COPY --chown=app:app --chmod=0644 --link --exclude=*.pyc --exclude=tests src /app/\n"
        "ADD --unpack=false --chown='1000' x.tgz /opt/\n"
        "RUN --mount=type=cache,target=/root/.cache --network=none pip install x\n"
        "HEALTHCHECK --interval=30s --timeout=5s --retries=3 CMD curl -f http://localhost/\n"
    )
    assert copy.flags == {"chown": "app:app", "chmod": "0644", "link": "true", "exclude": "tests"}
    assert copy.flag_values("exclude") == ["*.pyc", "tests"]
    assert copy.args == ["src", "/app/"]
    assert add.flags == {"unpack": "false", "chown": "1000"}
    assert run.flags == {"mount": "type=cache,target=/root/.cache", "network": "none"}
    assert run.args == ["pip install x"]
    assert frm_stage_health.flags == {"interval": "30s", "timeout": "5s", "retries": "3"}
    assert frm_stage_health.args == ["CMD", "curl -f http://localhost/"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("COPY --user=root a /b", "unknown flag for COPY: --user"),
        ("COPY --chown a /b", "missing a value on flag: --chown"),
        ("COPY --chown=a --chown=b x /y", "duplicate flag specified: --chown"),
        ("COPY --link= a /b", "missing a value on flag: --link"),
        ("COPY --link=maybe a /b", "expecting a boolean value"),
        ("ENV --x=1 A=b", "unknown flag for ENV"),
        ("COPY only-one-arg", "COPY needs at least two arguments"),
        ("ADD", "ADD needs at least two arguments"),
        ("ENV", "ENV needs at least one argument"),
        ("ENV A", "ENV needs a value"),
        ("ENV A=1 B", "can't find = in 'B'"),
        ("LABEL =x", "LABEL names can not be blank"),
        ("ARG =x", "ARG names can not be blank"),
        ("WORKDIR", "WORKDIR needs exactly one argument"),
        ("SHELL /bin/bash -c", "SHELL needs the JSON array form"),
        ("HEALTHCHECK NONE x", "HEALTHCHECK NONE takes no arguments"),
        ("HEALTHCHECK CMD", "missing command after HEALTHCHECK CMD"),
        ("HEALTHCHECK CONNECT TCP 7000", "unknown type 'CONNECT'"),
        ("HEALTHCHECK --interval=1x CMD true", "invalid duration"),
        ("HEALTHCHECK --retries=-1 CMD true", "cannot be negative"),
        ("FLY away", "unknown instruction: FLY"),
        ("ONBUILD ONBUILD RUN x", "ONBUILD isn't allowed as an ONBUILD trigger"),
    ],
)
def test_instruction_errors_name_the_line(line: str, message: str) -> None:
    with pytest.raises(DockerfileError, match=message) as caught:
        parse_dockerfile(f"FROM a\n\n{line}\n")
    assert caught.value.line == 3
    assert caught.value.message.startswith("Dockerfile line 3: ")
    assert caught.value.to_dict()["line"] == 3


def test_error_message_format() -> None:
    with pytest.raises(DockerfileError) as caught:
        parse_dockerfile("FROM a\nCOPY app\n", path="proj/Dockerfile")
    error = caught.value
    assert error.message == (
        "proj/Dockerfile line 2: COPY needs at least two arguments (source and destination)"
    )
    assert error.hint and "COPY SOURCE... DESTINATION" in error.hint
    assert error.code == "dockerfile"


@pytest.mark.parametrize(
    "text",
    [
        "FROM a\nRUN <<EOF\necho hi\nEOF\n",
        "FROM a\nCOPY <<-EOT /etc/x.conf\n\tx\nEOT\n",
        "FROM a\nRUN cat << 'END' > /f\nx\nEND\n",
    ],
)
def test_heredocs_need_the_engine(text: str) -> None:
    with pytest.raises(NeedsEngineError, match="not supported natively") as caught:
        parse_dockerfile(text)
    assert caught.value.line == 2
    assert caught.value.feature == "heredoc"
    assert caught.value.hint and "--engine" in caught.value.hint


def test_shift_operator_is_not_a_heredoc() -> None:
    (run,) = instructions('FROM a\nRUN echo $((1<<3)) "<<x"\n')
    assert run.args == ['echo $((1<<3)) "<<x"']


@pytest.mark.parametrize(
    ("text", "message", "line"),
    [
        ("", "the file has no instructions", None),
        ("# only\n# comments\n", "the file has no instructions", None),
        ("ARG A=1\n", "no FROM instruction", None),
        ("ARG A=1\nENV B=2\nFROM a\n", "ENV comes before the first FROM", 2),
        ("FROM a b\n", "FROM takes either one argument", 1),
        ("FROM a AS 1stage\n", "invalid build stage name", 1),
    ],
)
def test_file_level_errors(text: str, message: str, line: int | None) -> None:
    with pytest.raises(DockerfileError, match=message) as caught:
        parse_dockerfile(text)
    assert caught.value.line == line


def test_stages_and_global_args() -> None:
    dockerfile = parse_dockerfile(
        "ARG BASE=python\nARG TAG\n"
        "FROM --platform=$BUILDPLATFORM ${BASE}:${TAG:-3.11} AS Builder\nRUN make\n"
        "FROM scratch\nCOPY --from=builder /out /\n"
    )
    assert dockerfile.is_multi_stage
    first, second = dockerfile.stages
    assert (first.name, first.platform, first.base) == (
        "builder",
        "$BUILDPLATFORM",
        "${BASE}:${TAG:-3.11}",
    )
    assert (second.name, second.base, second.line) == (None, "scratch", 5)
    assert [i.args for i in dockerfile.global_args] == [["BASE=python"], ["TAG"]]
    assert dockerfile.global_arg_defaults() == {"BASE": "python"}


# --------------------------------------------------------------------------- expansion

ENV = {"PWD": "/home", "SHELL": "bash", "KOREAN": "한국어", "NULL": ""}

# A selection of BuildKit's shell/envVarTest (Unix rows).
EXPANSIONS = [
    ("hello", "hello"),
    ("he'll'o", "hello"),
    ("he\\'llo", "he'llo"),
    ("abc\\tdef", "abctdef"),
    ('"abc\\tdef"', "abc\\tdef"),
    ("'abc\\tdef'", "abc\\tdef"),
    ("hello\\", "hello"),
    ("hello\\\\", "hello\\"),
    ('"hel\'lo"', "hel'lo"),
    ("'hello\\'", "hello\\"),
    ("\"''\"", "''"),
    ("$.", "$."),
    ("he$1x", "hex"),
    ("he$PWD", "he/home"),
    ("he\\$PWD", "he$PWD"),
    ("he\\\\$PWD", "he\\/home"),
    ('"he\\$PWD"', "he$PWD"),
    ("\\${}", "${}"),
    ("he${hi}xx", "hexx"),
    ("he${XXX:-000}xx", "he000xx"),
    ("he${PWD:-000}xx", "he/homexx"),
    ("he${XXX:-${PWD:-yyy}}xx", "he/homexx"),
    ("he${XXX:-${YYY:-yyy}}xx", "heyyyxx"),
    ("he${PWD?}", "he/home"),
    ("he${NULL?}", "he"),
    ("he${XXX:+${PWD}}xx", "hexx"),
    ("he${PWD:+${SHELL}}xx", "hebashxx"),
    ("he${NULL-default}", "he"),
    ("he${NULL:-default}", "hedefault"),
    ("he${NULL+alt}", "healt"),
    ("he${NULL:+alt}", "he"),
    ("'he${XX}'", "he${XX}"),
    ("\"he'$PWD'\"", "he'/home'"),
    ("'$PWD'", "$PWD"),
    ("he${PWD:+${PWD}:}xx", "he/home:xx"),
    ("he${XXX:-\\$PWD:}xx", "he$PWD:xx"),
    ("안'녕'하세요", "안녕하세요"),
    ("안녕$KOREAN", "안녕한국어"),
    ("${aaa}}", "}"),
    ("${aaa:-bbb {foo}", "bbb {foo"),
    ("${1:-bbb}", "bbb"),
    ("$999aaa", "aaa"),
    ("$@@@", "@@"),
    ("${#:-bbb}", "bbb"),
]

EXPANSION_ERRORS = [
    "he'llo",
    "he\\\\'llo",
    '"hello',
    '"hello\\"',
    "'hello",
    "${}",
    "he${.}",
    "he${XXX:YYY}",
    "he${XXX?}",
    "he${NULL:?}",
    "he${PWD",
    "he${PWD:=000}xx",
    "${{aaa}",
    "${aaa:-bbb ${foo}",
    "${:}",
]


@pytest.mark.parametrize(("word", "expected"), EXPANSIONS)
def test_expand(word: str, expected: str) -> None:
    assert expand(word, ENV) == expected


@pytest.mark.parametrize("word", EXPANSION_ERRORS)
def test_expand_errors(word: str) -> None:
    with pytest.raises(DockerfileError, match="failed to process"):
        expand(word, ENV)


def test_expand_pattern_modifiers() -> None:
    env = {"FILE": "archive.tar.gz", "PATHV": "/usr/local/bin"}
    assert expand("${FILE%.*}", env) == "archive.tar"
    assert expand("${FILE%%.*}", env) == "archive"
    assert expand("${FILE#*.}", env) == "tar.gz"
    assert expand("${FILE##*.}", env) == "gz"
    assert expand("${PATHV/\\//:}", env) == ":usr/local/bin"
    assert expand("${PATHV//\\//:}", env) == ":usr:local:bin"


def test_expand_with_backtick_escape() -> None:
    assert expand("a`$B", {"B": "x"}, escape="`") == "a$B"
    assert expand("c:\\dir\\$B", {"B": "x"}, escape="`") == "c:\\dir\\x"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("hello${space}bye", ["helloabc", "defbye"]),
        ('hello"${space}"bye', ["helloabc  defbye"]),
        ("hello there     ", ["hello", "there"]),
        ("hello\\ there", ["hello there"]),
        ('hello\\" there', ['hello"', "there"]),
        ("hello'$there'", ["hello$there"]),
    ],
)
def test_expand_words(text: str, words: list[str]) -> None:
    assert expand_words(text, {"space": "abc  def"}) == words


# --------------------------------------------------------------------------- evaluation


def test_env_uses_the_values_from_before_the_instruction() -> None:
    evaluator = evaluate("FROM a\nENV A=1\nENV A=2 B=$A C=\"${A} x\" D='$A'\nENV E $A and $B\n")
    assert evaluator.config.env == {"A": "2", "B": "1", "C": "1 x", "D": "$A", "E": "2 and 1"}


def test_global_args_are_only_visible_in_from_unless_redeclared() -> None:
    text = (
        "ARG VERSION=1.2\n"
        "ARG REGISTRY=registry.example\n"
        "FROM ${REGISTRY}/base:${VERSION}\n"
        "ENV NOT_VISIBLE=x${VERSION}x\n"
        "ARG VERSION\n"
        "ENV VISIBLE=$VERSION\n"
    )
    evaluator = evaluate(text)
    assert evaluator.base_image == "registry.example/base:1.2"
    assert evaluator.config.env == {"NOT_VISIBLE": "xx", "VISIBLE": "1.2"}
    overridden = evaluate(text, build_args={"VERSION": "2.0"})
    assert overridden.base_image == "registry.example/base:2.0"
    assert overridden.config.env["VISIBLE"] == "2.0"


def test_stage_args_defaults_build_args_and_scope() -> None:
    text = (
        "FROM a\n"
        "ARG USER_HOME=/home/${NAME:-nobody}\n"
        "ARG NAME=adapter\n"
        "ARG UNSET\n"
        "ENV HOME_DIR=$USER_HOME N=$NAME U=${UNSET-unset}\n"
    )
    evaluator = evaluate(text)
    assert evaluator.config.env == {"HOME_DIR": "/home/nobody", "N": "adapter", "U": "unset"}
    assert "NAME" in evaluator.env and "NAME" not in evaluator.config.env  # ARG is not persisted
    with_args = evaluate(text, build_args={"NAME": "custom", "UNSET": ""})
    assert with_args.config.env == {"HOME_DIR": "/home/nobody", "N": "custom", "U": ""}


def test_arg_and_env_override_in_order() -> None:
    evaluator = evaluate("FROM a\nARG V\nENV V=v1.0.0\nENV USED=$V\n", build_args={"V": "v2.0.1"})
    assert evaluator.config.env == {"V": "v1.0.0", "USED": "v1.0.0"}
    defaulted = evaluate("FROM a\nARG V\nENV V=${V:-v1.0.0}\n", build_args={"V": "v2"})
    assert defaulted.config.env == {"V": "v2"}


def test_platform_args_in_from() -> None:
    dockerfile = parse_dockerfile("FROM --platform=$TARGETPLATFORM img:$TARGETARCH\nARG TARGETOS\n")
    evaluator = StageEvaluator(dockerfile, platform="linux/arm64/v8")
    assert evaluator.base_image == "img:arm64"
    assert evaluator.platform == "linux/arm64/v8"
    evaluator.apply(dockerfile.final_stage.instructions[0])
    assert evaluator.env["TARGETOS"] == "linux"
    assert StageEvaluator(parse_dockerfile("FROM x\n")).platform is None


def test_empty_base_name_is_an_error() -> None:
    dockerfile = parse_dockerfile("ARG IMAGE\nFROM $IMAGE\n")
    with pytest.raises(DockerfileError, match="line 2: FROM \\$IMAGE expands to an empty"):
        _ = StageEvaluator(dockerfile).base_image


def test_expansion_error_is_located() -> None:
    dockerfile = parse_dockerfile("FROM a\n\nENV A=${B\n")
    evaluator = StageEvaluator(dockerfile)
    with pytest.raises(DockerfileError, match=r"^Dockerfile line 3: .*missing '}'"):
        evaluator.apply(dockerfile.final_stage.instructions[0])


def test_config_instructions() -> None:
    base = ImageConfig.from_oci(
        {
            "Env": ["PATH=/usr/local/bin:/usr/bin", "LANG=C.UTF-8"],
            "Cmd": ["python3"],
            "WorkingDir": "/home/aria-ops-adapter-user/src/app",
            "User": "aria-ops-adapter-user",
            "Labels": {"base": "yes"},
            "ExposedPorts": {"8080/tcp": {}},
        }
    )
    evaluator = evaluate(
        "FROM base\n"
        "ENV APP=/opt/app\n"
        "ENV PATH=$APP/bin:$PATH\n"
        "LABEL vendor=acme\n"
        "WORKDIR sub\n"
        "WORKDIR $APP/../srv\n"
        "USER ${APP_USER:-1000}:1000\n"
        "EXPOSE 443 $PORTS\n"
        "STOPSIGNAL SIGINT\n"
        "VOLUME /data\n"
        'ENTRYPOINT ["/entry.sh"]\n'
        "CMD $HOME is not expanded\n",
        base_config=base,
    )
    config = evaluator.config.to_oci()
    assert config["Env"] == [
        "PATH=/opt/app/bin:/usr/local/bin:/usr/bin",
        "LANG=C.UTF-8",
        "APP=/opt/app",
    ]
    assert config["WorkingDir"] == "/opt/srv"
    assert config["User"] == "1000:1000"
    assert config["Labels"] == {"base": "yes", "vendor": "acme"}
    assert config["ExposedPorts"] == {"443/tcp": {}, "8080/tcp": {}}
    assert config["StopSignal"] == "SIGINT"
    assert config["Volumes"] == {"/data": {}}
    assert config["Entrypoint"] == ["/entry.sh"]
    assert config["Cmd"] == ["/bin/sh", "-c", "$HOME is not expanded"]


def test_workdir_steps_return_the_absolute_path() -> None:
    dockerfile = parse_dockerfile("FROM a\nWORKDIR app\nWORKDIR ../lib/./x/\n")
    evaluator = StageEvaluator(dockerfile, base_config=ImageConfig(workdir="/home/u"))
    first, second = (evaluator.apply(i) for i in dockerfile.final_stage.instructions)
    assert first is not None and first.args == ["/home/u/app"]
    assert second is not None and second.args == ["/home/u/lib/x"]
    assert evaluator.workdir == "/home/u/lib/x"


def test_entrypoint_resets_an_inherited_cmd_and_shell_applies() -> None:
    base = ImageConfig(cmd=["python3"])
    evaluator = evaluate(
        'FROM a\nSHELL ["/bin/bash", "-o", "pipefail", "-c"]\nENTRYPOINT run --now\n',
        base_config=base,
    )
    assert evaluator.config.entrypoint == ["/bin/bash", "-o", "pipefail", "-c", "run --now"]
    assert evaluator.config.cmd is None
    kept = evaluate('FROM a\nCMD ["x"]\nENTRYPOINT ["y"]\n')
    assert (kept.config.cmd, kept.config.entrypoint) == (["x"], ["y"])


def test_healthcheck_config() -> None:
    evaluator = evaluate(
        "FROM a\nHEALTHCHECK --interval=1m30s --timeout=500ms --start-period=0s --retries=3 "
        "CMD curl -f http://localhost:8080/apiVersion || exit 1\n"
    )
    assert evaluator.config.healthcheck == {
        "Test": ["CMD-SHELL", "curl -f http://localhost:8080/apiVersion || exit 1"],
        "Interval": 90_000_000_000,
        "Timeout": 500_000_000,
        "Retries": 3,
    }
    assert evaluate('FROM a\nHEALTHCHECK CMD ["true"]\n').config.healthcheck == {
        "Test": ["CMD", "true"]
    }
    assert evaluate("FROM a\nHEALTHCHECK none\n").config.healthcheck == {"Test": ["NONE"]}


def test_parse_duration() -> None:
    assert parse_duration("1h2m3.5s") == 3_723_500_000_000
    assert parse_duration("250us") == 250_000
    assert parse_duration("0") == 0
    with pytest.raises(DockerfileError):
        parse_duration("10")


def test_expose_ranges_and_protocols() -> None:
    evaluator = evaluate("FROM a\nEXPOSE 8000-8002/tcp 53/UDP 127.0.0.1:9000:9090\n")
    assert evaluator.config.to_oci()["ExposedPorts"] == {
        "8000/tcp": {},
        "8001/tcp": {},
        "8002/tcp": {},
        "53/udp": {},
        "9090/tcp": {},
    }
    with pytest.raises(DockerfileError, match="line 2: EXPOSE: invalid port"):
        evaluate("FROM a\nEXPOSE http\n")


def test_stopsignal_is_validated() -> None:
    assert evaluate("FROM a\nSTOPSIGNAL 9\n").config.stop_signal == "9"
    assert evaluate("FROM a\nSTOPSIGNAL TERM\n").config.stop_signal == "TERM"
    with pytest.raises(DockerfileError, match="invalid signal"):
        evaluate("FROM a\nSTOPSIGNAL SIGNOPE\n")


def test_copy_from_needs_the_engine() -> None:
    with pytest.raises(NeedsEngineError, match="line 2: COPY --from") as caught:
        evaluate("FROM a\nCOPY --from=build /out /\n")
    assert caught.value.feature == "copy-from"


def test_apply_returns_what_needs_work() -> None:
    dockerfile = parse_dockerfile("FROM a\nENV A=1\nCOPY a /b\nRUN make\nONBUILD RUN x\n")
    evaluator = StageEvaluator(dockerfile)
    results = [evaluator.apply(i) for i in dockerfile.final_stage.instructions]
    assert [r.keyword if r else None for r in results] == [None, "COPY", "RUN", None]
    assert evaluator.config.onbuild == ["RUN x"]


def test_oci_config_round_trip() -> None:
    config = {
        "User": "1000",
        "ExposedPorts": {"8080/tcp": {}},
        "Env": ["A=1", "B=x=y"],
        "Entrypoint": ["/e"],
        "Cmd": ["c"],
        "Volumes": {"/v": {}},
        "WorkingDir": "/w",
        "Labels": {"a": "b"},
        "StopSignal": "SIGTERM",
        "Healthcheck": {"Test": ["NONE"]},
        "Shell": ["/bin/bash", "-c"],
        "OnBuild": ["RUN x"],
        "ArgsEscaped": True,
    }
    assert ImageConfig.from_oci(config).to_oci() == config
    assert ImageConfig.from_oci(None).to_oci() == {}
