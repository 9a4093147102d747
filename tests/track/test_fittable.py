"""The fit table's ``eval_images`` column, and its refusal to mix rows scored on different test
images (real tiny digits rows on a real SQLite store)."""

from __future__ import annotations

import dataclasses

import pytest

from mixscale import track as tr
from mixscale.config import DesignSpec, TrainConfig
from mixscale.errors import MixscaleError
from mixscale.stages.design import prepare_design, run_design
from mixscale.stages.rows import train_rows

SPEC = DesignSpec(subset_sizes=(30,), rows_per_size=3, val_rows_per_size=0, iterations=20,
                  seed=4)
CONFIG = TrainConfig(epochs=2, eval_every=1, lr_milestones=(), batch_size=8, device="cpu",
                     eval_images=40)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_the_fit_table_says_what_each_row_was_scored_on_and_never_mixes(store) -> None:
    client = store.client
    design_id = run_design(prepare_design(SPEC), client, store.new_experiment(),
                           echo=lambda _: None).design_id
    rows = tr.list_rows(client, design_id)
    train_rows(client, design_id, CONFIG, run_ids=[r.run_id for r in rows[:2]],
               echo=lambda _: None)
    table = tr.assemble_table(client, [design_id])
    assert len(table) == 4  # two rows, two epochs each
    assert table["eval_images"].tolist() == [40, 450] * 2  # the last epoch: the whole split
    # every row was checked: its tag mixscale.row_check travels with it into the table
    checks = {r.run_id: client.get_run(r.run_id).data.tags[tr.ROW_CHECK] for r in rows[:2]}
    assert table.groupby("run_id")["row_check"].first().to_dict() == checks
    assert all(c == "ok" or c.startswith(("still rising", "below baseline"))
               for c in checks.values())
    assert list(table.columns).index("eval_images") == list(table.columns).index("subset_size") + 1

    train_rows(client, design_id, dataclasses.replace(CONFIG, eval_images=0),
               run_ids=[rows[2].run_id], echo=lambda _: None)  # auto: digits' whole 450
    with pytest.raises(MixscaleError, match=r"different numbers of test images \(param "
                       r"eval_images: 40 \(2 row\(s\)\), 450 \(1 row\(s\)\)\)"):
        tr.assemble_table(client, [design_id])
