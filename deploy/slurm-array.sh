#!/usr/bin/env bash
# Train one mixscale design on a Slurm job array: array task i is worker i of N.
#
#   sbatch --export=ALL,DESIGN_ID=<design run id>,MLFLOW_TRACKING_URI=http://mlflow-host:5000 \
#          deploy/slurm-array.sh
#
# `--worker env` reads SLURM_ARRAY_TASK_ID, so keep the array 0-based and WORKERS equal to its
# size: task i trains exactly the rows with row % WORKERS == i. To resume after a crash, node
# failure or timeout, resubmit the failed indices only (e.g. `sbatch --array=2 ...`): a task
# restarts the RUNNING rows of its own partition in fresh runs and skips FINISHED ones.
#SBATCH --job-name=mixscale-train
#SBATCH --array=0-3
#SBATCH --cpus-per-task=4
#SBATCH --gres=gpu:1
#SBATCH --time=12:00:00
#SBATCH --output=mixscale-train-%A_%a.log
set -euo pipefail

WORKERS=${WORKERS:-4}   # = the array size above
: "${DESIGN_ID:?set DESIGN_ID to the design run id}"
: "${MLFLOW_TRACKING_URI:?set MLFLOW_TRACKING_URI to the team server, e.g. http://host:5000}"
export MLFLOW_HTTP_REQUEST_MAX_RETRIES=${MLFLOW_HTTP_REQUEST_MAX_RETRIES:-5}
export MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR=${MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR:-1}

cd "${MIXSCALE_DIR:-$SLURM_SUBMIT_DIR}"   # this project, installed in the active environment
# shellcheck disable=SC1091
source "${MIXSCALE_VENV:-.venv}/bin/activate"
exec mlflow run . -e train --env-manager local --experiment-name "${MLFLOW_EXPERIMENT_NAME:-mixscale}" \
  -P design_id="$DESIGN_ID" -P worker=env -P workers="$WORKERS" \
  -P device=auto -P data_dir="${DATA_DIR:-data}"
