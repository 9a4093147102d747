"""Bad input on the command line: one clear line, non-zero exit, no traceback, nothing logged."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from mixscale.cli import cli


@pytest.fixture()
def fresh_dir(tmp_path, monkeypatch) -> Path:
    """An empty working directory with no tracking URI set: MLflow's default store would be
    ./mlflow.db, so its absence proves nothing was logged."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["design", "--dataset", "imagenet"], "unknown dataset 'imagenet'; allowed: 'digits'"),
        (["design", "--subset-sizes", "5000"],
         "subset size 5000 is more than the 1347 training images dataset 'digits' offers; "
         "allowed subset sizes: 10 to 1347."),
        (["design", "--subset-sizes", "100", "--min-per-class", "5", "--max-per-class", "5"],
         "offers with max_per_class=5; the only subset size allowed is 50."),
        (["design", "--subset-sizes", "60,,120"],
         "`subset_sizes` has an empty item in '60,,120'"),
        (["design", "--subset-sizes", "60,120,"], "`subset_sizes` has an empty item in"),
        (["design", "--subset-sizes", "100,abc"], "'abc' in '100,abc' is not an integer"),
        (["design", "--subset-sizes", "-5"], "`subset_sizes` must be >= 1, but got"),
        (["design", "--subset-sizes", "100", "--min-per-class", "20"],
         "subset size 100 is below 200 = min_per_class (20) x 10 classes"),
        (["design", "--subset-sizes", "100", "--max-per-class", "5"],
         "subset size 100 is more than the 50 training images dataset 'digits' offers with "
         "max_per_class=5"),
        (["design", "--subset-sizes", "10", "--rows-per-size", "3"], "distinct feasible"),
        (["design", "--rows-per-size", "0"], "0 is not in the range 1<=x<=10000"),
        (["design", "--method", "random"], "'random' is not one of 'maximin', 'paper'"),
        (["train", "--design-id", "x", "--epochs", "0"], "0 is not in the range"),
        (["train", "--design-id", "x", "--lr", "-1"], "-1.0 is not in the range 0<x<=10"),
        (["train", "--design-id", "x", "--model", "vgg"],
         "'vgg' is not one of 'smallcnn', 'resnet18'"),
        (["train", "--design-id", "x", "--lr-milestones", "ten"], "'ten' in 'ten'"),
        (["train", "--design-id", "x", "--epochs", "3", "--lr-milestones", "2,20"],
         "--lr-milestones '2,20' must be epochs in 1..3 (--epochs 3), but got 20"),
        (["train-row", "--counts", "5,5,5,5,5,5,5,5,5,5", "--epochs", "10",
          "--lr-milestones", "4,,8"], "`lr_milestones` has an empty item in '4,,8'"),
        (["fit", "--design-id", "x", "--families", "power,,log"],
         "`families` has an empty item in 'power,,log'"),
        (["fit", "--design-id", "a,,b"], "`design_id` has an empty item in 'a,,b'"),
        (["tune", "--batch-sizes", "16,,32"], "`batch_sizes` has an empty item in '16,,32'"),
        (["fit", "--design-id", "x", "--families", "cubic"], "unknown law family 'cubic'"),
        (["fit", "--design-id", "x", "--predictors", "m7"], "unknown predictor 'm7'"),
        (["main", "--subset-sizes", "2000"], "subset size 2000 is more than"),
        # settings that could register no law are refused before main trains a row
        (["main", "--families", "power", "--class-law", "false"],
         "no bounded law can be fitted (families power, predictors m0,m1,m2,m3,s0,s2, "
         "class_law False): only bounded laws are registered and served"),
        (["fit", "--design-id", "x", "--predictors", "m2,m3", "--class-law", "false"],
         "fit the bounded family m4 with a saturating predictor (e.g. --families power,m4 "
         "--predictors m3,s2)"),
        # designs the fit would refuse once trained are refused before main trains a row
        (["main", "--subset-sizes", "60", "--rows-per-size", "1", "--epochs", "3"],
         "fitting needs finished training rows from at least 2 runs, but the design has 1"),
        (["main", "--subset-sizes", "60", "--rows-per-size", "3"],
         "--select backtest needs at least 2 subset sizes (a backtest fits the smaller and "
         "scores the larger), but the design has 1"),
        (["fit", "--design-id", "x", "--extrapolate", "false"],
         "pass --select validation with --extrapolate false"),
    ],
)
def test_bad_input_is_refused_before_anything_is_logged(fresh_dir, args, message) -> None:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code != 0
    assert message in result.output, result.output
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception,
                                                                     SystemExit)
    assert not (fresh_dir / "mlflow.db").exists()
    assert not (fresh_dir / "mlruns").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train-row", "--run-id", "0123abcd"], "no run with id '0123abcd'"),
        (["train", "--design-id", "0123abcd"], "no run with id '0123abcd'"),
        (["fit", "--design-id", "0123abcd"], "no run with id '0123abcd'"),
    ],
)
def test_unknown_run_ids(store, args, message) -> None:
    result = CliRunner().invoke(cli, [*args, "--tracking-uri", store.uri])
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output


