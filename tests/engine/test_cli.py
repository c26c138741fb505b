"""`gridx clear` / `gridx bench` through auctions.engine.cli.main."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from auctions.engine.cli import main

from .checker import problems
from .conftest import ROUNDS


def test_clear_prints_the_result_and_exits_0(tiny, tmp_path, capsys):
    path = tmp_path / "round.json"
    path.write_text(json.dumps(tiny))
    out = tmp_path / "result.json"
    assert main(["clear", str(path), "--time-limit", "10", "--gap", "0", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    result = json.loads(printed)
    assert result["welfare_cents"] == 8480
    assert problems(tiny, result) == []
    assert out.read_text() == printed


def test_clear_exits_2_on_bad_input_with_the_problems(tiny, tmp_path, capsys):
    tiny["bids"][0]["min_gpus"] = 99
    path = tmp_path / "round.json"
    path.write_text(json.dumps(tiny))
    assert main(["clear", str(path)]) == 2
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["status"] == "infeasible_input"
    assert "bids[0].min_gpus" in result["message"]


def test_clear_exits_2_on_a_file_that_is_not_json(tmp_path, capsys):
    path = tmp_path / "round.json"
    path.write_text("{not json")
    assert main(["clear", str(path)]) == 2
    assert json.loads(capsys.readouterr().out)["status"] == "infeasible_input"


def test_bench_prints_one_row_per_round(tiny, tmp_path, capsys):
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(tiny))
    assert main(["bench", str(path), "--time-limit", "5", "--json", str(tmp_path / "rows.json")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    row = json.loads((tmp_path / "rows.json").read_text())[0]
    assert row["welfare"] == 8480
    assert row["highs_welfare"] == 8480
    assert row["greedy"] <= row["welfare"] <= row["bound"]


def test_bench_reads_the_rounds_dir_from_the_environment(tiny, tmp_path, monkeypatch, capsys):
    (tmp_path / "tiny.json").write_text(json.dumps(tiny))
    monkeypatch.setenv("GRIDX_ROUNDS_DIR", str(tmp_path))
    assert main(["bench", "--no-direct"]) == 0
    assert "tiny" in capsys.readouterr().out


def test_clear_with_highs_never_loads_cvxpy_or_scipy(tmp_path):
    # cvxpy and scipy.sparse are ~1.1 s of imports and ~75 MB that only the cvxpy paths (another
    # solver, the flow-form MIP of a huge sub-market) need: `gridx clear` of a small round must
    # start, clear and exit without them (the engine's target: under 2 s end to end)
    out = tmp_path / "result.json"
    code = (
        "import sys\n"
        "from auctions.engine.cli import main\n"
        "assert main(['clear', sys.argv[1], '--out', sys.argv[2]]) == 0\n"
        "print(sorted(m for m in ('cvxpy', 'scipy', 'scipy.sparse') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(ROUNDS / "small-11.json"), str(out)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert json.loads(out.read_text())["status"] == "optimal"
