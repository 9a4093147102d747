"""One ``Error:`` line for each bad input, exit status 1, no traceback, and nothing logged:
tracking URIs (unknown scheme, SQLite folder missing, unreachable or silent server), foreign
design runs and unreadable images."""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from mlflow.entities import Param

from mixscale import track as tr
from mixscale.cli import cli
from tests.support.ports import free_port


@pytest.fixture()
def fresh_dir(tmp_path, monkeypatch) -> Path:
    """An empty working directory with no tracking URI set (MLflow's default store would be
    ./mlflow.db there, so its absence proves nothing was logged)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


def _refused(result: Result, message: str) -> None:
    """Exit status 1 with exactly one ``Error:`` line holding ``message``, no traceback."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and message in errors[0], result.output
    assert "Traceback" not in result.output


def _all_runs(client) -> list[str]:
    experiments = [e.experiment_id for e in client.search_experiments()]
    return sorted(r.info.run_id for r in client.search_runs(experiments, max_results=10_000))


# --- tracking URIs --------------------------------------------------------------------------

@pytest.mark.parametrize("command", [["status", "--design-id", "x"],
                                     ["fit", "--design-id", "x"],
                                     ["train", "--design-id", "x"]])
def test_unknown_scheme_names_the_allowed_ones(fresh_dir, command) -> None:
    result = CliRunner().invoke(cli, [*command, "--tracking-uri", "foo://x"])
    _refused(result, "tracking URI 'foo://x' has the unknown scheme 'foo'; allowed: ")
    for scheme in ("file", "http", "https", "mssql", "mysql", "postgresql", "sqlite"):
        assert scheme in result.output
    assert list(fresh_dir.iterdir()) == []


def test_allowed_schemes_come_from_mlflows_registry() -> None:
    from mlflow.tracking._tracking_service.utils import _tracking_store_registry

    assert set(tr.tracking_schemes()) == set(_tracking_store_registry._registry) - {
        "", "uc", "databricks-uc"}
    tr.check_tracking_uri("postgresql+psycopg2://u:p@127.0.0.1:1/db")  # a driver is fine
    tr.check_tracking_uri("mysql+pymysql://u@127.0.0.1:1/db")


def test_sqlite_in_a_missing_folder_is_refused_and_nothing_is_created(fresh_dir) -> None:
    missing = fresh_dir / "no" / "such"
    result = CliRunner().invoke(cli, ["status", "--design-id", "x", "--tracking-uri",
                                      f"sqlite:///{missing}/mlflow.db"])
    _refused(result, f"the folder {missing} does not exist; create it first")
    assert list(fresh_dir.iterdir()) == []
    # relative paths are made absolute first, so the message names the real folder
    result = CliRunner().invoke(cli, ["status", "--design-id", "x", "--tracking-uri",
                                      "sqlite:///sub/m.db"])
    _refused(result, f"the folder {fresh_dir / 'sub'} does not exist")
    assert list(fresh_dir.iterdir()) == []


def test_sqlite_file_new_in_an_existing_folder_is_a_new_store(fresh_dir) -> None:
    (fresh_dir / "sub").mkdir()
    result = CliRunner().invoke(cli, ["status", "--design-id", "deadbeef", "--tracking-uri",
                                      "sqlite:///sub/m.db"])
    _refused(result, "no run with id 'deadbeef'")  # got past the URI check: a store opened
    assert (fresh_dir / "sub" / "m.db").is_file()