def test_real_console_shows_one_line_and_no_traceback(fresh_dir) -> None:
    exe = Path(sys.executable).with_name("mixscale")
    proc = subprocess.run([str(exe), "design", "--subset-sizes", "99999"],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr + proc.stdout
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "99999" in errors[0]
    assert not (fresh_dir / "mlflow.db").exists()


def test_help_lists_every_stage() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    for command in ("design", "train-row", "train", "fit", "main"):
        assert command in result.output


def test_train_row_ad_hoc_counts(store) -> None:
    from mixscale import track as tr

    result = CliRunner().invoke(cli, [
        "train-row", "--tracking-uri", store.uri, "--experiment", "adhoc",
        "--counts", "5,5,5,5,5,5,5,5,5,30", "--epochs", "2", "--eval-every", "1"])
    assert result.exit_code == 0, result.output
    exp = store.client.get_experiment_by_name("adhoc")
    (run,) = store.client.search_runs([exp.experiment_id])
    assert run.data.tags[tr.KIND] == "adhoc" and run.info.status == "FINISHED"
    assert run.data.params["n_9"] == "30" and run.data.params["total_n"] == "75"
    # the default recipe's milestone at epoch 20 lies past --epochs 2: dropped, and logged so
    assert run.data.params["lr_milestones"] == "" and run.data.params["epochs"] == "2"
    steps = [m.step for m in store.client.get_metric_history(run.info.run_id, "test_accuracy")]
    assert steps == [2]  # epoch 1 lies below the fit's min_epoch (10): only the last is scored


@pytest.mark.parametrize(("args", "message"), [
    (["--counts", "1,2,3"], "needs one count per class of 'digits' (10"),
    (["--counts", "1,2,3,4,5,6,7,8,9,999"], "count of class '9' must be in 0..1"),
    (["--counts", "1,2,3,4,5,6,7,8,9,x"], "'x' in"),
    (["--counts", "1,2,3,4,5,,6,7,8,9"], "`counts` has an empty item in '1,2,3,4,5,,6,7,8,9'"),
    (["--counts", "0,0,0,0,0,0,0,0,0,1"], "--counts must add up to >= 2 images"),
    (["--counts", "1,1,1,1,1,1,1,1,1,100000000000000000000"],
     "count of class '9' must be in 0..1"),
    ([], "exactly one of --run-id"),
    (["--run-id", "abc", "--counts", "1,1,1,1,1,1,1,1,1,1"], "exactly one of --run-id"),
])
def test_train_row_ad_hoc_bad_counts(fresh_dir, args, message) -> None:
    # short --epochs, as a user tries first: the counts are what gets reported
    result = CliRunner().invoke(cli, ["train-row", *args, "--epochs", "3"])
    assert result.exit_code == 1
    assert message in result.output, result.output
    assert "Traceback" not in result.output
    assert not (fresh_dir / "mlflow.db").exists()  # refused before the store is opened
