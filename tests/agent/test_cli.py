"""The command line: enrolment outcomes, status, selftest, and errors as sentences."""

from __future__ import annotations

import json
import stat

import pytest

from metering.agent.cli import main
from tests.agent.conftest import GPU_A, GPU_B, write_scenario


@pytest.fixture
def scenario(tmp_path):
    return write_scenario(tmp_path / "scenario.json")


def enroll(tmp_path, server, scenario, token="tok", *extra):
    return main(
        ["--state-dir", str(tmp_path / "state"), "enroll", "--server", server.url, "--token", token,
         "--backend", "fake", "--scenario", str(scenario), *extra]
    )  # fmt: skip


def test_enrolment_creates_a_private_key_only_its_owner_can_read(tmp_path, server, scenario, capsys):
    assert enroll(tmp_path, server, scenario) == 0
    out = capsys.readouterr().out
    assert "Enrolled as host h_" in out and GPU_A in out and GPU_B in out
    key = tmp_path / "state" / "host_key.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    config = json.loads((tmp_path / "state" / "config.json").read_text())
    assert config["server_url"] == server.url and set(config["gpu_uuids"]) == {GPU_A, GPU_B}
    host = server.hosts[config["host_id"]]
    assert host.gpus == {GPU_A, GPU_B}


def test_a_token_works_once(tmp_path, server, scenario, capsys):
    assert enroll(tmp_path, server, scenario) == 0
    assert enroll(tmp_path / "other", server, scenario) == 1
    assert "token was already used (token_used, HTTP 410)" in capsys.readouterr().err


def test_an_unknown_token_is_refused_clearly(tmp_path, server, scenario, capsys):
    assert enroll(tmp_path, server, scenario, "nope") == 1
    assert "Unknown enrolment token (token_invalid, HTTP 401)" in capsys.readouterr().err


def test_gpus_that_do_not_match_the_declared_inventory_are_named(tmp_path, server, scenario, capsys):
    server.tokens["tok"].gpus = {GPU_A, "GPU-declared-but-absent"}
    assert enroll(tmp_path, server, scenario) == 1
    err = capsys.readouterr().err
    assert "do not match the declared inventory (gpu_mismatch, HTTP 422)" in err
    assert f"gpus[1].uuid: {GPU_B} is not in the seller's declared inventory" in err
    assert "declared GPU GPU-declared-but-absent was not found on this host" in err
    assert "Traceback" not in err


def test_enrolling_twice_needs_force(tmp_path, server, scenario, capsys):
    assert enroll(tmp_path, server, scenario) == 0
    assert enroll(tmp_path, server, scenario) == 1
    assert "already enrolled" in capsys.readouterr().err


def test_an_unreachable_server_is_a_sentence(tmp_path, scenario, capsys):
    code = main(
        ["--state-dir", str(tmp_path), "enroll", "--server", "http://127.0.0.1:9", "--token", "t",
         "--backend", "fake", "--scenario", str(scenario)]
    )  # fmt: skip
    assert code == 1
    assert "cannot reach the server at http://127.0.0.1:9/api/v1/metering/enroll" in capsys.readouterr().err


def test_run_before_enrolment_says_what_to_do(tmp_path, capsys):
    assert main(["--state-dir", str(tmp_path), "run"]) == 1
    assert "run `gridx-agent enroll` first" in capsys.readouterr().err


def test_a_bad_scenario_names_the_problem(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"gpus": [{"uuid": "GPU-1", "power_w": [[10, 1], [5, 2]]}]}')
    assert main(["selftest", "--backend", "fake", "--scenario", str(bad)]) == 1
    assert "gpus[0].power_w: point times must increase" in capsys.readouterr().err


def test_selftest_prints_one_sample_and_what_is_supported(scenario, capsys):
    assert main(["selftest", "--backend", "fake", "--scenario", str(scenario)]) == 0
    out = capsys.readouterr().out
    assert "backend fake: 2 GPU(s)" in out
    assert "power_mw         100000" in out
    assert "not supported    ecc, serial" in out


def test_run_then_status_shows_queue_ack_and_error(tmp_path, server, scenario, capsys):
    assert enroll(tmp_path, server, scenario) == 0
    state = str(tmp_path / "state")
    run = ["--state-dir", state, "run", "--time-scale", "0", "--duration", "300"]
    assert main(run) == 0
    capsys.readouterr()
    assert main(["--state-dir", state, "status"]) == 0
    out = capsys.readouterr().out
    assert "queued          : 0 envelope(s)" in out and "last ack        : seq 5 at 20" in out
    server.down()
    assert main(run) == 0
    capsys.readouterr()
    assert main(["--state-dir", state, "status"]) == 0
    out = capsys.readouterr().out
    assert "queued          : 5 envelope(s) (seq 6..10)" in out
    assert "last error      : server unreachable" in out
    assert main(["--state-dir", state, "status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["outbox"]["queued"] == 5
