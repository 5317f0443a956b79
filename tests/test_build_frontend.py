"""The builder's pure front end: Dockerfile parsing, word expansion, .dockerignore matching.

Each case states the documented Docker behaviour it checks. "ref" = the Dockerfile reference
(docs.docker.com/reference/dockerfile); "moby" = behaviour of moby's Dockerfile parser and
instructions packages (error wording, line numbers) as dockerd 28 reports it.
"""

from __future__ import annotations

import fnmatch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from berth.build.dockerfile import (
    SUBSTITUTED,
    DockerfileError,
    arg_pairs,
    healthcheck_config,
    heredoc_sources,
    parse,
    parse_go_duration,
    parse_instruction,
    parse_named,
)
from berth.build.dockerignore import Matcher, PatternError, read_patterns
from berth.build.shellwords import SubstitutionError, expand, expand_words


def err(text: str) -> DockerfileError:
    with pytest.raises(DockerfileError) as info:
        parse_named(text)
    return info.value


def only(text: str) -> list:  # instructions of the single stage
    df = parse(text)
    assert len(df.stages) == 1
    return df.stages[0].instructions


# --- directives (ref: "Parser directives") -------------------------------------------------------

def test_escape_directive_backtick_changes_continuation_and_escape():
    df = parse("# escape=`\nFROM busybox\nRUN echo a `\n  b\nCOPY a\\b c\\\n")
    assert df.escape == "`"
    run, copy = df.stages[0].instructions
    assert run.args == ["echo a   b"]
    # with ` as escape, a backslash is an ordinary character (Windows paths)
    assert copy.args == ["a\\b", "c\\"]


def test_syntax_directive_is_accepted_and_ignored_and_escape_may_follow_it():
    df = parse("# syntax=docker/dockerfile:1\n# escape=`\nFROM busybox\n")
    assert df.escape == "`"


def test_directives_are_case_insensitive_and_allow_spaces():
    assert parse("#  ESCAPE = `\nFROM a\n").escape == "`"


def test_directive_after_a_comment_blank_line_or_instruction_is_a_comment():
    # ref: "once a comment, empty line or builder instruction has been processed, Docker no
    # longer looks for parser directives"
    assert parse("# a comment\n# escape=`\nFROM a\n").escape == "\\"
    assert parse("\n# escape=`\nFROM a\n").escape == "\\"
    assert parse("FROM a\n# escape=`\nRUN x\n").escape == "\\"
    # an unknown directive ends directive parsing too
    assert parse("# unknowndirective=x\n# escape=`\nFROM a\n").escape == "\\"


def test_repeated_or_invalid_escape_directive():
    # moby: "only one escape parser directive can be used"; invalid value named in the message
    e = err("# escape=`\n# escape=\\\nFROM a\n")
    assert str(e) == "failed to parse Dockerfile: only one escape parser directive can be used"
    e = err("# escape=x\nFROM a\n")
    assert str(e) == "failed to parse Dockerfile: invalid escape token 'x' does not match ` or \\"


def test_byte_order_mark_is_ignored():
    assert parse("\ufeffFROM a\n").stages[0].base == "a"


# --- continuations and comments (ref: "Format", "Escape") ---------------------------------------

def test_continuation_joins_lines_and_keeps_leading_whitespace_of_continuations():
    run = only("FROM a\nRUN echo one \\\n    two\n")[0]
    assert run.args == ["echo one     two"]
    assert run.original == "RUN echo one     two"
    assert (run.lineno, run.end_lineno) == (2, 3)


def test_comment_lines_inside_a_continuation_are_dropped():
    # ref: comment lines are removed before the instruction is run, even inside continuations
    run = only("FROM a\nRUN apt-get update && \\\n  # install things\n  apt-get install x\n")[0]
    assert run.args == ["apt-get update &&   apt-get install x"]


def test_empty_continuation_lines_are_skipped_with_a_warning():
    df = parse("FROM a\nRUN echo a \\\n\n   \n  b\n")
    assert df.stages[0].instructions[0].args == ["echo a   b"]
    assert any("Empty continuation line" in w for w in df.warnings)


def test_escape_with_trailing_spaces_still_continues():
    assert only("FROM a\nRUN a \\  \n b\n")[0].args == ["a  b"]


