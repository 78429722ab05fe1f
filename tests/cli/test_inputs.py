"""What ``stepline`` reads from its command line, and the usage errors that exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from app.cli import ExitCode, cli
from app.cli.exit_codes import for_status
from app.cli.inputs import parse_duration, parse_labels, parse_params, parse_value

runner = CliRunner()


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("3", 3),
        ("0.5", 0.5),
        ("true", True),
        ("null", None),
        ("[1, 2]", [1, 2]),
        ('{"a": 1}', {"a": 1}),
        ('"007"', "007"),
        ("007", "007"),
        ("alice", "alice"),
        ("", ""),
        ("a=b", "a=b"),
    ],
)
def test_a_value_is_json_when_it_parses_else_the_text(text: str, value: object) -> None:
    assert parse_value(text) == value


def test_params_override_the_file_and_split_at_the_first_equals_sign() -> None:
    params = parse_params(["epochs=3", "query=a=b", "epochs=4"], {"epochs": 1, "keep": True})

    assert params == {"epochs": 4, "query": "a=b", "keep": True}


@pytest.mark.parametrize("item", ["novalue", "=3", " =3"])
def test_a_param_without_key_and_value_is_a_usage_error(item: str) -> None:
    with pytest.raises(typer.BadParameter, match="is not key=value"):
        parse_params([item])


def test_labels_stay_strings() -> None:
    assert parse_labels(["team=ml", "n=3"]) == {"team": "ml", "n": "3"}


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90.0), ("90s", 90.0), ("10m", 600.0), ("1h", 3600.0), ("1m30s", 90.0),
     ("1.5h", 5400.0), ("0.5s", 0.5), (None, None)],
)  # fmt: skip
def test_durations(text: str | None, seconds: float | None) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "10 minutes", "m", "0", "-1s", "1d"])
def test_what_is_not_a_duration_is_refused(text: str) -> None:
    with pytest.raises(typer.BadParameter):
        parse_duration(text)


@pytest.mark.parametrize(
    "args",
    [
        ["run", "controlled", "-p", "novalue"],
        ["run", "controlled", "-f", "--timeout", "soon"],
        ["run", "controlled", "--timeout", "1m"],  # only with --follow
        ["cancel", "01ABC", "--timeout", "1m"],  # only with --wait
        ["run", "controlled", "--params-file", "/no/such/file"],
        ["runs", "--status", "sleeping"],
        ["runs", "--limit", "0"],
        ["frobnicate"],
    ],
)
def test_usage_errors_exit_2_before_any_request(args: list[str]) -> None:
    # Nothing listens on port 9: a request would be exit code 4, not 2.
    result = runner.invoke(cli, ["--server", "http://127.0.0.1:9", *args])

    assert result.exit_code == ExitCode.usage, result.output


def test_a_params_file_must_hold_an_object(tmp_path: Path) -> None:
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")

    result = runner.invoke(
        cli, ["run", "controlled", "--params-file", str(listed)], env={"COLUMNS": "200"}
    )

    assert result.exit_code == ExitCode.usage
    assert "must hold a JSON object" in result.output


def test_run_help_says_how_values_are_read() -> None:
    result = runner.invoke(cli, ["run", "--help"], env={"COLUMNS": "200"})

    assert result.exit_code == 0
    assert "VALUE is read as JSON when it parses as JSON" in result.output
    assert "else taken as a string" in result.output


def test_the_help_lists_every_command_and_the_exit_codes() -> None:
    result = runner.invoke(cli, ["--help"], env={"COLUMNS": "200"})

    for command in ("serve", "run", "watch", "runs", "show", "cancel", "logs", "pipelines",
                    "keys", "demo", "openapi"):  # fmt: skip
        assert f" {command} " in result.output
    assert "124 --timeout reached" in result.output


@pytest.mark.parametrize(
    ("status", "code"),
    [("succeeded", 0), ("failed", 1), ("cancelled", 3), ("running", 1)],
)
def test_exit_codes_follow_the_status(status: str, code: int) -> None:
    assert for_status(status) == code
