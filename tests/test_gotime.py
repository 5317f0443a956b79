"""Go-units' HumanDuration, shared by the daemon's container Status ("Up 3 hours") and the CLI's
ages ("3 hours ago"), and the module's promise to the CLI's start path: it imports nothing."""

from __future__ import annotations

import subprocess
import sys

import pytest

from berth.gotime import human_duration


@pytest.mark.parametrize(("seconds", "want"), [
    (-5, "Less than a second"), (0.999, "Less than a second"), (1.9, "1 second"), (119, "About a minute"),
    (3599, "59 minutes"), (5399, "About an hour"), (5400, "2 hours"),
    # Go rounds hours half up; Python's round() would say "2 hours" here and "4 hours" below
    (2.5 * 3600, "3 hours"), (3.5 * 3600, "4 hours"),
    (47.4 * 3600, "47 hours"), (47.5 * 3600, "2 days"), (13 * 86400, "13 days"), (14 * 86400, "2 weeks"),
    (59 * 86400, "8 weeks"), (60 * 86400, "2 months"), (729 * 86400, "24 months"),
    # years come from the unrounded hours: half an hour short of three years is still two
    ((3 * 365 * 24 - 0.5) * 3600, "2 years"), (3 * 365 * 86400, "3 years"),
])
def test_human_duration(seconds: float, want: str) -> None:
    assert human_duration(seconds) == want


def test_cli_and_daemon_share_one_function() -> None:
    from berth.cli import fmt
    from berth.containers import views

    assert fmt.human_duration is views.human_duration is human_duration


def test_import_loads_no_other_module() -> None:
    code = ("import sys; before = set(sys.modules); import berth.gotime; "
            "print(' '.join(sorted(set(sys.modules) - before)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert set(out.split()) <= {"berth", "berth.gotime"}