def test_crlf_line_endings_work():
    insts = only("FROM a\r\nRUN echo x \\\r\n y\r\nCMD z\r\n")
    assert [i.args for i in insts] == [["echo x  y"], ["z"]]


def test_hash_inside_an_instruction_is_not_a_comment():
    assert only("FROM a\nRUN echo # not a comment\n")[0].args == ["echo # not a comment"]


def test_instruction_keywords_are_case_insensitive():
    # ref: "The instruction is not case-sensitive"
    insts = only("from a\nrun echo\nCoPy x y\n")
    assert [i.cmd for i in insts] == ["run", "copy"]


# --- errors (moby's wording and line numbers) ----------------------------------------------------

def test_unknown_instruction_names_the_word_as_written_and_its_line():
    e = err("FROM busybox\nRUN true\nFORM x\n")
    assert str(e) == "dockerfile parse error on line 3: unknown instruction: FORM"
    assert e.lineno == 3


def test_unknown_instruction_line_counts_comments_and_continuations():
    e = err("# c\nFROM a\nRUN a \\\n  b\n\nADDD x y\n")
    assert e.lineno == 6


def test_empty_dockerfile_and_file_with_no_instructions():
    assert str(err("")) == "the Dockerfile (Dockerfile) cannot be empty"
    assert str(err("# only a comment\n\n")) == "failed to parse Dockerfile: file with no instructions"
    with pytest.raises(DockerfileError, match="file with no instructions"):
        parse("   \n")


def test_instruction_before_from():
    # ARG is the only instruction allowed before the first FROM (ref: "Understand how ARG and FROM interact")
    e = err("RUN echo\nFROM a\n")
    assert "no build stage in current context" in str(e)


def test_from_argument_errors():
    assert str(err("FROM a b\n")) == "dockerfile parse error on line 1: FROM requires either one or three arguments"
    assert str(err("FROM\n")).endswith("FROM requires either one or three arguments")
    assert str(err("FROM a AS 1st\n")) == (
        'dockerfile parse error on line 1: invalid name for build stage: "1st", '
        "name can't start with a number or contain symbols")


@pytest.mark.parametrize("text,message", [
    ("FROM a\nCOPY onlyone\n", "COPY requires at least two arguments, but only one was provided. "
                               "Destination could not be determined"),
    ("FROM a\nADD x\n", "ADD requires at least two arguments, but only one was provided. "
                        "Destination could not be determined"),
    ("FROM a\nWORKDIR\n", "WORKDIR requires exactly one argument"),
    ("FROM a\nUSER\n", "USER requires exactly one argument"),
    ("FROM a\nEXPOSE\n", "EXPOSE requires at least one argument"),
    ("FROM a\nENV\n", "ENV requires at least one argument"),
    ("FROM a\nLABEL\n", "LABEL requires at least one argument"),
    ("FROM a\nARG\n", "ARG requires at least one argument"),
    ("FROM a\nVOLUME\n", "VOLUME requires at least one argument"),
    ("FROM a\nHEALTHCHECK\n", "HEALTHCHECK requires at least one argument"),
    ("FROM a\nHEALTHCHECK NONE x\n", "HEALTHCHECK NONE takes no arguments"),
    ("FROM a\nHEALTHCHECK CMD\n", "Missing command after HEALTHCHECK CMD"),
    ("FROM a\nHEALTHCHECK FOO x\n", 'Unknown type "FOO" in HEALTHCHECK (try CMD)'),
    ("FROM a\nHEALTHCHECK --retries=-1 CMD x\n", "--retries cannot be negative (-1)"),
    ("FROM a\nHEALTHCHECK --interval=10us CMD x\n", 'Interval "interval" cannot be less than 1ms'),
    ("FROM a\nSHELL /bin/sh -c\n", "SHELL requires the arguments to be in JSON form"),
    ("FROM a\nSHELL []\n", "SHELL requires at least one argument"),
    ("FROM a\nONBUILD ONBUILD RUN x\n", "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"),
    ("FROM a\nONBUILD FROM b\n", "FROM isn't allowed as an ONBUILD trigger"),
    ("FROM a\nONBUILD maintainer me\n", "MAINTAINER isn't allowed as an ONBUILD trigger"),
    ("FROM a\nENV =x\n", "ENV names can not be blank"),
    ("FROM a\nARG =x\n", "ARG names can not be blank"),
    ("FROM a\nCOPY --chwon=1 a b\n", "unknown flag: chwon"),
    ("FROM a\nCOPY --from=a --from=b a b\n", "duplicate flag specified: from"),
    ("FROM a\nCOPY --from a b\n", "missing a value on flag: from"),
    ("FROM a\nCOPY --link=maybe a b\n", "expecting boolean value for flag link, not: maybe"),
    ("FROM a\nRUN --bogus x\n", "unknown flag: bogus"),
    ("FROM a\nENV --x=1 A=b\n", "unknown flag: x"),
    ("FROM a\nCOPY a <<EOF\nEOF\n", "COPY cannot accept a heredoc as a destination"),
])
def test_instruction_errors_name_the_line(text, message):
    e = err(text)
    assert str(e) == f"dockerfile parse error on line 2: {message}"
    assert e.lineno == 2


