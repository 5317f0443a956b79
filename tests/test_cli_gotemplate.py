"""The --format template subset, checked against what Go's text/template prints for the same input."""

from __future__ import annotations

import pytest

from berth.cli import fmt
from berth.cli.gotemplate import TemplateError, render, unescape

DATA = {
    "ID": "abc123", "Names": ["/web", "/alias"], "N": 3, "Ratio": 1.5, "Big": 2.0, "Nil": None, "Empty": "",
    "State": {"Status": "running", "Running": True, "ExitCode": 0},
    "Labels": {"b": "2", "a": "1"},
    "Ports": [{"PrivatePort": 80, "Type": "tcp"}],
}


@pytest.mark.parametrize("src,want", [
    ("{{.ID}}", "abc123"),
    ("{{.State.Status}}", "running"),
    ("{{.State.Running}} {{.State.ExitCode}}", "true 0"),
    ("{{.Missing}}", "<no value>"),
    ("{{.Nil}}", "<no value>"),
    ("{{.Big}} {{.Ratio}}", "2 1.5"),
    ("{{.Names}}", "[/web /alias]"),
    ("{{.Labels}}", "map[a:1 b:2]"),
    ("{{index .Labels \"a\"}}{{index .Names 1}}", "1/alias"),
    ("{{json .State}}", '{"Status":"running","Running":true,"ExitCode":0}'),
    ("{{json .Empty}}", '""'),
    ("{{range .Names}}[{{.}}]{{end}}", "[/web][/alias]"),
    ("{{range $i, $n := .Names}}{{$i}}={{$n}} {{end}}", "0=/web 1=/alias "),
    ("{{range $k, $v := .Labels}}{{$k}}:{{$v}};{{end}}", "a:1;b:2;"),
    ("{{range .Nil}}x{{else}}none{{end}}", "none"),
    ("{{range .Ports}}{{.PrivatePort}}/{{.Type}}{{end}}", "80/tcp"),
    ("{{if .State.Running}}up{{else}}down{{end}}", "up"),
    ("{{if .Empty}}a{{else if eq .ID \"abc123\"}}b{{else}}c{{end}}", "b"),
    ("{{if not .Empty}}empty{{end}}", "empty"),
    ("{{if and .ID .N}}both{{end}}{{if or .Empty .Nil}}x{{else}}neither{{end}}", "bothneither"),
    ("{{with .State}}{{.Status}}{{end}}", "running"),
    ("{{with .Nil}}x{{else}}no{{end}}", "no"),
    ("{{.ID | upper}} {{lower \"AB\"}} {{title \"ab cd\"}}", "ABC123 ab Ab Cd"),
    ("{{join .Names \",\"}}", "/web,/alias"),
    ("{{split \"a:b\" \":\"}}", "[a b]"),
    ("{{len .Names}} {{len .Labels}}", "2 2"),
    ("{{printf \"%s-%d-%5s|%-4s|%q\" .ID .N \"r\" \"l\" .ID}}", 'abc123-3-    r|l   |"abc123"'),
    ("{{println .ID}}", "abc123\n"),
    ("{{(index .Names 0)}} {{(index .Ports 0).PrivatePort}}", "/web 80"),
    ("{{$.ID}}{{range .Names}}{{$.N}}{{end}}", "abc12333"),
    ("a {{- \" b \" -}} c", "a b c"),
    ("{{/* a comment */}}x", "x"),
    ("{{pad .ID 1 2}}|{{truncate .ID 3}}", " abc123  |abc"),
    ("{{eq .N 3}} {{ne .N 3}} {{lt .N 4}} {{gt .Ratio 2.0}}", "true false true false"),
])
def test_render(src: str, want: str) -> None:
    assert render(src, DATA) == want


@pytest.mark.parametrize("src", [
    "{{.ID", "{{if .ID}}x", "{{end}}", "{{nosuchfunc .ID}}", "{{range .N}}{{.Foo}}{{end}}x{{else}}",
    "{{.ID .N}}", "{{index .Names 5}}", "{{$undefined}}", "{{)}}", "{{}}",
])
def test_errors_are_template_errors(src: str) -> None:
    with pytest.raises(TemplateError):
        render(src, DATA)


def test_callable_fields_take_arguments_and_json_drops_them() -> None:
    row = {"ID": "x", "Label": fmt.label_func({"k": "v"})}
    assert render('{{.Label "k"}}|{{.Label "nope"}}', row) == "v|"
    assert render("{{json .}}", row) == '{"ID":"x"}'


