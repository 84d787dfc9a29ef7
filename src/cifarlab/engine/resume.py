"""Resume: the training state a run saves after its epochs, so that a run killed at any point
continues where it stopped when started again.

The contract: same params and data -> the resumed run's outputs (checkpoints, history) are the
same bytes as those of a run never interrupted (bit for bit on CPU; tests/test_resume.py kills a
run with SIGKILL mid-epoch). It holds because `TrainState` is everything `loop.fit` carries from
one epoch to the next, and epoch e's randomness is seeded from (seed, e) alone.

Here:
- `TrainState`: that state; `snapshot` (plain containers and CPU tensors) and `restore`.
- `run_fingerprint`: sha256 of everything that decides the run's numbers; a saved state whose
  fingerprint differs (other params or data) is never continued (`load_resume`).
- `ResumeWriter`: rewrites the state at most every `train.checkpoint_minutes`, from a thread of
  its own, atomically; deletes it once the run's outputs are written.
- Where the files live: data/resume/<out>.pt (`state_path`), with the best-epoch weights it
  refers to beside it in data/resume/<out>.best_state-<fingerprint>-e<epoch>.pt (and
  val_best_state), written only when that epoch changes. Not a DVC output: DVC would delete it
  before re-running the stage, and the killed run could not resume.

A resume point that cannot be written (disk full, no permission: any OSError) costs the run that
resume point, never the run: one warning line, and the last state on disk stays whole.
"""

from __future__ import annotations

import copy
import errno
import hashlib
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn as nn

from cifarlab.core.errors import one_line
from cifarlab.core.params import Run, TrainParams
from cifarlab.engine.checkpoints import error_reason, serialized, write_file
from cifarlab.engine.step import TrainStep

if TYPE_CHECKING:  # loop imports this module: its record type is passed to `TrainState.restore`
    from cifarlab.engine.loop import EpochStats

RESUME_DIR = Path("data/resume")  # relative to the repository root, like core.paths


def state_path(out: str) -> Path:
    """The resume state of run output `out` (the run name, or <run>-s<seed>)."""
    return RESUME_DIR / f"{out}.pt"