@pytest.mark.parametrize("text,message", [
    ("FROM a\nCMD [1, 2]\n", "when using JSON array syntax, arrays must be comprised of strings only"),
    ("FROM a\nENV onlykey\n", "ENV must have two arguments"),
    ("FROM a\nLABEL a=b c\n", "Syntax error - can't find = in \"c\". Must be of the form: name=value"),
    ("FROM a\nRUN <<EOF\nno end\n", "unterminated heredoc"),
])
def test_parser_level_errors(text, message):
    # moby's parser errors have no "parse error on line" prefix; dockerd says "failed to parse <name>"
    assert str(err(text)) == f"failed to parse Dockerfile: {message}"
    with pytest.raises(DockerfileError) as info:
        parse_named(text, "Dockerfile.dev")
    assert str(info.value) == f"failed to parse Dockerfile.dev: {message}"


def test_parser_level_error_wins_over_an_earlier_instruction_error():
    # moby parses the whole file before checking instructions
    assert "arrays must be comprised of strings only" in str(err("FROM a\nFORM x\nCMD [1]\n"))


def test_flags_of_arg_and_stopsignal_are_ignored_as_docker_does():
    insts = only("FROM a\nARG --x=1 A\nSTOPSIGNAL --y SIGTERM\n")
    assert insts[0].args == ["A"] and insts[0].flags == {}
    assert insts[1].args == ["SIGTERM"]


# --- exec (JSON) and shell forms (ref: "Shell and exec form") ------------------------------------

def test_exec_form_is_json():
    insts = only('FROM a\nRUN ["echo", "a b"]\nCMD ["x"]\nENTRYPOINT []\nSHELL ["/bin/bash", "-c"]\n')
    assert [(i.args, i.json_form) for i in insts] == [
        (["echo", "a b"], True), (["x"], True), ([], True), (["/bin/bash", "-c"], True)]


def test_invalid_json_falls_back_to_shell_form():
    # ref: "the exec form is parsed as a JSON array ... if it is not valid JSON, it is shell form"
    insts = only("FROM a\nCMD ['single', 'quotes']\nRUN [\"a\" \"b\"]\nCMD [\"x\"] trailing\n")
    assert [(i.args, i.json_form) for i in insts] == [
        (["['single', 'quotes']"], False), (['["a" "b"]'], False), (['["x"] trailing'], False)]


def test_copy_add_volume_word_and_json_forms():
    insts = only('FROM a\nCOPY a  b   /d/\nADD ["with space", "/x y/"]\nVOLUME /v1 /v2\nVOLUME ["/v3"]\n')
    assert [(i.args, i.json_form) for i in insts] == [
        (["a", "b", "/d/"], False), (["with space", "/x y/"], True), (["/v1", "/v2"], False), (["/v3"], True)]


def test_flags_are_separated_from_arguments():
    copy, add, run = only(
        "FROM a\nCOPY --from=build --chown=app:app --chmod=0755 --link src /dst\n"
        "ADD --checksum=sha256:abc http://x/y /z\n"
        "RUN --mount=type=cache,target=/c --mount=type=tmpfs,target=/t echo hi\n")
    assert copy.flags == {"from": "build", "chown": "app:app", "chmod": "0755", "link": "true"}
    assert copy.args == ["src", "/dst"]
    assert add.flags == {"checksum": "sha256:abc"}
    assert run.args == ["echo hi"]
    assert [v for k, v in run.flag_list if k == "mount"] == ["type=cache,target=/c", "type=tmpfs,target=/t"]