def test_unreachable_server_fails_fast_with_one_line(fresh_dir) -> None:
    """A real `mixscale` process: no MLflow retries on first contact (they took 250 s)."""
    uri = f"http://127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PYTHONPATH"] = str(Path(tr.__file__).resolve().parents[2])  # this code, not another
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", "from mixscale.cli import main; main()", "fit",
                           "--design-id", "x",
                           "--tracking-uri", uri], cwd=fresh_dir, env=env,
                          capture_output=True, text=True, timeout=120)
    seconds = time.monotonic() - t0
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"Error: the tracking server {uri} cannot be reached (Connection refused); start it "
        "(mlflow server ...), check the host and port, or pass another --tracking-uri "
        "($MLFLOW_TRACKING_URI)."]
    assert seconds < 60  # a bound that cannot flake; the real figure is ~3 s (imports)
    assert list(fresh_dir.iterdir()) == []


def test_silent_server_times_out_on_the_probe(fresh_dir) -> None:
    """A port that accepts connections but never answers: one probe, PROBE_TIMEOUT long."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)  # the kernel completes the handshake; nobody ever reads
        uri = f"http://127.0.0.1:{listener.getsockname()[1]}"
        t0 = time.monotonic()
        result = CliRunner().invoke(cli, ["status", "--design-id", "x", "--tracking-uri", uri])
        seconds = time.monotonic() - t0
    _refused(result, f"the tracking server {uri} cannot be reached (no answer within "
                     f"{tr.PROBE_TIMEOUT:g} s)")
    assert seconds < 60


class _Answer(http.server.BaseHTTPRequestHandler):
    status = 404

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send_response(self.status)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize("status", [404, 200])
def test_a_server_that_is_not_mlflow_is_named(fresh_dir, status) -> None:
    handler = type("Handler", (_Answer,), {"status": status})
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        uri = f"http://127.0.0.1:{server.server_address[1]}"
        try:
            if status == 200:  # what an MLflow server answers: the probe lets it through
                tr.check_tracking_uri(uri)
                return
            result = CliRunner().invoke(cli, ["status", "--design-id", "x", "--tracking-uri",
                                              uri])
        finally:
            server.shutdown()
    _refused(result, f"{uri} answered HTTP 404 to {uri}/health, where an MLflow tracking "
                     "server answers 200 or 401 or 403")


# --- foreign design runs --------------------------------------------------------------------

def _foreign_runs(store) -> dict[str, str]:
    client = store.client
    experiment_id = store.new_experiment()
    by_hand = client.create_run(experiment_id, tags={tr.KIND: "design"}).info.run_id
    client.log_param(by_hand, "dataset", "digits")  # but no class_keys
    other_tool = client.create_run(experiment_id, tags={"tool": "other"}).info.run_id
    client.log_param(other_tool, "class_keys", "a,b")
    row = client.create_run(experiment_id, tags={tr.KIND: "row"}).info.run_id
    return {"by_hand": by_hand, "other_tool": other_tool, "row": row}


@pytest.mark.parametrize("command", ["fit", "train", "status"])
def test_foreign_design_runs_are_refused_by_name(store, command) -> None:
    runs = _foreign_runs(store)
    before = _all_runs(store.client)
    expected = {
        "by_hand": f"run {runs['by_hand']!r} is tagged mixscale.kind=design but lacks the "
                   "param(s) class_keys that `mixscale design` logs (expected class_keys, "
                   "dataset)",
        "other_tool": f"run {runs['other_tool']!r} is not a mixscale design run: its "
                      "mixscale.kind tag is None, expected 'design'",
        "row": f"run {runs['row']!r} is not a mixscale design run: its mixscale.kind tag is "
               "'row', expected 'design'",
    }
    for name, run_id in runs.items():
        result = CliRunner().invoke(cli, [command, "--tracking-uri", store.uri,
                                          "--design-id", run_id])
        _refused(result, expected[name])
    assert _all_runs(store.client) == before  # nothing logged


def test_rows_without_the_row_params_are_refused_by_name(store) -> None:
    client = store.client
    experiment_id = store.new_experiment()
    design_id = client.create_run(experiment_id, tags={tr.KIND: "design"}).info.run_id
    client.log_batch(design_id, params=[Param("class_keys", "a,b"),
                                        Param("dataset", "digits")])
    row = client.create_run(experiment_id, tags={tr.KIND: "row", tr.DESIGN: design_id}
                            ).info.run_id
    client.log_batch(row, params=[Param("row", "0"), Param("role", "train"),
                                  Param("n_a", "3")])
    before = _all_runs(client)
    result = CliRunner().invoke(cli, ["status", "--tracking-uri", store.uri,
                                      "--design-id", design_id])
    _refused(result, f"run {row!r} is tagged as a row of design {design_id!r} but lacks the "
                     "param(s) subset_size, seed, n_b that `mixscale design` logs")
    assert _all_runs(client) == before


# --- unreadable images ----------------------------------------------------------------------

def test_unreadable_images_are_listed_in_one_line(fresh_dir) -> None:
    from tests.data.test_datasets import _bad_folder

    folder = fresh_dir / "images"
    bad = _bad_folder(folder, n_bad=2)
    result = CliRunner().invoke(cli, ["design", "--dataset", f"imagefolder:{folder}",
                                      "--subset-sizes", "4", "--rows-per-size", "1"])
    _refused(result, f"imagefolder {folder}: 2 of 14 image(s) cannot be read: {bad[0]} "
                     f"(cannot identify image file); {bad[1]} (image file is truncated). Fix "
                     "or remove them, or pass --skip-bad-images")
    assert sorted(p.name for p in fresh_dir.iterdir()) == ["images"]  # no store was made


def test_skip_bad_images_logs_what_was_skipped_and_rows_train_on_the_same_images(store) -> None:
    from tests.data.test_datasets import _bad_folder

    folder = store.root / "bad-images"
    bad = _bad_folder(folder, n_bad=3)
    experiment = f"skip-{os.getpid()}"
    result = CliRunner().invoke(cli, ["design", "--tracking-uri", store.uri, "--experiment",
                                      experiment, "--dataset", f"imagefolder:{folder}",
                                      "--subset-sizes", "4,6", "--rows-per-size", "1",
                                      "--val-rows-per-size", "0", "--iterations", "5",
                                      "--skip-bad-images"])
    assert result.exit_code == 0, result.output
    assert "skipped 3 unreadable image(s) (listed in the design run's skipped_images.txt)" \
        in result.output
    design_id = result.output.split("next: mixscale train --design-id ")[1].split()[0]
    design = store.client.get_run(design_id)
    assert design.data.params["skip_bad_images"] == "True"
    listed = Path(store.client.download_artifacts(design_id, tr.SKIPPED_IMAGES)).read_text()
    assert sorted(listed.split()) == sorted(bad)
    # the rows read the folder as the design did: the same images left out, so they train
    result = CliRunner().invoke(cli, ["train", "--tracking-uri", store.uri, "--design-id",
                                      design_id, "--epochs", "1", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert [r.status for r in tr.list_rows(store.client, design_id)] == ["FINISHED"] * 2


def test_a_dataset_not_found_lists_where_mixscale_looked(fresh_dir, monkeypatch) -> None:
    from mixscale.data import datasets as data

    monkeypatch.setitem(data.SYSTEM_DATA_DIRS, "fashion-mnist", fresh_dir / "no-package")
    result = CliRunner().invoke(cli, ["design", "--dataset", "fashion-mnist", "--data-dir",
                                      "nowhere"])
    where = fresh_dir / "nowhere"
    _refused(result, f"dataset 'fashion-mnist' was not found: looked for train-images-idx3-ubyte"
                     f", train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte "
                     f"(each plain or .gz) in {where}/FashionMNIST/raw/ (torchvision's layout); "
                     f"{where}/ (the raw IDX files directly in --data-dir); "
                     f"{fresh_dir}/no-package/ (Debian's dataset-fashion-mnist); install it with "
                     "`apt-get install dataset-fashion-mnist`, or pass --download")
    assert list(fresh_dir.iterdir()) == []
