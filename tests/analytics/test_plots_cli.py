from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from ledger.analytics.plots import plot

from ledger.cli import cli
from ledger.errors import InvalidValueError

PNG = b"\x89PNG\r\n\x1a\n"


def test_plot_png_and_selfcontained_html(board, tmp_path):
    out = tmp_path / "curves.png"
    result = plot(
        board.store, metric=["val_acc", "loss"], runs=["a", "b"], experiment="sweep", output=out
    )
    assert result == {"output": str(out), "runs": 2, "points": 16}
    assert out.read_bytes().startswith(PNG)
    page = tmp_path / "curves.html"
    plot(board.store, metric="loss", runs=["a", "e"], experiment="sweep", x="relative", output=page)
    text = page.read_text()
    assert "<svg" in text and "<script" not in text and "http://" not in text.split("<svg")[0]


def test_plot_errors(board, tmp_path):
    with pytest.raises(InvalidValueError, match="use one of"):
        plot(board.store, metric="loss", runs=["x"], output=tmp_path / "a.jpg")
    with pytest.raises(InvalidValueError, match="nothing to plot"):
        plot(board.store, metric="nope", runs=["x"], output=tmp_path / "a.png")


def _invoke(board, *args):
    return CliRunner().invoke(cli, [*args, "--store", board.store], catch_exceptions=False)


def test_cli_leaderboard_json_and_plot(board, tmp_path):
    png = tmp_path / "lb.png"
    result = _invoke(
        board,
        "leaderboard",
        "--metric",
        "val_acc",
        "-e",
        "sweep",
        "--where",
        "params.lr < 0.15",
        "--params",
        "lr",
        "--format",
        "json",
        "--plot",
        str(png),
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["name"] for r in rows] == ["b", "c", "a"]
    assert rows[0]["params.lr"] == 0.01
    assert png.read_bytes().startswith(PNG)


def test_cli_bad_where_is_one_line_error(board):
    result = _invoke(board, "leaderboard", "-m", "val_acc", "-w", "1=1) UNION SELECT 1 --")
    assert result.exit_code == 1
    assert result.output.startswith("Error: Invalid --where")
    assert "Traceback" not in result.output


def test_cli_diff_and_importance_with_plot(board, tmp_path):
    result = _invoke(board, "diff", "a", "e", "-e", "sweep", "--format", "csv")
    assert result.exit_code == 0, result.output
    assert "param,lr,0.1,0.2" in result.stdout
    result = _invoke(board, "diff", "a", "nobody")
    assert result.exit_code == 1 and "No run matches 'nobody'" in result.output
    png = tmp_path / "imp.png"
    result = _invoke(
        board,
        "importance",
        "-m",
        "val_acc",
        "-e",
        "sweep",
        "--evaluator",
        "mdi",
        "--seed",
        "2",
        "--format",
        "jsonl",
        "--plot",
        str(png),
    )
    assert result.exit_code == 0, result.output
    first = json.loads(result.stdout.splitlines()[0])
    assert first["evaluator"] == "mdi" and first["seed"] == 2
    assert png.read_bytes().startswith(PNG)


def test_cli_plot(board, tmp_path):
    out = tmp_path / "c.svg"
    result = _invoke(board, "plot", "a", "b", "-e", "sweep", "-m", "loss", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert out.read_text().lstrip().startswith("<?xml")


def test_every_analytics_verb_has_help_with_an_example():
    for verb in ("leaderboard", "diff", "importance", "plot"):
        result = CliRunner().invoke(cli, [verb, "--help"])
        assert result.exit_code == 0
        assert f"ledger {verb}" in result.output
