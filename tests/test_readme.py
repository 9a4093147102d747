"""Every command line the README documents runs as written, so the guide and the code agree.

The documented commands are read out of README.md (its ``bash`` blocks and the inline
``mixscale ...`` / ``mlflow run . ...`` forms). Each test names the documented commands it runs
(:func:`runs`); ``test_every_documented_command_is_run`` fails when the README gains a command
no test runs, or loses one a test still names. A command runs from its documented text: the
placeholders (``<design id>``, ``N``, ...) are filled in and small sizes are appended (for
``mlflow run``, a documented ``-P`` value is replaced, since MLflow refuses a repeated one).
``mixscale`` commands run in-process through click; ``mlflow run`` lines run as subprocesses
against the same SQLite store, found through ``$MLFLOW_TRACKING_URI`` as a user's would be.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import pytest
from click.testing import CliRunner
from mlflow import MlflowClient

from mixscale import track as tr
from mixscale.cli import cli

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

# Small sizes appended to the documented command lines (the last value of an option wins).
# 3 epochs (the default recipe's milestone at 20 is dropped); batches of 8 so that 3 epochs
# learn enough for the per-class law to recover the test split's class frequencies; every epoch
# evaluated (--eval-early), as the fits below keep every epoch (--min-epoch 0)
SHORT = ["--epochs", "3", "--eval-every", "1", "--batch-size", "8", "--eval-early"]
FITTABLE = ["--subset-sizes", "60,120,240", "--rows-per-size", "2", "--val-rows-per-size", "1",
            "--iterations", "20"]  # 9 rows: enough for every law and the per-class law
FEW_ROWS = ["--subset-sizes", "20", "--rows-per-size", "2", "--val-rows-per-size", "0",
            "--iterations", "5"]  # 2 rows, for commands that only train
FAST_FIT = ["--min-epoch", "0", "--n-starts", "2", "--n-boot", "5"]
LEAN_FIT = ["--min-epoch", "0", "--n-starts", "2", "--n-boot", "0", "--predictors", "s2",
            "--class-law", "false", "--extrapolate", "false", "--select", "validation"]


def documented_commands(text: str | None = None) -> list[str]:
    """The README's command lines, whitespace collapsed, in order of appearance.

    Code-block lines that start with ``mixscale `` or ``mlflow run `` (a trailing ``# ...``
    comment dropped); inline code that starts with ``mixscale `` and has an option, or with
    ``mlflow run .`` (a mere mention such as ``mixscale plan`` is not a command line).
    """
    text = README.read_text() if text is None else text
    found = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.splitlines():
            line = re.split(r"\s#\s", line)[0].strip()
            if line.startswith(("mixscale ", "mlflow run ")):
                found.append(" ".join(line.split()))
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    for span in re.findall(r"`([^`]+)`", prose):
        span = " ".join(span.split())
        if ((span.startswith("mixscale ") and " --" in span)
                or span.startswith("mlflow run . ")):
            found.append(span)
    return list(dict.fromkeys(found))


COVERED: dict[str, str] = {}  # documented command -> the test that runs it


def runs(*commands: str) -> Callable:
    """Declare the documented commands a test runs (checked against the README)."""
    def mark(test: Callable) -> Callable:
        for command in commands:
            COVERED[command] = test.__name__
        return test
    return mark


def fill(command: str, values: dict[str, str]) -> list[str]:
    """The documented command as argv: placeholders replaced (whole tokens, or ``k=<value>``)."""
    for key, value in values.items():
        if key.startswith("<"):
            command = command.replace(key, value)
    out = []
    for token in shlex.split(command):
        key, eq, value = token.partition("=")
        if token in values:
            token = values[token]
        elif eq and value in values:
            token = f"{key}={values[value]}"
        out.append(token)
    return out


def with_params(argv: list[str], **params: str) -> list[str]:
    """``mlflow run`` argv with ``-P key=value`` replaced where documented, else appended."""
    argv = list(argv)
    for key, value in params.items():
        for i, token in enumerate(argv):
            if argv[i - 1] == "-P" and token.startswith(f"{key}="):
                argv[i] = f"{key}={value}"
                break
        else:
            argv += ["-P", f"{key}={value}"]
    return argv


@dataclass
class Readme:
    """The store every documented command of this module runs against, and what they made."""

    uri: str
    root: Path
    client: MlflowClient
    ids: dict[str, str] = field(default_factory=dict)

    def mixscale(self, argv: list[str]) -> str:
        assert argv[0] == "mixscale"
        result = CliRunner().invoke(cli, argv[1:], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert "Traceback" not in result.output
        return result.output

    def mlflow_run(self, argv: list[str]) -> tuple[str, str]:
        """Run ``mlflow run`` as documented (``.`` = this project); return (output, run id)."""
        assert argv[:3] == ["mlflow", "run", "."]
        bin_dir = Path(sys.executable).parent
        env = {**os.environ, "MLFLOW_TRACKING_URI": self.uri,
               "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
        for name in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
            env.pop(name, None)
        proc = subprocess.run([str(bin_dir / "mlflow"), "run", str(ROOT), *argv[3:]],
                              capture_output=True, text=True, env=env, cwd=self.root,
                              timeout=600)
        output = proc.stdout + proc.stderr
        assert proc.returncode == 0, output[-4000:]
        assert "Traceback" not in output
        run_id = re.search(r"Run \(ID '(\w+)'\) succeeded", output).group(1)
        return output, run_id

    def run(self, run_id: str):
        return self.client.get_run(run_id)

    def children(self, run_id: str) -> list:
        run = self.run(run_id)
        return self.client.search_runs([run.info.experiment_id],
                                       filter_string=f"tags.`{tr.PARENT}` = '{run_id}'")

    def design(self, *extra: str) -> str:
        out = self.mixscale(["mixscale", "design", *extra])
        return re.search(r"design (\w{32}): \d+ rows", out).group(1)

    def statuses(self, design_id: str) -> list[str]:
        return [r.status for r in tr.list_rows(self.client, design_id)]


@pytest.fixture(scope="module")
def readme(tmp_path_factory: pytest.TempPathFactory) -> Readme:
    """A fresh SQLite store named by $MLFLOW_TRACKING_URI, the working directory beside it."""
    root = tmp_path_factory.mktemp("readme")
    uri = f"sqlite:///{root}/mlflow.db"
    previous = mlflow.get_tracking_uri()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        for name in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
            mp.delenv(name, raising=False)
        mp.chdir(root)  # ./mlruns of the store's experiments lands here, not in the checkout
        client = MlflowClient(uri)
        client.search_experiments()  # one process creates the schema before any other opens it
        client.create_experiment("mixscale")  # artifacts under root/mlruns, for mlflow run too
        yield Readme(uri=uri, root=root, client=client)
    mlflow.set_tracking_uri(previous)


@pytest.fixture(scope="module")
def fitted(readme: Readme) -> Readme:
    """The step-by-step commands, in their order: design, one row, the rest, fit."""
    design, train, train_row, fit = STEP_BY_STEP
    design_id = readme.design(*fill(design, {})[2:], *FITTABLE)
    rows = tr.list_rows(readme.client, design_id)
    readme.mixscale([*fill(train_row, {"<row run id>": rows[0].run_id}), *SHORT])
    assert readme.statuses(design_id) == ["FINISHED"] + ["SCHEDULED"] * 8
    out = readme.mixscale([*fill(train, {"<design id>": design_id}), *SHORT])
    assert "trained 8 row(s)" in out
    readme.mixscale([*fill(fit, {"<design id>": design_id}), *FAST_FIT])
    readme.ids.update(design=design_id, row=rows[1].run_id)
    return readme


STEP_BY_STEP = (
    "mixscale design --subset-sizes 60,120,240,480,960 --rows-per-size 6",
    "mixscale train --design-id <design id>",
    "mixscale train-row --run-id <row run id>",
    "mixscale fit --design-id <design id>",
)


HARDER = ("mixscale main --dataset fashion-mnist --subset-sizes 200,400,800,1600 "
          "--rows-per-size 4 --val-rows-per-size 2 --min-share 0.8 --min-steps-per-epoch 100")


@pytest.mark.slow
@runs(HARDER)
def test_harder_dataset_fashion_mnist_on_an_eval_subset(readme: Readme) -> None:
    from mixscale.data import datasets

    if not (datasets.SYSTEM_DATA_DIRS["fashion-mnist"] / "train-images-idx3-ubyte.gz").exists():
        if os.environ.get("MIXSCALE_REQUIRE_FASHION_MNIST") == "1":
            pytest.fail("apt-get install dataset-fashion-mnist")
        pytest.skip("apt-get install dataset-fashion-mnist")
    out = readme.mixscale([*fill(HARDER, {}), "--subset-sizes", "50,100", "--rows-per-size",
                           "2", "--val-rows-per-size", "1", "--iterations", "20",
                           # 3 evaluations of 4 training runs: m4-s2's 8 parameters need 9
                           "--epochs", "3", "--eval-every", "1", "--batch-size", "8",
                           *LEAN_FIT, "--model-name", "harder"])
    design_id = re.search(r"design run:\s+(\w+)", out).group(1)
    rows = [readme.run(r.run_id) for r in tr.list_rows(readme.client, design_id)]
    assert len(rows) == 6 and {r.info.status for r in rows} == {"FINISHED"}
    # by default the evaluations before the last score 2,000 test images, the last all 10,000
    assert {r.data.params["eval_images"] for r in rows} == {"2000"}
    assert {r.data.params["eval_final_images"] for r in rows} == {"10000"}
    assert {r.data.params["steps_per_epoch"] for r in rows} == {"100"}
    assert all(tr.ROW_CHECK in r.data.tags for r in rows)
    table = tr.assemble_table(readme.client, [design_id])
    last = table.groupby("run_id")["epoch"].transform("max") == table["epoch"]
    assert set(table.loc[last, "eval_images"]) == {10000}
    assert set(table.loc[~last, "eval_images"]) == {2000}


# --- the guard: the README's commands are exactly those the tests run ----------------------

def test_every_documented_command_is_run() -> None:
    documented = set(documented_commands())
    assert documented, "no commands found in README.md"
    assert documented - set(COVERED) == set(), "README commands that no test runs"
    assert set(COVERED) - documented == set(), "tests name commands the README lacks"


def test_the_extractor_reads_blocks_and_inline_forms() -> None:
    text = ("x `mixscale plan` y `mixscale fit --design-id <id>\n  --seed 1` z\n"
            "```bash\nmixscale design --seed 2   # a comment\nmake demo\n```\n"
            "`mlflow run . -e fit -P design_id=<id>` and `mlflow run -e tune`\n")
    assert documented_commands(text) == [
        "mixscale design --seed 2", "mixscale fit --design-id <id> --seed 1",
        "mlflow run . -e fit -P design_id=<id>"]
    assert fill("mlflow run . -e train -P design_id=... -P workers=N",
                {"...": "abc", "N": "2"})[-3:] == ["design_id=abc", "-P", "workers=2"]
    assert with_params(["mlflow", "run", ".", "-P", "a=1"], a="2", b="3") == [
        "mlflow", "run", ".", "-P", "a=2", "-P", "b=3"]


def test_every_mlproject_entry_point_is_documented_with_mlflow_run() -> None:
    import yaml

    points = set(yaml.safe_load((ROOT / "MLproject").read_text())["entry_points"])
    used = set()
    for command in documented_commands():
        if command.startswith("mlflow run ."):
            tokens = command.split()
            used.add(tokens[tokens.index("-e") + 1] if "-e" in tokens else "main")
    assert used == points


# --- Step by step ---------------------------------------------------------------------------

@pytest.mark.slow
@runs(*STEP_BY_STEP, "mixscale status --design-id <id>",
      "mixscale status --design-id <id> [--stale-after S]", "mixscale fit --design-id <id>")
def test_step_by_step_status_and_fit(fitted: Readme) -> None:
    client, design_id = fitted.client, fitted.ids["design"]
    rows = tr.list_rows(client, design_id)
    assert [r.status for r in rows] == ["FINISHED"] * 9
    row = fitted.run(rows[0].run_id)
    # the recipe's milestone at epoch 20 lies past --epochs 3: dropped, and logged as used
    assert (row.data.params["epochs"], row.data.params["lr_milestones"]) == ("3", "")
    steps = [m.step for m in client.get_metric_history(row.info.run_id, "test_accuracy")]
    assert steps == [1, 2, 3]
    for alias in ("champion", "perclass-own-total", "m4-s0", "m4-s2"):  # the bounded laws
        assert client.get_model_version_by_alias("mixscale-digits", alias)
    status = fitted.mixscale(fill("mixscale status --design-id <id>", {"<id>": design_id}))
    assert "FINISHED" in status and "9" in status
    stale = fill("mixscale status --design-id <id> --stale-after S", {"<id>": design_id,
                                                                       "S": "60"})
    assert fitted.mixscale(stale) == status  # nothing RUNNING, nothing stale
    before = len(client.search_model_versions("name='mixscale-digits'"))
    fitted.mixscale([*fill("mixscale fit --design-id <id>", {"<id>": design_id}), *LEAN_FIT])
    assert len(client.search_model_versions("name='mixscale-digits'")) == before + 1


# --- Rows and failures, Team set-up -----------------------------------------------------------

@pytest.mark.slow
@runs("mixscale design --subset-sizes 60,120,240,480,960",
      "mixscale train --design-id <id> --worker 0 --workers 3",
      "mixscale train --design-id <id> --worker 1 --workers 3",
      "mixscale train --design-id <id> --worker 2 --workers 3",
      "mixscale train --design-id <id>",
      "mixscale train --design-id <id> --max-parallel 2",
      "mixscale train --design-id <id> --executor ray",
      "mixscale train-row --counts 5,5,5,5,5,5,5,5,5,30")
def test_team_partitions_parallel_and_ad_hoc(readme: Readme) -> None:
    design = fill("mixscale design --subset-sizes 60,120,240,480,960", {})
    team = readme.design(*design[2:], *FEW_ROWS, "--rows-per-size", "3")
    for worker in range(3):
        command = f"mixscale train --design-id <id> --worker {worker} --workers 3"
        out = readme.mixscale([*fill(command, {"<id>": team}), *SHORT])
        assert f"worker {worker} of 3: 1 row(s) to train" in out
    assert readme.statuses(team) == ["FINISHED"] * 3

    plain = readme.design(*design[2:], *FEW_ROWS)
    readme.mixscale([*fill("mixscale train --design-id <id>", {"<id>": plain}), *SHORT])
    assert readme.statuses(plain) == ["FINISHED"] * 2

    parallel = readme.design(*design[2:], *FEW_ROWS)
    readme.mixscale([*fill("mixscale train --design-id <id> --max-parallel 2",
                           {"<id>": parallel}), *SHORT])
    assert readme.statuses(parallel) == ["FINISHED"] * 2

    ray_design = readme.design(*design[2:], *FEW_ROWS)
    ray = fill("mixscale train --design-id <id> --executor ray", {"<id>": ray_design})
    if importlib.util.find_spec("ray") is None:  # the README's prerequisite is missing
        result = CliRunner().invoke(cli, [*ray[1:], *SHORT])
        assert result.exit_code == 1 and "pip install 'mixscale[ray]'" in result.output
        assert "Traceback" not in result.output
        assert readme.statuses(ray_design) == ["SCHEDULED"] * 2
    else:
        readme.mixscale([*ray, *SHORT])
        assert readme.statuses(ray_design) == ["FINISHED"] * 2

    out = readme.mixscale([*fill("mixscale train-row --counts 5,5,5,5,5,5,5,5,5,30", {}),
                           *SHORT])
    adhoc = readme.run(re.search(r"ad-hoc run (\w+)", out).group(1))
    assert adhoc.data.tags[tr.KIND] == "adhoc" and adhoc.info.status == "FINISHED"
    assert adhoc.data.params["n_9"] == "30" and adhoc.data.params["lr_milestones"] == ""


# --- Tuning -----------------------------------------------------------------------------------

@pytest.mark.slow
@runs("mixscale tune --trials 12 --epochs 15", "mixscale tune --run-id <row run id> --trials 20",
      "mixscale train --design-id <id> --hparams-from <tune run id>", "mixscale main --tune true")
def test_tuning_commands(fitted: Readme) -> None:
    tiny = ["--trials", "2", "--epochs", "2", "--pruner", "none"]
    out = fitted.mixscale([*fill("mixscale tune --trials 12 --epochs 15", {}), *tiny])
    study = fitted.run(re.search(r"tune run:\s+(\w+)", out).group(1))
    assert study.data.tags[tr.KIND] == "tune" and study.data.params["best_lr"]
    assert len(fitted.children(study.info.run_id)) == 2  # one nested run per trial

    row_tune = fill("mixscale tune --run-id <row run id> --trials 20",
                    {"<row run id>": fitted.ids["row"]})
    out = fitted.mixscale([*row_tune, *tiny])
    assert fitted.run(re.search(r"tune run:\s+(\w+)", out).group(1)).info.status == "FINISHED"

    design_id = fitted.design(*FEW_ROWS)
    command = fill("mixscale train --design-id <id> --hparams-from <tune run id>",
                   {"<id>": design_id, "<tune run id>": study.info.run_id})
    fitted.mixscale([*command, *SHORT])
    (row, _) = [fitted.run(r.run_id) for r in tr.list_rows(fitted.client, design_id)]
    assert row.data.params["hparams_from"] == study.info.run_id
    assert float(row.data.params["lr"]) == pytest.approx(float(study.data.params["best_lr"]))

    out = fitted.mixscale([*fill("mixscale main --tune true", {}), *FEW_ROWS,
                           "--subset-sizes", "30,60", *SHORT, *LEAN_FIT,
                           "--tune-trials", "2", "--tune-epochs", "2", "--model-name", "tuned"])
    design = fitted.run(re.search(r"design run:\s+(\w+)", out).group(1))
    main_id = design.data.tags[tr.PARENT]
    assert fitted.run(main_id).data.tags[tr.KIND] == "pipeline"
    kinds = sorted(r.data.tags[tr.KIND] for r in fitted.children(main_id))
    assert kinds == ["design", "fit", "tune"]
    assert "champion:     models:/tuned@champion" in out


# --- Planning ---------------------------------------------------------------------------------

PLANS = (
    "mixscale plan --target 0.96 --current 10,10,3,10,2,10,10,3,10,10 --verify --seeds 3",
    "mixscale plan --target 0.95 --current 16,16,16,16,16,16,16,16,16,16 "
    "--costs 1,1,1,1,1,1,1,1,2,3",
    "mixscale plan --model-uri 'models:/mixscale-digits@m4-s0' --target 0.95 "
    "--caps 60,60,60,60,60,60,60,60,60,60",
)


@pytest.mark.slow
@runs(*PLANS)
def test_plan_commands(fitted: Readme) -> None:
    for command in PLANS:
        small = ["--seeds", "2", "--caps", ",".join(["30"] * 10)] if "--verify" in command else []
        out = fitted.mixscale([*fill(command, {}), *small])
        plan = fitted.run(re.search(r"plan run:\s+(\w+)", out).group(1))
        assert plan.data.tags[tr.KIND] == "plan" and plan.info.status == "FINISHED"
        params = plan.data.params
        assert len(params["caps"].split(",")) == 10 and params["epochs"] == "3"
        assert 0 <= plan.data.metrics["predicted_accuracy"] <= 1
        if "--verify" in command:
            seeds = fitted.children(plan.info.run_id)
            assert len(seeds) == 2 and {r.data.tags[tr.KIND] for r in seeds} == {"adhoc"}
            assert "realised_accuracy" in plan.data.metrics


# --- MLflow Projects: every entry point through `mlflow run` ---------------------------------

@pytest.mark.slow
@runs("mlflow run . --env-manager local --experiment-name mixscale")
def test_mlflow_run_main(readme: Readme) -> None:
    argv = fill("mlflow run . --env-manager local --experiment-name mixscale", {})
    argv = with_params(argv, subset_sizes="30,60", rows_per_size="2", val_rows_per_size="0",
                       iterations="20", epochs="3", eval_every="1", min_epoch="0",
                       n_starts="2", n_boot="0", predictors="s2", class_law="false",
                       extrapolate="false", select="validation",
                       model_name="mlproject-main")
    out, run_id = readme.mlflow_run(argv)
    main = readme.run(run_id)  # the run `mlflow run` created is the pipeline run
    assert main.data.tags[tr.KIND] == "pipeline" and main.info.status == "FINISHED"
    design_id = main.data.params["design_id"]
    assert readme.statuses(design_id) == ["FINISHED"] * 4
    row = readme.run(tr.list_rows(readme.client, design_id)[0].run_id)
    assert (row.data.params["model"], row.data.params["lr_milestones"]) == ("smallcnn", "")
    assert readme.client.get_model_version_by_alias("mlproject-main", "champion")
    assert "champion:     models:/mlproject-main@champion" in out


MLPROJECT_STEPS = (
    "mlflow run . -e design --env-manager local -P subset_sizes=60,120",
    "mlflow run . -e train_row --env-manager local -P run_id=<row run id>",
    "mlflow run . -e train --env-manager local -P design_id=<design id>",
    "mlflow run . -e fit --env-manager local -P design_id=<design id>",
)


@pytest.mark.slow
@runs(*MLPROJECT_STEPS)
def test_mlflow_run_design_train_row_train_fit(readme: Readme) -> None:
    design, train_row, train, fit = MLPROJECT_STEPS
    out, design_id = readme.mlflow_run(with_params(fill(design, {}), rows_per_size="2",
                                                   val_rows_per_size="0", iterations="20"))
    assert readme.run(design_id).data.tags[tr.KIND] == "design"  # the project run
    assert re.search(rf"design {design_id}: 4 rows", out)
    rows = tr.list_rows(readme.client, design_id)

    _, launcher = readme.mlflow_run(with_params(
        fill(train_row, {"<row run id>": rows[0].run_id}), epochs="3", eval_every="1",
        eval_early="true"))
    assert readme.run(launcher).data.tags[tr.KIND] == "launcher"
    assert readme.run(launcher).data.params["model"] == "recipe"  # as typed, by MLflow
    assert readme.statuses(design_id) == ["FINISHED"] + ["SCHEDULED"] * 3
    row = readme.run(rows[0].run_id)  # the resolved recipe is on the row's own run
    assert (row.data.params["model"], row.data.params["lr_milestones"]) == ("smallcnn", "")

    _, launcher = readme.mlflow_run(with_params(fill(train, {"<design id>": design_id}),
                                                epochs="3", eval_every="1", eval_early="true"))
    assert readme.run(launcher).data.tags[tr.DESIGN] == design_id
    assert readme.statuses(design_id) == ["FINISHED"] * 4

    _, fit_id = readme.mlflow_run(with_params(
        fill(fit, {"<design id>": design_id}), min_epoch="0", n_starts="2", n_boot="0",
        predictors="s2", class_law="false", extrapolate="false", select="validation",
        model_name="mlproject-law"))
    assert readme.run(fit_id).data.tags[tr.KIND] == "fit"
    version = readme.client.get_model_version_by_alias("mlproject-law", "champion")
    assert version.run_id == fit_id


@pytest.mark.slow
@runs("mlflow run . -e train_row --env-manager local -P counts=5,5,5,5,5,5,5,5,5,30",
      "mlflow run . -e train --env-manager local -P design_id=... -P worker=env -P workers=N")
def test_mlflow_run_ad_hoc_counts_and_env_worker(readme: Readme, monkeypatch) -> None:
    command = "mlflow run . -e train_row --env-manager local -P counts=5,5,5,5,5,5,5,5,5,30"
    out, launcher_id = readme.mlflow_run(with_params(fill(command, {}), epochs="3"))
    launcher = readme.run(launcher_id)
    assert launcher.data.tags[tr.KIND] == "launcher" and launcher.info.status == "FINISHED"
    assert launcher.data.params["model"] == "recipe"  # the parameters as typed
    (adhoc,) = readme.children(launcher_id)  # the ad-hoc run nests under the launcher
    assert adhoc.data.tags[tr.KIND] == "adhoc" and adhoc.info.status == "FINISHED"
    assert adhoc.data.params["model"] == "smallcnn" and adhoc.data.params["epochs"] == "3"
    assert adhoc.data.params["lr_milestones"] == "" and adhoc.data.params["total_n"] == "75"
    steps = [m.step for m in readme.client.get_metric_history(adhoc.info.run_id,
                                                              "test_accuracy")]
    assert steps == [3]  # the recipe's eval_every 3

    design_id = readme.design(*FEW_ROWS)
    command = ("mlflow run . -e train --env-manager local -P design_id=... -P worker=env "
               "-P workers=N")
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "1")  # as a Kubernetes Indexed Job sets it
    monkeypatch.delenv("SLURM_ARRAY_TASK_ID", raising=False)
    out, _ = readme.mlflow_run(with_params(fill(command, {"...": design_id, "N": "2"}),
                                           epochs="3", eval_every="1"))
    assert "worker 1 of 2: 1 row(s) to train" in out
    assert readme.statuses(design_id) == ["SCHEDULED", "FINISHED"]  # row 1 = 1 % 2


@pytest.mark.slow
@runs("mlflow run . -e tune --env-manager local -P trials=12 -P epochs=15",
      "mlflow run . -e plan --env-manager local -P target=0.95 -P current=5,5,5,5,5,5,5,5,5,5")
def test_mlflow_run_tune_and_plan(fitted: Readme) -> None:
    command = "mlflow run . -e tune --env-manager local -P trials=12 -P epochs=15"
    _, study_id = fitted.mlflow_run(with_params(fill(command, {}), trials="2", epochs="2",
                                                pruner="none"))
    study = fitted.run(study_id)  # the project run is the study run
    assert study.data.tags[tr.KIND] == "tune" and study.info.status == "FINISHED"
    assert study.data.params["best_lr"]
    # the study digits-smallcnn-full-e2 may hold earlier trials; this run added its two
    trials = [r for r in fitted.children(study_id) if r.data.tags[tr.KIND] == "trial"]
    assert len(trials) == 2 and study.data.metrics["trials_complete"] >= 2

    command = ("mlflow run . -e plan --env-manager local -P target=0.95 "
               "-P current=5,5,5,5,5,5,5,5,5,5")
    _, launcher_id = fitted.mlflow_run(fill(command, {}))
    launcher = fitted.run(launcher_id)
    assert launcher.data.tags[tr.KIND] == "launcher"
    assert launcher.data.params["caps"] == "''"  # as MLflow logged the parameter
    (plan,) = fitted.children(launcher_id)  # the plan run logs the resolved values
    assert plan.data.tags[tr.KIND] == "plan" and plan.info.status == "FINISHED"
    caps = [int(c) for c in plan.data.params["caps"].split(",")]
    assert len(caps) == 10 and min(caps) >= 5
    assert plan.data.params["epochs"] == "3"  # 0 = the law's largest training epoch
    assert plan.data.params["current"] == "5,5,5,5,5,5,5,5,5,5"
    assert "predicted_accuracy" in plan.data.metrics


# --- Reference ----------------------------------------------------------------------------

@runs("mixscale <command> --help")
def test_help_of_every_command() -> None:
    for name in cli.commands:
        result = CliRunner().invoke(cli, fill("mixscale <command> --help",
                                              {"<command>": name})[1:])
        assert result.exit_code == 0 and f"Usage: cli {name}" in result.output, name