def test_original_is_the_joined_trimmed_line():
    run = only("FROM a\n   RUN   echo   hi   \n")[0]
    assert run.original == "RUN   echo   hi"
    assert run.args == ["echo   hi"]


# --- ENV / LABEL / ARG (ref: "ENV", "LABEL", "ARG") ------------------------------------------------

def test_env_key_value_pairs_keep_quotes_for_the_substitution_step():
    env = only('FROM a\nENV A=1 B="two words" C=three\\ words D=\n')[0]
    assert env.args == ["A", "1", "B", '"two words"', "C", "three\\ words", "D", ""]
    values = [expand(v, {}) for v in env.args[1::2]]
    assert values == ["1", "two words", "three words", ""]


def test_env_legacy_form_takes_the_rest_of_the_line():
    env = only("FROM a\nENV MY_VAR  some value  here\n")[0]
    assert env.args == ["MY_VAR", "some value  here"]


def test_label_pairs_with_quoted_keys():
    label = only('FROM a\nLABEL "com.example.vendor"="ACME Inc" version=1.0\n')[0]
    assert [expand(w, {}) for w in label.args] == ["com.example.vendor", "ACME Inc", "version", "1.0"]


def test_arg_pairs_and_meta_args_before_from():
    df = parse("ARG BASE=busybox\nARG TAG\nFROM ${BASE}:${TAG:-latest} AS b\nARG X=1 Y\n")
    assert [i.args for i in df.meta_args] == [["BASE=busybox"], ["TAG"]]
    assert arg_pairs(df.stages[0].instructions[0]) == [("X", "1"), ("Y", None)]
    assert df.meta_arg_defaults() == {"BASE": "busybox"}
    assert df.meta_arg_defaults({"TAG": "1.36"}) == {"BASE": "busybox", "TAG": "1.36"}
    env = df.meta_arg_defaults()
    assert expand(df.stages[0].base, env) == "busybox:latest"


# --- FROM, stages, targets (ref: "FROM", multi-stage builds) ---------------------------------------

def test_from_as_is_case_insensitive_and_names_are_lowercased():
    df = parse("FROM busybox as Builder\nRUN x\nFROM scratch AS final\nCOPY --from=BUILDER /x /x\n")
    assert [s.name for s in df.stages] == ["builder", "final"]
    assert df.stage_for_target("BUILDER") == 0
    assert df.stage_for_target(None) == 1


def test_unknown_target():
    df = parse("FROM a AS one\n")
    with pytest.raises(DockerfileError, match="failed to reach build target two in Dockerfile"):
        df.stage_for_target("two")


def test_needed_stages_follow_from_and_copy_from():
    df = parse(
        "ARG V=base\n"
        "FROM busybox AS base\n"
        "FROM base AS deps\n"          # FROM a previous stage
        "FROM busybox AS unused\n"
        "FROM busybox AS assets\n"
        "FROM ${V} AS built\n"         # FROM through a meta ARG
        "COPY --from=deps /a /a\n"
        "COPY --from=3 /b /b\n"        # by index: "assets"
        "COPY --from=busybox:latest /bin/sh /sh\n"  # an image, not a stage
        "FROM built AS test\n"
    )
    assert df.needed_stages("built") == [0, 1, 3, 4]
    assert df.needed_stages(None) == [0, 1, 3, 4, 5]
    assert df.needed_stages("unused") == [2]
    assert df.needed_stages("built", {"V": "unused"}) == [0, 1, 2, 3, 4]  # a build arg picks the base


def test_from_a_later_stage_name_is_an_image():
    df = parse("FROM later AS first\nFROM busybox AS later\n")
    assert df.base_stage(0) is None


def test_substituted_instruction_set_matches_the_reference():
    # ref: "Environment replacement" lists ADD COPY ENV EXPOSE FROM LABEL STOPSIGNAL USER VOLUME
    # WORKDIR (and ONBUILD when combined with these), plus ARG defaults.
    assert {"add", "copy", "env", "expose", "from", "label", "stopsignal", "user", "volume",
            "workdir"} <= SUBSTITUTED
    assert not {"run", "cmd", "entrypoint", "shell", "healthcheck"} & SUBSTITUTED