def test_unescape_and_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert unescape("a\\tb\\nc") == "a\tb\nc"
    rows = [{"ID": "1", "Name": "short"}, {"ID": "22", "Name": "a-much-longer-name"}]
    fmt.write_rows(rows, "table {{.ID}}\\t{{.Name}}", "", {"ID": "ID", "Name": "NAME"})
    assert capsys.readouterr().out == "ID        NAME\n1         short\n22        a-much-longer-name\n"
    fmt.write_rows(rows, "table {{.Name}}\\t{{.ID}}", "", {"ID": "ID", "Name": "NAME"})
    assert capsys.readouterr().out.splitlines()[1] == "short                1"
    fmt.write_rows(rows, None, "table {{.ID}}", {"ID": "ID"}, "ID", quiet=True)
    assert capsys.readouterr().out == "1\n22\n"
    with pytest.raises(fmt.FormatError, match="template parsing error"):
        fmt.write_rows(rows, "{{.ID", "", {})


def test_output_is_bounded() -> None:
    data = {"L": list(range(5000))}
    with pytest.raises(TemplateError, match="too large"):
        render("{{range .L}}{{range $.L}}{{range $.L}}xxxxxxxxxxxx{{end}}{{end}}{{end}}", data)


@pytest.mark.parametrize("n,want", [(0, "0B"), (999, "999B"), (1000, "1kB"), (1990000, "1.99MB"), (12345678, "12.3MB"),
                                    (5.5e9, "5.5GB")])
def test_human_size(n: float, want: str) -> None:
    assert fmt.human_size(n) == want


@pytest.mark.parametrize("s,want", [(0.5, "Less than a second"), (1, "1 second"), (59, "59 seconds"),
                                    (60, "About a minute"), (150, "2 minutes"), (3600, "About an hour"),
                                    (5 * 3600, "5 hours"), (3 * 86400, "3 days"), (20 * 86400, "2 weeks"),
                                    (90 * 86400, "3 months"), (800 * 86400, "2 years")])
def test_human_duration(s: float, want: str) -> None:
    assert fmt.human_duration(s) == want


def test_parse_iso() -> None:
    assert fmt.parse_iso("1970-01-01T00:01:00Z") == 60
    assert fmt.parse_iso("1970-01-01T01:00:00.5+01:00") == 0.5
    assert fmt.parse_iso("0001-01-01T00:00:00Z") == 0


def test_progress_lines_on_a_tty_and_off() -> None:
    """One line per layer rewritten in place on a terminal; plain status-change lines otherwise."""
    import io

    from berth.cli.images import Progress

    msgs = [{"status": "Pulling from x/y", "id": "1"}, {"status": "Pulling fs layer", "id": "aaa"},
            {"status": "Pulling fs layer", "id": "bbb"},
            {"status": "Downloading", "id": "aaa", "progress": "[=>   ] 1kB/2kB",
             "progressDetail": {"current": 1000, "total": 2000}},
            {"status": "Downloading", "id": "aaa", "progress": "[===> ] 2kB/2kB",
             "progressDetail": {"current": 2000, "total": 2000}},
            {"status": "Pull complete", "id": "aaa"}, {"status": "Already exists", "id": "bbb"},
            {"status": "Digest: sha256:abc"}]
    tty = io.StringIO()
    p = Progress(tty, tty=True)
    for m in msgs:
        p.show(m)
    out = tty.getvalue()
    assert out.count("\n") == 4  # three id lines and the digest; updates move the cursor instead
    assert "\x1b[2A\x1b[2K\rbbb: Already exists" not in out and "\x1b[1A\x1b[2K\rbbb: Already exists" in out
    assert "\x1b[2A\x1b[2K\raaa: Downloading [===> ] 2kB/2kB" in out
    plain = io.StringIO()
    p = Progress(plain, tty=False)
    for m in msgs:
        p.show(m)
    assert plain.getvalue().splitlines() == ["1: Pulling from x/y", "aaa: Pulling fs layer", "bbb: Pulling fs layer",
                                             "aaa: Downloading", "aaa: Pull complete", "bbb: Already exists",
                                             "Digest: sha256:abc"]
    with pytest.raises(Exception, match="manifest unknown"):
        Progress(plain, tty=False).show({"error": "x", "errorDetail": {"message": "manifest unknown"}})
