"""Training throughput side by side: mixscale's loop, a plain DataLoader loop, and the limit.

For each case the same network (same seed), the same SGD optimiser and batch size are trained
three ways on one device, interleaved ``--repeats`` times (the median is printed, so a busy
machine hurts all three alike):

- ``mixscale``: :func:`mixscale.train.train_model` (tensors on the device, batched augmentation,
  running train loss/accuracy; its own images/s, evaluation excluded);
- ``DataLoader``: ``torch.utils.data.DataLoader(TensorDataset(x, y), shuffle=True)`` over
  normalised CPU tensors, each batch moved to the device: the usual hand-written loop;
- ``limit``: forward + backward + step on ready-made batches already on the device;
- for digits also ``DataLoader, 2 worker procs`` (``num_workers=2``, persistent workers), the
  set-up many hand-written loops use, whose inter-process batches cost more than they save here.

On CUDA all three use the precision and memory format mixscale picks (bf16/fp16 autocast,
channels-last). Cases: smallcnn on the digits training split (8x8 grey) and resnet18 (CIFAR
stem) on 32x32 random colour images, the latter also with mixscale's crop + flip. For digits
also the data path alone (batches produced, no network): the part of a step a loop controls,
which bounds how far any loop can beat the DataLoader end to end. Then tracking
overhead: one digits row of the default recipe without tracking, tracked as rows are (create
the run, params, one ``log_eval`` request per evaluation sent from a background thread, waiting
for them, final metrics, end) and tracked with every evaluation sent synchronously, into a
temporary SQLite store and, with ``--server``, a local ``mlflow server``; with the time spent
inside the tracking calls. Last, where a row's time goes: real tracked rows (as ``train`` runs
them: the default recipe, epochs below the fit's min_epoch not evaluated) of 100 and 1,600
images of digits and Fashion-MNIST, scored on the whole test split and with ``--eval-images
2000``, their ``time_data_s``, ``time_train_s``, ``time_eval_s`` and ``time_tracking_s`` as
shares, side by side (``--quick``: 4 epochs, evaluated at 2 and 4; ``--only-shares``: this
section alone).

Run with ``python benchmarks/bench_train.py`` (``--quick``: small counts, one repeat, about a
minute on 2 CPU cores; ``--threads 1`` on a machine another job keeps busy).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
from _server import start_server, stop_server
from mlflow import MlflowClient
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from mixscale.config import TrainConfig
from mixscale.data import load_dataset, sample_subset
from mixscale.errors import MixscaleError
from mixscale.fit import FitConfig
from mixscale.train import (
    TrainSettings,
    prepare_images,
    resolve_device,
    resolve_settings,
    train_model,
)
from mixscale.train.nets import build_model


class _Trainer:
    """A fresh network and optimiser stepped the way train_model steps them (same precision
    and memory format on CUDA), for the comparison loops."""

    def __init__(self, config: TrainConfig, x: np.ndarray, n_classes: int) -> None:
        self.s: TrainSettings = resolve_settings(config, image_shape=x.shape[1:])
        self.device = torch.device(self.s.device)
        self.fmt = torch.channels_last if self.s.channels_last else torch.contiguous_format
        torch.manual_seed(0)
        model = build_model(config.model, num_classes=n_classes, in_channels=x.shape[1],
                            image_size=x.shape[2], stem=self.s.stem)
        self.model = model.to(self.device, memory_format=self.fmt).train()
        self.opt = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                   weight_decay=config.weight_decay)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.s.precision == "fp16")
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.s.precision)
        self.amp = dtype is not None and self.device.type == "cuda"
        self.dtype = dtype or torch.float32

    def step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        x = x.to(self.device, non_blocking=True).contiguous(memory_format=self.fmt)
        y = y.to(self.device, non_blocking=True)
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.amp):
            loss = nn.functional.cross_entropy(self.model(x), y)
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.opt)
        self.scaler.update()

    def images_per_second(self, batches: Iterable, *, epochs: int, n: int) -> float:
        """Step through ``batches`` (re-iterated each epoch) ``epochs`` times; images/s."""
        self.sync()
        t0 = time.perf_counter()
        for _ in range(epochs):
            for xb, yb in batches:
                self.step(xb, yb)
        self.sync()
        return n * epochs / (time.perf_counter() - t0)

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def _ours(x: np.ndarray, y: np.ndarray, config: TrainConfig, mean, std, keys) -> float:
    result = train_model(x, y, x[:64], y[:64], config=config, class_keys=keys, seed=0,
                         mean=mean, std=std)
    return result.images_per_second


def _dataloader(x: np.ndarray, y: np.ndarray, config: TrainConfig, mean, std, keys,
                num_workers: int = 0) -> float:
    trainer = _Trainer(config, x, len(keys))
    xt = prepare_images(x, mean=mean, std=std)
    loader = DataLoader(TensorDataset(xt, torch.from_numpy(np.array(y))),
                        batch_size=config.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(0),
                        pin_memory=trainer.device.type == "cuda", num_workers=num_workers,
                        persistent_workers=num_workers > 0)
    if num_workers:  # start the worker processes before the clock starts
        next(iter(loader))
    return trainer.images_per_second(loader, epochs=config.epochs, n=len(x))


def _limit(x: np.ndarray, y: np.ndarray, config: TrainConfig, mean, std, keys) -> float:
    trainer = _Trainer(config, x, len(keys))
    xt = prepare_images(x, mean=mean, std=std, device=trainer.device)
    xt = xt.contiguous(memory_format=trainer.fmt)
    yt = torch.from_numpy(np.array(y)).to(trainer.device)
    batches = [(xt[i:i + config.batch_size].clone(memory_format=trainer.fmt),
                yt[i:i + config.batch_size].clone())
               for i in range(0, len(x), config.batch_size)]
    return trainer.images_per_second(batches, epochs=config.epochs, n=len(x))


Loop = Callable[..., float]


def _data_path(x: np.ndarray, y: np.ndarray, config: TrainConfig, mean, std,
               repeats: int) -> None:
    """Microseconds per image spent only in producing batches (no network), both ways.

    This is the part of a step the loop controls: the rest is the network's forward and
    backward pass, the same in every loop, which bounds the end-to-end ratio.
    """
    xt = prepare_images(x, mean=mean, std=std)
    yt = torch.from_numpy(np.array(y))
    bs, n, epochs = config.batch_size, len(x), 20

    def loader() -> int:
        dl = DataLoader(TensorDataset(xt, yt), batch_size=bs, shuffle=True,
                        generator=torch.Generator().manual_seed(0))
        seen = 0
        for _ in range(epochs):
            for xb, yb in dl:
                seen += len(xb) + 0 * len(yb)
        return seen

    def sliced() -> int:
        g = torch.Generator().manual_seed(0)
        seen = 0
        for _ in range(epochs):
            perm = torch.randperm(n, generator=g)
            for i in range(0, n, bs):
                idx = perm[i:i + bs]
                xb, yb = xt[idx], yt[idx]
                seen += len(xb) + 0 * len(yb)
        return seen

    per_image = {}
    for name, fn in (("DataLoader(TensorDataset)", loader), ("mixscale slicing", sliced)):
        times = []
        for _ in range(max(3, repeats)):
            t0 = time.perf_counter()
            assert fn() == n * epochs
            times.append(time.perf_counter() - t0)
        per_image[name] = statistics.median(times) / (n * epochs) * 1e6
    dl, ours = per_image.values()
    print(f"  data path only (batches, no network): DataLoader {dl:.2f} us/image, mixscale "
          f"{ours:.2f} us/image ({dl / ours:.0f}x less); the network's step takes the rest")


def _dataloader_2_workers(*args: object) -> float:
    return _dataloader(*args, num_workers=2)


def _case(title: str, x: np.ndarray, y: np.ndarray, config: TrainConfig, mean, std,
          repeats: int, extra: dict[str, TrainConfig] | None = None,
          workers_baseline: bool = False) -> None:
    keys = tuple(str(c) for c in range(int(y.max()) + 1))
    loops: dict[str, tuple[Loop, TrainConfig]] = {
        "mixscale": (_ours, config), "DataLoader": (_dataloader, config),
        "limit (fwd+bwd)": (_limit, config),
        **{name: (_ours, cfg) for name, cfg in (extra or {}).items()},
    }
    if workers_baseline:
        loops["DataLoader, 2 worker procs"] = (_dataloader_2_workers, config)
    warm = TrainConfig(**{**config.__dict__, "epochs": 1, "eval_every": 1, "lr_milestones": ()})
    for fn, _ in loops.values():  # warm-up: first-call allocations, lazy init
        fn(x[:2 * config.batch_size], y[:2 * config.batch_size], warm, mean, std, keys)
    rates: dict[str, list[float]] = {name: [] for name in loops}
    for _ in range(repeats):
        for name, (fn, cfg) in loops.items():
            rates[name].append(fn(x, y, cfg, mean, std, keys))
    med = {name: statistics.median(r) for name, r in rates.items()}
    print(f"\n{title}")
    print(f"  {'loop':<26} {'images/s':>9} {'vs DataLoader':>14} {'vs limit':>9}")
    for name, rate in med.items():
        print(f"  {name:<26} {rate:9.0f} {rate / med['DataLoader']:13.2f}x "
              f"{rate / med['limit (fwd+bwd)']:8.2f}x")


def _tracking_overhead(repeats: int, epochs: int, device: str, uri: str, store: str) -> None:
    """One digits row without tracking, tracked as rows are (evaluations from a background
    thread, :class:`mixscale.track.EvalSender`), and tracked with every evaluation sent
    synchronously, interleaved; plus the time spent inside tracking calls."""
    from mlflow import MlflowClient

    from mixscale import track as tr

    ds = load_dataset("digits")
    idx = sample_subset(ds.train_labels, np.full(10, 48), seed=0)
    config = TrainConfig(device=device, epochs=epochs, eval_every=3,
                         lr_milestones=(20,) if epochs > 20 else ())
    args = (ds.train_images[idx], ds.train_labels[idx], ds.test_images, ds.test_labels)
    kw = {"config": config, "class_keys": ds.class_keys, "seed": 0, "mean": ds.mean,
          "std": ds.std}
    client = MlflowClient(uri)
    exp = client.create_experiment(f"bench-{time.time_ns()}")
    walls: dict[str, list[float]] = {"without tracking": [], "background thread": [],
                                     "synchronous": []}
    inside = {name: 0.0 for name in walls}

    def timed(name: str, fn: Callable, *a: object, **k: object) -> object:
        t = time.perf_counter()
        out = fn(*a, **k)
        inside[name] += time.perf_counter() - t
        return out

    def tracked(name: str) -> None:
        run_id = timed(name, client.create_run, exp).info.run_id
        params = {f: getattr(config, f) for f in config.__dataclass_fields__}
        timed(name, tr.log_params, client, run_id, params)
        if name == "synchronous":
            result = train_model(*args, **kw, callback=lambda e, m: timed(
                name, tr.log_eval, client, run_id, e, m))
        else:
            sender = tr.EvalSender(client, run_id)  # as workers.run_row does
            result = train_model(*args, **kw, callback=lambda e, m: timed(name, sender.log, e, m))
            timed(name, sender.close)
        timed(name, tr.log_metrics, client, run_id, {"train_seconds": result.seconds})
        timed(name, tr.end_run, client, run_id)

    for _ in range(repeats):
        for name in walls:
            t0 = time.perf_counter()
            if name == "without tracking":
                train_model(*args, **kw)
            else:
                tracked(name)
            walls[name].append(time.perf_counter() - t0)
    med = {name: statistics.median(w) for name, w in walls.items()}
    base = med["without tracking"]
    print(f"\ntracking overhead: one digits row (480 images, {epochs} epochs, "
          f"{len(config.eval_epochs())} evaluations of {4 + ds.n_classes} metrics), {store}")
    for name, wall in med.items():
        extra = ""
        if name != "without tracking":
            share = inside[name] / repeats / wall
            extra = (f"   difference {wall - base:+.2f} s ({(wall - base) / base:+.1%}), inside "
                     f"tracking calls {inside[name] / repeats:.3f} s = {share:.1%} of the row")
        print(f"  {name:<17} {wall:6.2f} s{extra}")


_PARTS = ("data", "train", "eval", "tracking")


def _balanced(n: int, n_classes: int) -> list[int]:
    return [n // n_classes + (c < n % n_classes) for c in range(n_classes)]


def _time_shares(device: str, uri: str, quick: bool) -> None:
    """Where a tracked row's time goes: digits and Fashion-MNIST rows of 100 and 1,600 images,
    on the whole test split and on ``--eval-images 2000``, one row each, side by side."""
    from mixscale.stages.rows import train_counts

    if quick:
        config = TrainConfig(device=device, epochs=4, eval_every=2, lr_milestones=())
    else:  # the default recipe as `mixscale train` runs it
        config = TrainConfig(device=device, eval_from=FitConfig().min_epoch)
    client = MlflowClient(uri)
    exp = client.create_experiment(f"shares-{time.time_ns()}")
    print(f"\nwhere a row's time goes: smallcnn, {config.epochs} epochs, evaluated at epochs "
          f"{','.join(map(str, config.eval_epochs()))}, tracked into a SQLite store, one row "
          "per cell (shares of data / train / eval / tracking, and the row's seconds)")
    print(f"  {'dataset':<14} {'images':>6} {'eval on':<15} {'data':>5} {'train':>6} "
          f"{'eval':>5} {'track':>6} {'seconds':>8}")
    for name in ("digits", "fashion-mnist"):
        try:
            ds = load_dataset(name)
        except MixscaleError as exc:
            print(f"  {name:<14} skipped: {str(exc)[:100]}")
            continue
        for n in (100, 1600):
            for eval_images in (0, 2000):
                shown = f"{len(ds.test_labels)} (whole)" if eval_images == 0 else "2000 images"
                head = f"  {name:<14} {n:>6} {shown:<15}"
                if n > int(ds.available.sum()):
                    print(f"{head} n/a: {name} has {int(ds.available.sum())} training images")
                    continue
                if eval_images > len(ds.test_labels):
                    print(f"{head} n/a: the test split has {len(ds.test_labels)} images")
                    continue
                cfg = TrainConfig(**{**config.__dict__, "eval_images": eval_images})
                run_id = train_counts(client, exp, name, _balanced(n, ds.n_classes), cfg,
                                      dataset=ds, echo=lambda _: None)
                m = client.get_run(run_id).data.metrics
                times = [m[f"time_{p}_s"] for p in _PARTS]
                shares = "".join(f" {100 * t / sum(times):{w}.0f}%"
                                 for t, w in zip(times, (4, 5, 4, 5), strict=True))
                print(f"{head}{shares} {sum(times):8.1f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts, one repeat")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats (median)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto = cuda when available")
    parser.add_argument("--server", action="store_true",
                        help="also measure tracking overhead against a local mlflow server")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads; 0 = torch's default")
    parser.add_argument("--only-shares", action="store_true",
                        help="only the time-shares section (where a row's time goes)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = 1 if args.quick else args.repeats
    device = resolve_device(args.device).type
    print(f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} CPU threads, "
          f"median of {repeats} interleaved repeat(s)")
    if args.only_shares:
        with tempfile.TemporaryDirectory() as tmp:
            uri = f"sqlite:///{tmp}/mlflow.db"
            MlflowClient(uri).search_experiments()
            _time_shares(device, uri, args.quick)
        return

    ds = load_dataset("digits")
    epochs = 2 if args.quick else 5
    small = TrainConfig(device=device, epochs=epochs, eval_every=epochs, lr_milestones=())
    _case(f"smallcnn, digits train split ({len(ds.train_labels)} x 1x8x8), batch 32, "
          f"{epochs} epochs", ds.train_images, ds.train_labels, small, ds.mean, ds.std,
          repeats, workers_baseline=True)
    _data_path(ds.train_images, ds.train_labels, small, ds.mean, ds.std, repeats)

    n = 128 if args.quick else 512
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    y = (np.arange(n) % 10).astype(np.int64)
    resnet = TrainConfig(model="resnet18", device=device, epochs=1, eval_every=1,
                         lr_milestones=(), batch_size=64, augment="none", lr=0.1,
                         weight_decay=1e-4)
    crop = TrainConfig(**{**resnet.__dict__, "augment": "crop-flip"})
    _case(f"resnet18 (CIFAR stem), random {n} x 3x32x32, batch 64, 1 epoch", x, y, resnet,
          (0.5,) * 3, (0.25,) * 3, repeats, extra={"mixscale + crop-flip": crop})

    epochs = 9 if args.quick else 30
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        MlflowClient(uri).search_experiments()  # create the schema once, untimed
        _tracking_overhead(repeats, epochs, device, uri, "SQLite store")
        _time_shares(device, uri, args.quick)
        if args.server:
            proc, url = start_server(Path(tmp) / "server")
            try:
                _tracking_overhead(repeats, epochs, device, url,
                                   "local mlflow server (SQLite backend, 4 workers)")
            finally:
                stop_server(proc)


if __name__ == "__main__":
    main()