# --- heredocs (ref: "Here-Documents") --------------------------------------------------------------

def test_run_heredoc():
    run = only("FROM a\nRUN <<EOF\necho $HOME\n  indented\nEOF\nCMD x\n")[0]
    assert run.args == ["<<EOF"]
    (hd,) = run.heredocs
    assert (hd.name, hd.content, hd.expand, hd.chomp) == ("EOF", "echo $HOME\n  indented\n", True, False)
    assert (run.lineno, run.end_lineno) == (2, 5)


def test_heredoc_chomp_removes_leading_tabs_only():
    run = only("FROM a\nRUN <<-EOT\n\techo a\n\t\t  b\n  c\n\tEOT\n")[0]
    assert run.heredocs[0].content == "echo a\n  b\n  c\n"


def test_quoted_delimiter_disables_expansion():
    for marker in ('<<"EOF"', "<<'EOF'", '<<E"O"F'):
        run = only(f"FROM a\nRUN {marker}\nx\nEOF\n")[0]
        assert run.heredocs[0].name == "EOF"
        assert run.heredocs[0].expand is False


def test_multiple_heredocs_and_heredoc_with_a_command():
    run = only("FROM a\nRUN cat <<A > /a && cat <<B > /b\nfirst\nA\nsecond\nB\n")[0]
    assert run.args == ["cat <<A > /a && cat <<B > /b"]
    assert [(h.name, h.content) for h in run.heredocs] == [("A", "first\n"), ("B", "second\n")]


def test_copy_heredocs_become_inline_sources():
    copy = only('FROM a\nCOPY <<one.txt <<-"two.txt" real.txt /dest/\nhello $X\none.txt\n\tworld\n\ttwo.txt\n')[0]
    paths, inline, dest = heredoc_sources(copy)
    assert paths == ["real.txt"] and dest == "/dest/"
    assert [(h.name, h.content, h.expand) for h in inline] == [
        ("one.txt", "hello $X\n", True), ("two.txt", "world\n", False)]


def test_heredoc_not_recognised_in_exec_form_or_other_instructions():
    run = only('FROM a\nRUN ["cat", "<<EOF"]\nCMD cat <<EOF\n')
    assert all(i.heredocs == () for i in run)


def test_heredoc_with_fd_prefix():
    run = only("FROM a\nRUN 3<<EOF cat /dev/fd/3\nx\nEOF\n")[0]
    assert run.heredocs[0].fd == 3


# --- HEALTHCHECK, ONBUILD ------------------------------------------------------------------------

def test_healthcheck_config():
    hc, none, ex = only(
        "FROM a\nHEALTHCHECK --interval=1m30s --timeout=3s --retries=3 --start-period=500ms CMD curl -f x || exit 1\n"
        "HEALTHCHECK NONE\nHEALTHCHECK CMD [\"/bin/check\", \"-v\"]\n")
    assert healthcheck_config(hc) == {"Test": ["CMD-SHELL", "curl -f x || exit 1"], "Interval": 90_000_000_000,
                                      "Timeout": 3_000_000_000, "StartPeriod": 500_000_000, "Retries": 3}
    assert healthcheck_config(none) == {"Test": ["NONE"]}
    assert healthcheck_config(ex) == {"Test": ["CMD", "/bin/check", "-v"]}


def test_go_durations():
    assert parse_go_duration("1h2m3.5s") == 3_723_500_000_000
    assert parse_go_duration("0") == 0
    for bad, msg in (("5", 'time: missing unit in duration "5"'), ("3x", 'time: unknown unit "x" in duration "3x"'),
                     ("", 'time: invalid duration ""')):
        with pytest.raises(ValueError) as info:
            parse_go_duration(bad)
        assert str(info.value) == msg


def test_onbuild_trigger_text_and_parsed_trigger():
    ob = only("FROM a\nonbuild   ADD --chown=1 . /app/src\n")[0]
    assert ob.args == ["ADD --chown=1 . /app/src"]
    trig = ob.trigger()
    assert (trig.cmd, trig.args, trig.flags) == ("add", [".", "/app/src"], {"chown": "1"})


