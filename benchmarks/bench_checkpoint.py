"""What ``--checkpoint-every`` costs: storing one checkpoint against training images, side by side.

Storing a checkpoint is ``torch.save``, an upload as the run artifact ``checkpoint/state.pt``
and a tag. For smallcnn on random 1x8x8 images (digits' shape) and resnet18 with the CIFAR
stem on random 3x32x32 ones, this script captures a real state from
:func:`mixscale.train.train_model` (model, SGD momentum, generators), then times, in one run:

* training throughput on this device (images/s, from the same ``train_model`` call);
* :func:`mixscale.stages.checkpoints.save_checkpoint` into a SQLite store with local artifacts
  and into a local ``mlflow server`` (gunicorn, artifacts proxied), median of ``--repeats``;

and prints each checkpoint as the number of training images it costs, and the overhead of
``--checkpoint-every 1`` for a few subset sizes (save time / epoch time). Then one tracked
smallcnn row against the server three ways, interleaved: no checkpoints, checkpoints stored
synchronously, and stored from the evaluation sender's thread as rows do
(:meth:`mixscale.track.EvalSender.call`). The background store hides the upload only where
the CPU has time to spare: with a GPU, or ``--threads`` below the core count.

Usage: ``python benchmarks/bench_checkpoint.py [--repeats 5] [--device auto] [--threads N]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from _server import start_server, stop_server
from mlflow import MlflowClient

from mixscale.config import TrainConfig
from mixscale.stages import checkpoints as ck
from mixscale.train import resolve_device, train_model

SUBSETS = (1_000, 5_000, 25_000)


def _state(config: TrainConfig, x: np.ndarray, y: np.ndarray) -> tuple[dict, float]:
    """A real checkpoint state (after epoch 1 of 2) and the training images per second."""
    states: list[dict] = []
    train_model(x[:64], y[:64], x[:64], y[:64], config=config,  # warm-up, untimed
                class_keys=[str(k) for k in range(10)], seed=0,
                mean=(0.5,) * x.shape[1], std=(0.25,) * x.shape[1])
    result = train_model(x, y, x[:64], y[:64], config=config,
                         class_keys=[str(k) for k in range(10)], seed=0,
                         mean=(0.5,) * x.shape[1], std=(0.25,) * x.shape[1],
                         on_checkpoint=lambda epoch, state: states.append(state))
    return states[0], result.images_per_second


def _save_seconds(uri: str, state: dict, repeats: int) -> float:
    client = MlflowClient(uri)
    run_id = client.create_run(client.create_experiment(f"ckpt-{time.time_ns()}")).info.run_id
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        ck.save_checkpoint(client, run_id, state)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _row_walls(uri: str, x: np.ndarray, y: np.ndarray, repeats: int) -> dict[str, float]:
    """One tracked smallcnn row (10 epochs, an evaluation and a checkpoint after each) three
    ways, interleaved: no checkpoints, checkpoints stored synchronously (training waits, as
    before), and from the sender's thread as :func:`mixscale.stages.rows.run_row` does now."""
    from mixscale import track as tr

    client = MlflowClient(uri)
    exp = client.create_experiment(f"rows-{time.time_ns()}")
    walls: dict[str, list[float]] = {"no checkpoints": [], "synchronous": [], "background": []}
    for _ in range(repeats):
        for mode, times in walls.items():
            config = TrainConfig(device="cpu", epochs=10, eval_every=1, lr_milestones=(),
                                 checkpoint_every=0 if mode == "no checkpoints" else 1)
            run_id = client.create_run(exp).info.run_id
            t0 = time.perf_counter()
            with tr.EvalSender(client, run_id) as sender:
                def save(epoch: int, state: dict, run_id: str = run_id, mode: str = mode,
                         sender: tr.EvalSender = sender) -> None:
                    if mode == "synchronous":
                        sender.flush()
                        ck.save_checkpoint(client, run_id, state)
                    else:
                        sender.call(lambda: ck.save_checkpoint(client, run_id, state))

                train_model(x, y, x[:64], y[:64], config=config, class_keys=[str(k) for k in
                                                                             range(10)],
                            seed=0, mean=(0.5,), std=(0.25,), callback=sender.log,
                            on_checkpoint=save if config.checkpoint_every else None)
            times.append(time.perf_counter() - t0)
    return {mode: statistics.median(t) for mode, t in walls.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads; 0 = torch's default (fewer than the cores "
                             "leaves the CPU spare time a GPU run has)")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    device = resolve_device(args.device).type
    rng = np.random.default_rng(0)
    cases = {
        "smallcnn, 1x8x8": (TrainConfig(device=device, epochs=2, eval_every=2, lr_milestones=(),
                                        checkpoint_every=1),
                            rng.integers(0, 17, (480, 1, 8, 8)).astype(np.uint8)),
        "resnet18, 3x32x32": (TrainConfig(model="resnet18", device=device, epochs=2,
                                          eval_every=2, lr_milestones=(), batch_size=64,
                                          augment="none", checkpoint_every=1),
                              rng.integers(0, 256, (512, 3, 32, 32)).astype(np.uint8)),
    }
    captured = {}  # trained before any server starts: its workers' start-up would slow training
    for name, (config, x) in cases.items():
        y = (np.arange(len(x)) % 10).astype(np.int64)
        captured[name] = _state(config, x, y)
    with tempfile.TemporaryDirectory() as tmp:
        sqlite = f"sqlite:///{tmp}/mlflow.db"
        MlflowClient(sqlite).search_experiments()
        local = {name: _save_seconds(sqlite, state, args.repeats)
                 for name, (state, _) in captured.items()}
        proc, url = start_server(Path(tmp) / "server", 4, gunicorn=True)
        try:
            server = {name: _save_seconds(url, state, args.repeats)
                      for name, (state, _) in captured.items()}
            x = cases["smallcnn, 1x8x8"][1][:1000]
            walls = _row_walls(url, np.concatenate([x, x, x])[:1000],
                               (np.arange(1000) % 10).astype(np.int64), args.repeats)
        finally:
            stop_server(proc)
    rows = [(name, len(_bytes(state)), ips, local[name], server[name])
            for name, (state, ips) in captured.items()]
    import torch

    print(f"device {device}, {torch.get_num_threads()} torch threads on {os.cpu_count()} cores; "
          f"median of {args.repeats} saves; a checkpoint's cost in training "
          f"images = save seconds x images/s\n")
    for name, size, ips, local, server in rows:
        print(f"{name}: state {size / 1e6:.1f} MB, training {ips:,.0f} images/s")
        for where, s in (("SQLite store, local artifacts", local),
                         ("mlflow server (gunicorn)     ", server)):
            overhead = "  ".join(f"{n:,} imgs: {s * ips / n:6.1%}" for n in SUBSETS)
            print(f"  {where} {s * 1e3:7.0f} ms = {s * ips:8,.0f} images | "
                  f"--checkpoint-every 1 overhead at {overhead}")
    _print_walls(walls)


def _bytes(state: dict) -> bytes:
    import io

    import torch

    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def _print_walls(walls: dict[str, float]) -> None:
    base = walls["no checkpoints"]
    print("\none smallcnn row against the server: 1,000 images, 10 epochs, an evaluation and a "
          "checkpoint after each (wall, median)")
    for mode, wall in walls.items():
        extra = "" if mode == "no checkpoints" else f"   {wall / base - 1:+6.1%} vs none"
        print(f"  {mode:<15} {wall:6.2f} s{extra}")
    print(f"  background / synchronous: {walls['background'] / walls['synchronous']:.2f}x the "
          "wall time")


if __name__ == "__main__":
    main()
