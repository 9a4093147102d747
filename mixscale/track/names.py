"""Names of the tags, params and artifacts through which the stages hand data to each other.

A design is a parent run (``mixscale.kind=design``) with ``design.csv`` and one child run per
row (``mixscale.kind=row``, status SCHEDULED until trained); ``fit`` reads the FINISHED rows
back into one table.
"""

from __future__ import annotations

__all__ = ["KIND", "DESIGN", "ROLE", "SUBSET_SIZE", "DATASET", "ROW", "ERROR", "SUPERSEDED_BY",
           "RESTART_OF", "HEARTBEAT", "ROW_CHECK", "CLAIM", "CHECKPOINT", "RESUMED_FROM",
           "RESUME_SKIPPED",
           "PARENT", "LEDGER", "LINK", "CLAIMED", "DESIGN_CSV", "FIT_TABLE_CSV", "FIT_SUMMARY_CSV",
           "SKIPPED_IMAGES", "MAX_TAG", "DESIGN_PARAMS", "ROW_PARAMS"]

# Tags (searchable in the MLflow UI, e.g. `tags."mixscale.kind" = 'row'`).
KIND = "mixscale.kind"  # pipeline | design | row | ledger | fit | launcher
DESIGN = "mixscale.design"  # design run id, on the design run and on each of its rows
ROLE = "mixscale.role"  # train | validation
SUBSET_SIZE = "mixscale.subset_size"
DATASET = "mixscale.dataset"
ROW = "mixscale.row"
ERROR = "mixscale.error"  # the exception that failed a row
SUPERSEDED_BY = "mixscale.superseded_by"  # on a failed row run: the run that restarted it
RESTART_OF = "mixscale.restart_of"  # on a restarted row run: the run it supersedes
# On a FINISHED row: "ok", or why it did not measure its data ("still rising: ...", "below
# baseline: ..."; mixscale.train.checks), so `tags."mixscale.row_check" != 'ok'` lists them
ROW_CHECK = "mixscale.row_check"
HEARTBEAT = "mixscale.heartbeat"  # on a RUNNING row: unix seconds of its last claim/evaluation
CLAIM = "mixscale.claim"  # on a row run: a token new at every claim (who trains it now)
CHECKPOINT = "mixscale.checkpoint"  # on a row run: its stored checkpoint (track.checkpoints)
RESUMED_FROM = "mixscale.resumed_from_epoch"  # on a row run resumed from its checkpoint
RESUME_SKIPPED = "mixscale.resume_skipped"  # on a superseded run: why its checkpoint went unused
PARENT = "mlflow.parentRunId"
LEDGER = "mixscale.ledger"  # tag on a row run: the run id of its design's claim ledger
LINK = "claim"  # ledger param prefix: claim.<row run id>.<previous token> = next token
CLAIMED = "mixscale.claimed"  # designs without a ledger: the same link as a param of the row
# Artifacts.
DESIGN_CSV = "design.csv"
FIT_TABLE_CSV = "fit_table.csv"
FIT_SUMMARY_CSV = "fit_summary.csv"
SKIPPED_IMAGES = "skipped_images.txt"  # on a design run: unreadable images left out, one a line

MAX_TAG = 5000  # characters MLflow keeps of a tag value

DESIGN_PARAMS = ("class_keys", "dataset")  # what the stages read from a design run
ROW_PARAMS = ("row", "role", "subset_size", "seed")  # and from each row run, beside n_<class>