def test_onbuild_heredoc_is_carried_in_the_trigger():
    ob = only("FROM a\nONBUILD RUN <<EOF\necho hi\nEOF\n")[0]
    trig = ob.trigger()
    assert trig.heredocs[0].content == "echo hi\n"


def test_parse_instruction_errors():
    with pytest.raises(DockerfileError, match="unknown instruction: BOGUS"):
        parse_instruction("BOGUS x")


# --- word expansion (ref: "Environment replacement"; moby's shell lexer) -------------------------

ENV = {"A": "hello", "EMPTY": "", "P": "/usr/local/lib.tar.gz", "SP": "a  b"}


@pytest.mark.parametrize("word,expected", [
    ("$A", "hello"), ("${A}", "hello"), ("x${A}y", "xhelloy"), ("$A_x", ""),   # names are greedy
    ("${UNSET}", ""), ("$UNSET", ""),
    ("${A:-w}", "hello"), ("${UNSET:-w}", "w"), ("${EMPTY:-w}", "w"),
    ("${A-w}", "hello"), ("${UNSET-w}", "w"), ("${EMPTY-w}", ""),
    ("${A:+w}", "w"), ("${EMPTY:+w}", ""), ("${UNSET:+w}", ""), ("${EMPTY+w}", "w"),
    ("${UNSET:-$A}", "hello"), ("${UNSET:-${A:+nested}}", "nested"),
    ("\\$A", "$A"), ("'$A'", "$A"), ('"$A"', "hello"), ('"\\$A"', "$A"), ('"a\\b"', "a\\b"),
    ("a\\ b", "a b"), ('"it\'s"', "it's"), ("'say \"hi\"'", 'say "hi"'),
    ("$", "$"), ("a$", "a$"), ("$1", ""), ("${A:?}", "hello"), ("trailing\\", "trailing"),
    ("${P#*/}", "usr/local/lib.tar.gz"), ("${P##*/}", "lib.tar.gz"),
    ("${P%.*}", "/usr/local/lib.tar"), ("${P%%.*}", "/usr/local/lib"),
    ("${P/l/L}", "/usr/Local/lib.tar.gz"), ("${P//l/L}", "/usr/LocaL/Lib.tar.gz"),
    ("${SP}", "a  b"),
])
def test_expand(word, expected):
    assert expand(word, ENV) == expected


def test_expand_with_backtick_escape():
    assert expand("`$A", ENV, "`") == "$A"
    assert expand("C:\\dir", ENV, "`") == "C:\\dir"


@pytest.mark.parametrize("word,message", [
    ("${", "failed to process \"${\": syntax error: missing '}'"),
    ("${A", "failed to process \"${A\": syntax error: missing '}'"),
    ("${}", 'failed to process "${}": syntax error: bad substitution'),
    ("${UNSET:?must be set}", 'failed to process "${UNSET:?must be set}": UNSET: must be set'),
    ("${UNSET?}", 'failed to process "${UNSET?}": UNSET: is not allowed to be unset'),
    ("${EMPTY:?}", 'failed to process "${EMPTY:?}": EMPTY: is not allowed to be empty'),
    ("${A:x}", 'failed to process "${A:x}": unsupported modifier (:x) in substitution'),
    ('"open', 'failed to process "\\"open": unexpected end of statement while looking for matching double-quote'),
    ("'open", "failed to process \"'open\": unexpected end of statement while looking for matching single-quote"),
])
def test_expand_errors(word, message):
    with pytest.raises(SubstitutionError) as info:
        expand(word, ENV)
    assert str(info.value) == message


def test_expand_words_splits_like_docker():
    assert expand_words("80/tcp  443 $PORTS", {"PORTS": "8080 9090"}) == ["80/tcp", "443", "8080", "9090"]
    assert expand_words('"a b" c\\ d \'e f\'', {}) == ["a b", "c d", "e f"]
    assert expand_words('""', {}) == []