def run_fingerprint(
    spec: Run,
    train: TrainParams,
    epochs: int,
    stats: dict,
    n: tuple[int, int, int],
    device: torch.device,
    compiled: str | None = None,
    feature_batch: int | None = None,
) -> str:
    """sha256 of everything that decides a run's numbers (recipe, architecture, epochs, seed,
    split sizes and statistics, device kind, the train keys that change numbers, CPU threads included).

    compiled: the torch.compile mode in effect (None: eager); feature_batch: the batch size frozen
    features were computed in (None: no feature cache). Settings in effect, not raw keys: a CPU
    run is eager whatever train.compile_mode says, so that key must not void its saved epochs."""
    key = {
        "model": spec.model,
        "arch": dict(spec.arch),
        "recipe": spec.recipe.model_dump(mode="json"),
        "epochs": epochs,
        "seed": spec.seed,
        "n_train_val_test": list(n),
        "mean": stats["mean"],
        "std": stats["std"],
        "device": device.type,
        # checkpoint_minutes: when the state is saved, not what it holds (test_resume.py);
        # eval_batch_size: test passes only, unless it batches cached features (below)
        "train": train.model_dump(
            mode="json", exclude={"eval_batch_size", "checkpoint_minutes", "compile", "compile_mode"}
        ),
    }
    if compiled:
        key["compiled"] = compiled
    if feature_batch is not None:
        key["feature_batch"] = feature_batch
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class TrainState:
    """Everything `fit` carries from one epoch to the next: with the model's and optimizer's
    state (in `snapshot`) it is all a resumed run needs to continue exactly where this one was."""

    epoch: int  # the last finished epoch (0: none)
    history: list[EpochStats]
    best_acc: float
    best_epoch: int
    best_state: dict | None
    best_loss: float  # early stopping: the lowest watched loss so far ...
    since_best_loss: int  # ... and the epochs since it
    val_best_acc: float
    val_best_epoch: int | None
    val_best_state: dict | None
    stopped_early: bool
    images: int
    train_seconds: float
    diverged: dict | None = None
    # the last saved epoch of each resume, in order ([14, 62]: stopped and resumed twice); the
    # run's numbers never depend on it, its provenance does. States saved before it existed: []
    resumed_after: list[int] = field(default_factory=list)

    @classmethod
    def fresh(cls) -> TrainState:
        return cls(
            epoch=0,
            history=[],
            best_acc=-1.0,
            best_epoch=0,
            best_state=None,
            best_loss=math.inf,
            since_best_loss=0,
            val_best_acc=-1.0,
            val_best_epoch=None,
            val_best_state=None,
            stopped_early=False,
            images=0,
            train_seconds=0.0,
        )

    def snapshot(self, model: nn.Module, step: TrainStep) -> dict:
        """Plain containers and tensors only, so torch.load(weights_only=True) reads it back.
        Every tensor is a CPU copy: training may go on while another thread writes it out."""
        return {
            "state": {k: v for k, v in vars(self).items() if k != "history"},
            "history": [asdict(h) for h in self.history],
            "model": cpu_state(model),
            "optimizer": _cpu_copy(step.opt.state_dict()),
            "scheduler": copy.deepcopy(step.sched.state_dict()) if step.sched is not None else None,
            # Unused by the loop (it reseeds every epoch) but part of a full state: a later
            # change that draws from the global RNGs between epochs stays resumable.
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            },
        }

    @classmethod
    def restore(cls, snap: dict, model: nn.Module, step: TrainStep, record: type[EpochStats]) -> TrainState:
        """A `snapshot` loaded back into `model` and `step` (optimizer, scheduler) and the RNGs.
        record: the history's record type, `loop.EpochStats` (one per finished epoch)."""
        model.load_state_dict(snap["model"])
        step.opt.load_state_dict(snap["optimizer"])
        if step.sched is not None:
            step.sched.load_state_dict(snap["scheduler"])
        torch.set_rng_state(snap["rng"]["torch"])
        if snap["rng"]["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(snap["rng"]["cuda"])
        state = cls(**snap["state"], history=[record(**h) for h in snap["history"]])
        state.resumed_after = [*state.resumed_after, state.epoch]
        return state


def _cpu_copy(obj):
    """`obj` (nested dicts/lists of tensors and plain values) with every tensor copied to the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _cpu_copy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu_copy(v) for v in obj)
    return copy.deepcopy(obj)


def cpu_state(model: nn.Module) -> dict:
    """The model's weights as contiguous CPU copies: a state's (best, val_best) and the final ones."""
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}


def load_resume(path: Path, fingerprint: str, log: Callable[[str], None]) -> dict | None:
    """The saved state at `path` if it belongs to this exact run, else None (with a note why)."""
    if not path.exists():
        return None
    try:
        snap = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - a foreign or damaged file: never fatal, the run just starts over
        log(f"ignoring {path}: unreadable ({str(e).splitlines()[0][:200]}); starting from epoch 1")
        return None
    if not isinstance(snap, dict) or snap.get("fingerprint") != fingerprint:
        log(f"ignoring {path}: saved by a run with other params or data; starting from epoch 1")
        return None
    for key, name in (snap.get("blobs") or {}).items():  # best-epoch weights, in files of their own
        if name is None:
            snap["state"][key] = None
            continue
        try:
            snap["state"][key] = torch.load(path.parent / name, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - deleted or damaged: start over rather than guess
            log(
                f"ignoring {path}: its {key} file {name} is unreadable ({str(e).splitlines()[0][:200]}); "
                "starting from epoch 1"
            )
            return None
    log(f"resuming from {path}: epochs 1-{snap['state']['epoch']} already done")
    return snap


# The states a TrainState snapshot carries besides the model's, with the epoch each belongs to:
# each goes to a file of its own, rewritten only when that epoch changes.
BLOBS = (("best_state", "best_epoch"), ("val_best_state", "val_best_epoch"))


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class ResumeWriter:
    """Saves a run's resume state (`fit`'s on_epoch_end) at most every `minutes`, off the
    training thread, atomically.

    Called after every epoch with a snapshot function; when `minutes` have passed since the
    last save (always when minutes == 0) it takes the snapshot (CPU copies, on the training
    thread) and hands the writing to a background thread, so training goes on while hundreds
    of MB reach the disk. One write at a time: a new one first waits for the previous, whose
    errors surface here (but those below). The best-epoch weights go to files of their own,
    written only when their epoch changed; the main file, written last, names them, so every
    state on disk is complete. `saved_epoch`: the last epoch whose state this writer put on disk.

    A write that fails with an OSError (disk full, no permission, the directory a file) or a
    MemoryError is `log`ged as one warning and training goes on: the files this write created
    are deleted, the previous state stays whole. Later saves are still tried when due, and the
    warning is not repeated until one succeeds (then a note says so). Why: a full disk is often
    freed during a long run (another job's files deleted, space made after the warning), and
    the run should get its resume point back then; a warning at every epoch would bury the log
    under the same news.
    """

    def __init__(
        self,
        path: Path,
        fingerprint: str,
        minutes: float,
        clock: Callable[[], float] = time.monotonic,
        log: Callable[[str], None] = _stderr,
    ):
        self.path, self.fingerprint, self.minutes, self.clock, self.log = path, fingerprint, minutes, clock, log
        self.saved_epoch: int | None = None
        self._failing = False  # the last write failed (its warning given)
        self._last = clock()  # training starts now: the first save comes `minutes` later
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="cifarlab-resume")
        self._pending: Future | None = None
        self._blob_epoch: dict[str, int] = {}  # blob key -> epoch of its file on disk

    def __call__(self, epoch: int, snapshot: Callable[[], dict]) -> None:
        if self.clock() - self._last < self.minutes * 60:
            return
        snap = snapshot()
        self.wait()
        self._pending = self._pool.submit(self._write, snap)
        self._last = self.clock()

    def blob_name(self, key: str, epoch: int) -> str:
        # the fingerprint in the name: a run with other params never overwrites this run's file
        return f"{self.path.stem}.{key}-{self.fingerprint[:12]}-e{epoch}.pt"

    def _write(self, snap: dict) -> None:
        state = dict(snap["state"])
        blobs: dict[str, str | None] = {}
        files: list[tuple[Path, dict, str | None, int | None]] = []  # (path, contents, blob key, its epoch)
        for key, epoch_key in BLOBS:
            weights, epoch = state.pop(key), state[epoch_key]
            if weights is None:
                blobs[key] = None
                continue
            blobs[key] = self.blob_name(key, epoch)
            if self._blob_epoch.get(key) != epoch:
                files.append((self.path.parent / blobs[key], weights, key, epoch))
        main = {**snap, "state": state, "blobs": blobs, "fingerprint": self.fingerprint}
        files.append((self.path, main, None, None))  # last: it names the others
        created: list[tuple[Path, str]] = []  # blob files this write added, taken back if it fails
        target = self.path
        # MemoryError too: the bytes are a second copy of the state (`serialized`), and a
        # resume point is not worth the run either
        try:
            data = [serialized(obj) for _, obj, _, _ in files]
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except FileExistsError as err:  # with exist_ok: it exists and is not a directory
                raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), err.filename) from err
            self._check_room(sum(d.nbytes for d in data))
            for (target, _, key, epoch), d in zip(files, data, strict=True):
                existed = target.exists()
                write_file(target, d)
                if key is not None:
                    if not existed:
                        created.append((target, key))
                    self._blob_epoch[key] = epoch
        except (OSError, MemoryError) as err:
            for path, key in created:  # no orphan: the main file on disk names the previous ones
                self._blob_epoch.pop(key, None)
                try:
                    path.unlink(missing_ok=True)
                except OSError:
                    pass  # it stays an orphan: blob_files() finds it, the next save or remove() deletes it
            self._failed(err, target)
            return
        keep = {self.path.name, *(b for b in blobs.values() if b)}
        for old in self.blob_files():  # superseded best-epoch files (the main file names new ones)
            if old.name not in keep:
                try:
                    old.unlink(missing_ok=True)
                except OSError:
                    pass  # an orphan the state does not name: the next save or remove() tries again
        self.saved_epoch = snap["state"]["epoch"]
        if self._failing:
            self._failing = False
            self.log(f"resume point saved again: epochs 1-{self.saved_epoch} in {self.path}")

    def _check_room(self, nbytes: int) -> None:
        """ENOSPC, without writing, when the disk has less room than the files' bytes. Such a
        write would fill the disk to its last byte before failing, and any other writer there
        (another run, DVC's cache) would fail meanwhile: at every due save, while it stays full.
        A lower bound (blocks, metadata not counted): a write that passes may still fail."""
        free = shutil.disk_usage(self.path.parent).free
        if free < nbytes:
            raise OSError(
                errno.ENOSPC, f"{os.strerror(errno.ENOSPC)}: {nbytes / 1e6:.1f} MB to write, {free / 1e6:.1f} MB free"
            )

    def _failed(self, err: OSError | MemoryError, target: Path) -> None:
        if self._failing:
            return  # warned at the first failure of this stretch
        self._failing = True
        where = f" (after epoch {self.saved_epoch})" if self.saved_epoch is not None else ", if any"
        self.log(
            f"warning: resume point not saved ({target}: {error_reason(err, target)}): the run goes on; "
            f"a crash now restarts from the last saved point{where}; later saves are retried, "
            "with a note when one succeeds"
        )

    def blob_files(self) -> list[Path]:
        """This run's best-epoch files, and temp files a killed write left behind."""
        d, stem = self.path.parent, self.path.stem
        return sorted(
            [
                *d.glob(f"{stem}.*_state-*-e*.pt"),
                *d.glob(f".{stem}.*_state-*-e*.pt.*.tmp"),
                *d.glob(f".{self.path.name}.*.tmp"),
            ]
        )

    def wait(self) -> None:
        """Block until the write in flight (if any) has ended; re-raise its error, unless it was
        a disk's or memory's (a warning then, see the class): any other is a bug."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def close(self) -> None:
        self.wait()
        self._pool.shutdown()

    def remove(self) -> None:
        """The run is over: delete its resume state and best-epoch files. Its outputs are
        written by then: a file that cannot be deleted is a warning, not the run's failure."""
        self.close()
        stuck: list[tuple[Path, OSError]] = []
        for f in [self.path, *self.blob_files()]:
            try:
                f.unlink(missing_ok=True)
            except NotADirectoryError:
                pass  # data/resume is a file: nothing of this run's there
            except OSError as err:
                stuck.append((f, err))
        if stuck:
            f, err = stuck[0]
            more = f" and {len(stuck) - 1} more" if len(stuck) > 1 else ""
            self.log(
                f"warning: finished run's resume files not deleted ({f}: {error_reason(err, f)}{more}); "
                "its outputs are complete; delete them by hand"
            )


def close_quietly(writer: ResumeWriter, log: Callable[[str], None]) -> None:
    """Wait for the resume write in flight; its error is a warning here, never the run's failure."""
    try:
        writer.close()
    except Exception as err:  # noqa: BLE001 - OSError (disk full), pickling: said, not raised
        log(
            f"warning: the resume state {writer.path} was not saved ({type(err).__name__}: {one_line(err, 200)}); "
            "a rerun after a crash starts from the last state on disk"
        )