def test_nesting_is_bounded():
    deep = "${U:-" * 200 + "x" + "}" * 200
    with pytest.raises(SubstitutionError, match="nested too deeply"):
        expand(deep, {})


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_characters="$'\"\\", blacklist_categories=("Cs",))))
def test_expand_is_identity_without_dollar_quotes_or_escape(word):
    assert expand(word, {"A": "x"}) == word


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet="abcxyz/._-", min_size=1), max_size=5))
def test_expand_words_on_plain_words_is_split(words):
    assert expand_words("  ".join(words), {}) == words


# --- .dockerignore (ref: ".dockerignore file") ----------------------------------------------------

def test_read_patterns_cleans_and_drops_comments():
    text = "\ufeff# comment\n\n  *.log  \n/abs/path\n./rel/../x\n! keep.log\n!/root/keep\ndir/\n#x\n"
    assert read_patterns(text) == ["*.log", "abs/path", "x", "!keep.log", "!root/keep", "dir"]


@pytest.mark.parametrize("patterns,path,excluded", [
    (["*.md"], "README.md", True),
    (["*.md"], "docs/README.md", False),            # * never crosses "/"
    (["*/*.md"], "docs/README.md", True),
    (["**/*.md"], "a/b/c/README.md", True),          # ** spans directories
    (["**/*.md"], "README.md", True),                # ... zero of them too
    (["docs/**"], "docs/a/b", True),
    (["docs/**"], "docs", False),
    (["temp?"], "temp1", True),
    (["temp?"], "temp12", False),
    (["temp?"], "temp/", False),
    (["[a-c]x"], "bx", True),
    (["[^a-c]x"], "bx", False),
    (["node_modules"], "node_modules/pkg/index.js", True),   # a matched directory excludes its contents
    (["*.log", "!important.log"], "important.log", False),    # exception
    (["!important.log", "*.log"], "important.log", True),     # last match wins
    (["*.md", "!README*.md", "README-secret.md"], "README-secret.md", True),
    (["*.md", "!README*.md", "README-secret.md"], "README-public.md", False),
    (["dir", "!dir/keep"], "dir/keep", False),
    (["dir", "!dir/keep"], "dir/other", True),
    (["a\\*b"], "a*b", True),
    (["a\\*b"], "axb", False),
    (["."], "anything", False),
    (["**"], "x/y", True),
])
def test_matcher(patterns, path, excluded):
    assert Matcher(patterns).excluded(path) is excluded


def test_may_contain_included_is_dockers_prefix_rule():
    m = Matcher(read_patterns("dir\n!dir/sub/keep\nother\n"))
    assert m.excluded("dir") and m.may_contain_included("dir")
    assert m.may_contain_included("dir/sub")
    assert not m.may_contain_included("other")
    assert not Matcher(["x"]).may_contain_included("x")


def test_bad_patterns():
    with pytest.raises(PatternError, match="syntax error in pattern"):
        Matcher(["[abc"])
    with pytest.raises(PatternError, match='illegal exclusion pattern: "!"'):
        Matcher(["!"])


def _reference_excluded(patterns: list[str], path: str) -> bool:
    """A simple model: a pattern excludes a path when fnmatch-per-component matches the path
    or one of its parents (same number of components, `*` within one component); the last
    matching pattern decides."""
    parts = path.split("/")
    result = False
    for raw in patterns:
        neg = raw.startswith("!")
        pat = raw[1:] if neg else raw
        pparts = pat.split("/")
        hit = False
        for k in range(1, len(parts) + 1):
            if k == len(pparts) and all(fnmatch.fnmatchcase(a, b) for a, b in zip(parts[:k], pparts, strict=True)):
                hit = True
        if hit:
            result = not neg
    return result


_seg = st.text(alphabet="ab.", min_size=1, max_size=3).filter(lambda s: s not in (".", ".."))
_pat_seg = st.text(alphabet="ab.*?", min_size=1, max_size=3).filter(lambda s: s not in (".", "..") and "**" not in s)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.lists(_pat_seg, min_size=1, max_size=3)), min_size=1, max_size=4),
       st.lists(_seg, min_size=1, max_size=4))
def test_matcher_agrees_with_a_simple_model_without_double_star(pats, path_parts):
    patterns = [("!" if neg else "") + "/".join(segs) for neg, segs in pats]
    path = "/".join(path_parts)
    assert Matcher(patterns).excluded(path) == _reference_excluded(patterns, path)
