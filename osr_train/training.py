"""The seed's two-stage training, on in-memory uint8 tensors normalised per batch.

Stage 1 (Siamese only): contrastive loss on pairs made by splitting each batch in two.
Stage 2 (and the baseline): cross-entropy. Every epoch ends with a validation pass and an
atomic checkpoint, so Ctrl-C always leaves the last complete epoch on disk.
"""

from __future__ import annotations

import contextlib
import copy
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from osr_train.augment import RandomAffine
from osr_train.distributed import Group, average_gradients, barrier, broadcast_buffers, broadcast_parameters, gather, rank_device
from osr_train.checkpoint import save_checkpoint
from osr_infer.data.datasets import ImageSet, OpenSetData
from osr_train.losses import ContrastiveLoss, pair_labels
from osr_train.models import Classifier, ConvNet, TwoBranch, build_model, classifier_of
from osr_infer.errors import ParameterError
from osr_infer.preprocess import PREPROCESSING, PreprocessContract
from osr_infer.reporting import SILENT, Reporter
from osr_train.config import TrainConfig
from osr_infer.spec import ModelSpec

#: Rotation prediction's classes: quarter turns (torch.rot90's k) 0, 1, 2 and 3.
ROTATION_TURNS = (0, 90, 180, 270)
#: The rotation head reads the first hidden layer through the leaky ReLU of the wide network's head.
ROTATION_SLOPE = 0.1


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ParameterError("device", "`device` cuda was asked for, but this PyTorch build sees no CUDA device")
    if name not in ("cpu", "cuda"):
        raise ParameterError("device", f"device must be auto, cpu or cuda, not {name!r}")
    return torch.device(name)


ModuleT = TypeVar("ModuleT", bound=torch.nn.Module)


class Normalizer:
    """uint8 ``(B, H, W)`` or ``(B, H, W, C)`` -> normalised float ``(B, C, H, W)`` on the device,
    by the contract's per-channel mean and std (the same arithmetic as ``contract.normalize``)."""

    def __init__(self, contract: PreprocessContract) -> None:
        self.channels = contract.channels
        if contract.channels == 1:  # scalars: one multiply-add, as the ONNX graph does
            self.scale: Any = 1.0 / (255.0 * contract.std[0])
            self.shift: Any = contract.mean[0] / contract.std[0]
        else:
            self.scale = torch.tensor([1.0 / (255.0 * s) for s in contract.std], dtype=torch.float32).view(1, -1, 1, 1)
            self.shift = torch.tensor([m / s for m, s in zip(contract.mean, contract.std, strict=True)], dtype=torch.float32).view(1, -1, 1, 1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels == 1:
            return (x.float() * self.scale - self.shift).unsqueeze(1)
        x = x.permute(0, 3, 1, 2).float()
        return x * self.scale.to(x.device) - self.shift.to(x.device)


@dataclass
class TensorSplit:
    x: torch.Tensor  # uint8 (N, *pixel_shape) on the device
    y: torch.Tensor  # int64 (N,)

    @classmethod
    def from_imageset(cls, images: ImageSet, device: torch.device) -> "TensorSplit":
        return cls(torch.from_numpy(images.images).to(device), torch.from_numpy(images.labels).to(device))

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class EpochLog:
    stage: str
    epoch: int
    train_loss: float
    val_loss: float
    val_accuracy: float
    seconds: float


@dataclass
class TrainResult:
    model: ConvNet
    history: list[EpochLog] = field(default_factory=list)
    interrupted: bool = False


@contextlib.contextmanager
def full_fp32() -> Iterator[None]:
    """Plain fp32 convolutions and matrix products on CUDA (no TF32) inside the block.

    Ampere and later GPUs run fp32 convolutions in TF32 (a 10-bit mantissa) by default:
    fine for training, but evaluation and threshold calibration must see the scores the
    exported fp32 model computes on the edge; with TF32, logits move by about 1e-3. Also
    usable as a decorator. Harmless without a GPU.
    """
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def inference_copy(module: ModuleT) -> ModuleT:
    """An eval-mode copy in channels-last memory format: about twice as fast for
    inference on CPU (oneDNN), and it leaves the training model untouched."""
    copied = copy.deepcopy(module).eval()
    copied.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # in place; torch's stubs omit memory_format
    return copied


def channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last)


@torch.inference_mode()
@full_fp32()
def predict_logits(classifier: Classifier, x: torch.Tensor, normalize: Normalizer, batch_size: int = 512) -> torch.Tensor:
    """Logits for uint8 images (no autograd; batches of 512 are fastest on CPU here)."""
    fast = inference_copy(classifier)
    return torch.cat([fast(channels_last(normalize(x[i : i + batch_size]))) for i in range(0, len(x), batch_size)])


class Trainer:
    """Runs the stages of a `TrainConfig` on an `OpenSetData`."""

    def __init__(
        self,
        config: TrainConfig,
        data: OpenSetData,
        spec: ModelSpec,
        out_dir: Path,
        reporter: Reporter = SILENT,
        record: dict[str, Any] | None = None,
        *,
        use_photo_outliers: bool = True,
        group: Group | None = None,
    ) -> None:
        """``use_photo_outliers``: False where the sample photos are the data set's own test unknowns.
        ``group``: this rank's place under torchrun (`osr_train.distributed`); None for one process."""
        self.config = config
        assert config.batch_size is not None  # settled by TrainConfig from the model
        self.group = group
        world = group.world if group is not None else 1
        if group is not None and config.batch_size < 2 * world:
            raise ValueError(f"batch_size {config.batch_size} is the global batch: with {world} ranks it must be at least {2 * world}")
        self.batch_size: int = config.batch_size // world  # this rank's share of each global batch
        self.outlier_batch = max(1, config.outlier_batch // world) if group is not None else config.outlier_batch
        self.spec = spec
        self.device = rank_device(resolve_device(config.device), group)
        self.reporter = reporter
        self.use_photo_outliers = use_photo_outliers
        self.out_dir = Path(out_dir)
        self.checkpoint_path = self.out_dir / "checkpoint.pt"
        self.record = record or {}
        self.normalize = Normalizer(spec.preprocessing)
        self.train = TensorSplit.from_imageset(data.train, self.device)
        if config.drawn_knowns:
            self.train = self._with_drawn_knowns(self.train)
        self.val = TensorSplit.from_imageset(data.val, self.device)
        torch.manual_seed(config.seed)
        # Augmentation and outlier draws: each rank its own stream (the epoch order is the sampler's).
        self.generator = torch.Generator(device="cpu").manual_seed(config.seed + (1 + group.rank if group is not None else 0))
        self.model = build_model(spec).to(self.device)
        self.classifier = classifier_of(self.model)
        self.last_saved: tuple[str, int] | None = None
        # The warps were tuned on the default 28x28 frame; shifts scale with the input size.
        scale_px = spec.preprocessing.size / PREPROCESSING.size
        self.augment = RandomAffine(fill=spec.preprocessing.background, scale_px=scale_px) if config.augment else None
        self.outliers = self._outlier_pool() if config.outlier_weight > 0 else None
        # Training only: it is not part of the model, the checkpoint's weights or the export.
        self.rotation_head = (torch.nn.Linear(self.model.fc1.out_features, len(ROTATION_TURNS)).to(self.device)
                              if config.rotation_weight > 0 else None)
        self.scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
        self._resume: dict[str, Any] | None = None  # an interrupted run's state, set by restore()
        self._parameters = list(self.model.parameters()) + (list(self.rotation_head.parameters()) if self.rotation_head is not None else [])
        if group is not None:  # every rank starts from rank 0's weights
            broadcast_parameters([self.model] + ([self.rotation_head] if self.rotation_head is not None else []))

    def _with_drawn_knowns(self, train: TensorSplit) -> TensorSplit:
        """Training knowns plus, for each class named by one character that the Hershey fonts
        draw (a digit, a letter), ``drawn_knowns`` pen-drawn glyphs of it (see glyphs.py), at most
        a quarter of the class's own images (they support the data set, never outweigh it):
        printed characters next to handwritten ones. Validation and test are left as they are."""
        from osr_train.glyphs import drawable, render_glyphs

        contract = self.spec.preprocessing
        rng = np.random.default_rng(self.config.seed + 11)
        images, labels = [], []
        for label, name in enumerate(self.spec.class_names):
            n = min(self.config.drawn_knowns, int((train.y == label).sum()) // 4)
            if n and drawable(name):
                glyphs = render_glyphs(n, contract.size, rng, name)
                images.append(glyphs if contract.channels == 1 else np.repeat(glyphs[..., None], contract.channels, axis=-1))
                labels.append(np.full(len(glyphs), label, dtype=np.int64))
        if not images:
            return train
        drawn = contract.conform(np.concatenate(images))  # through the layout step like every image
        x = torch.cat([train.x, torch.from_numpy(drawn).to(train.x.device)])
        y = torch.cat([train.y, torch.from_numpy(np.concatenate(labels)).to(train.y.device)])
        return TensorSplit(x, y)

    def _outlier_pool(self, n: int = 50_000) -> torch.Tensor:
        """Synthetic outliers made once, stored as uint8 like the digits (see outliers.py)."""
        from osr_train.outliers import OutlierGenerator

        contract = self.spec.preprocessing
        gen = OutlierGenerator(self.train.x, contract, use_photos=self.use_photo_outliers, seed=self.config.seed + 7,
                               class_names=self.spec.class_names, script_weight=self.config.script_outliers)
        pool = torch.cat([gen(min(4096, n - i)) for i in range(0, n, 4096)])
        if contract.steps:  # the outliers go through the same steps (the layout) as every decoded image
            pool = torch.from_numpy(contract.conform(pool.cpu().numpy()))
        return pool.to(self.device)

    def _optimizer(self, epochs: int) -> torch.optim.Optimizer:
        """A fresh Adam per stage (as the seed), with the recipe's schedule."""
        opt = torch.optim.Adam(self._parameters, lr=self.config.lr)
        if self.config.schedule == "onecycle":
            steps = len(self._batch_starts())
            self.scheduler = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=self.config.lr, total_steps=epochs * steps)
        else:
            self.scheduler = None
        return opt

    def _step(self, optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.group is not None:
            average_gradients(self._parameters, self.group.world)
        optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        return loss.detach()

    # -- one epoch -------------------------------------------------------------------------
    def _batch_starts(self) -> range:
        """Where each batch of an epoch starts in this rank's order; a last batch of 1 is dropped
        (a Siamese pair needs two). The same count on every rank."""
        return range(0, self._epoch_length() - 1, self.batch_size)

    def _epoch_length(self) -> int:
        """Items this rank sees per epoch: all of them, or its sampler's share (the last
        ``len % world`` dropped, so that every rank takes as many steps)."""
        return len(self.train) if self.group is None else len(self.train) // self.group.world

    def _batches(self, epoch: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """This epoch's batches: a permutation from the run's generator, or under torchrun this
        rank's share from a `DistributedSampler` (seeded by the run, ``set_epoch(epoch)``)."""
        if self.group is None:
            order = torch.randperm(len(self.train), generator=self.generator).to(self.device)
        else:
            from torch.utils.data import DistributedSampler

            everything: Any = range(len(self.train))  # a sampler needs only the length
            sampler: DistributedSampler[int] = DistributedSampler(everything, num_replicas=self.group.world, rank=self.group.rank,
                                                                  shuffle=True, seed=self.config.seed, drop_last=True)
            sampler.set_epoch(epoch)
            order = torch.tensor(list(sampler), dtype=torch.int64).to(self.device)
        bs = self.batch_size
        for start in self._batch_starts():
            idx = order[start : start + bs]
            x = self.normalize(self.train.x[idx])
            yield (self.augment(x, self.generator) if self.augment else x), self.train.y[idx]

    def _ce_step(self, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.outliers is None and self.rotation_head is None:
            return self._step(optimizer, F.cross_entropy(self.classifier(x), y))
        parts = [x]
        if self.outliers is not None:
            # Outlier exposure (Hendrycks et al.): push the posterior of outliers towards uniform.
            idx = torch.randint(0, len(self.outliers), (self.outlier_batch,), generator=self.generator).to(self.device)
            out = self.normalize(self.outliers[idx])
            if self.augment is not None:
                out = self.augment(out, self.generator)
            parts.append(out)
        if self.rotation_head is not None:
            turned, turns = self._turned_half(x)
            parts.append(turned)
        # One pass for knowns, outliers and turned knowns (batch norm sees them together).
        logits, _, hidden = self.classifier.forward_with_layers(torch.cat(parts))
        loss = F.cross_entropy(logits[: len(x)], y)
        start = len(x)
        if self.outliers is not None:
            outlier = logits[start : start + self.outlier_batch]
            loss = loss + self.config.outlier_weight * -(outlier.log_softmax(1)).mean(1).mean()
            start += self.outlier_batch
        if self.rotation_head is not None:
            loss = loss + self.config.rotation_weight * self._rotation_loss(hidden[start:], turns)
        return self._step(optimizer, loss)

    def _turned_half(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The first half of a (normalised, augmented) known batch, each image turned by a random
        multiple of 90 degrees, and the turn's index into `ROTATION_TURNS`."""
        half = x[: max(1, len(x) // 2)]
        turns = torch.randint(0, len(ROTATION_TURNS), (len(half),), generator=self.generator).to(self.device)
        turned = half.clone()
        for k in range(1, len(ROTATION_TURNS)):
            chosen = turns == k
            turned[chosen] = torch.rot90(half[chosen], k, dims=(2, 3))
        return turned, turns

    def _rotation_loss(self, hidden: torch.Tensor, turns: torch.Tensor) -> torch.Tensor:
        """Rotation prediction as an auxiliary task (Hendrycks et al. 2019, "Using self-supervised
        learning can improve model robustness and uncertainty"): a linear head on the first hidden
        layer (through the head's leaky ReLU) names each turned known's turn. Telling which way up
        a digit is needs its shape, not only what separates the known classes, so the hidden layer
        keeps more of what an unknown digit lacks. Cross-entropy over the four turns."""
        assert self.rotation_head is not None
        return F.cross_entropy(self.rotation_head(F.leaky_relu(hidden, ROTATION_SLOPE)), turns)

    def _contrastive_step(self, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, loss_fn: ContrastiveLoss) -> torch.Tensor:
        half = len(y) // 2
        _, _, pair = pair_labels(y)
        assert isinstance(self.model, TwoBranch)
        out1, out2 = self.model(x[:half], x[half : 2 * half])
        return self._step(optimizer, loss_fn(out1, out2, pair))

    # -- validation --------------------------------------------------------------------------
    def _validate_ce(self) -> tuple[float, float]:
        logits = predict_logits(self.classifier, self.val.x, self.normalize)
        loss = F.cross_entropy(logits, self.val.y).item()
        acc = (logits.argmax(1) == self.val.y).float().mean().item()
        return loss, acc

    def _validate_contrastive(self, loss_fn: ContrastiveLoss) -> tuple[float, float]:
        """Validation contrastive loss, and pair accuracy (same class iff distance < margin/2)."""
        emb = predict_logits(self.classifier, self.val.x, self.normalize)
        half = len(emb) // 2
        _, _, pair = pair_labels(self.val.y)
        loss = loss_fn(emb[:half], emb[half : 2 * half], pair).item()
        same_pred = F.pairwise_distance(emb[:half], emb[half : 2 * half]) < loss_fn.margin / 2
        acc = (same_pred == (pair == 0)).float().mean().item()
        return loss, acc

    # -- stages --------------------------------------------------------------------------------
    def _run_stage(
        self,
        stage: str,
        epochs: int,
        step: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        validate: Callable[[], tuple[float, float]],
        result: TrainResult,
        acc_label: str,
        optimizer: torch.optim.Optimizer,
    ) -> None:
        steps = len(self._batch_starts())
        first = 1
        resume = self._resume
        if resume is not None and resume["stage"] == stage:  # continue this stage where it stopped
            optimizer.load_state_dict(resume["optimizer"])
            if self.scheduler is not None and resume["scheduler"] is not None:
                self.scheduler.load_state_dict(resume["scheduler"])
            generator, torch_rng = resume["generator"], resume["torch_rng"]
            if self.group is not None:
                generator, torch_rng = resume["rank_states"][self.group.rank]
            self.generator.set_state(generator)
            torch.set_rng_state(torch_rng)
            first = int(resume["epoch"]) + 1
            self._resume = None
        with self.reporter.progress(f"{stage} epoch {first}/{epochs}", total=epochs * steps, completed=(first - 1) * steps) as task:
            for epoch in range(first, epochs + 1):
                task.update(description=f"{stage} epoch {epoch}/{epochs}")
                t0 = time.perf_counter()
                self.model.train()
                total = torch.zeros((), device=self.device)
                n = 0
                for x, y in self._batches(epoch + (10_000 if stage != "pretrain" else 0)):
                    total += step(x, y)
                    n += 1
                    task.advance(1)
                if self.group is not None:
                    broadcast_buffers(self.model)  # rank 0's batch-norm statistics, as DDP keeps them
                train_loss = (total / max(n, 1)).item()
                val_loss, val_acc = validate()
                seconds = time.perf_counter() - t0
                log = EpochLog(stage, epoch, train_loss, val_loss, val_acc, seconds)
                result.history.append(log)
                self._save_epoch(stage, epoch, optimizer, result.history)
                status = f"loss {train_loss:.4f}  val loss {val_loss:.4f}  {acc_label} {val_acc:.2%}"
                task.update(status=status)
                self.reporter.info(f"  {stage} {epoch:>3}/{epochs}  {status}  ({seconds:.1f} s)")

    def _save_epoch(self, stage: str, epoch: int, optimizer: torch.optim.Optimizer, history: list[EpochLog]) -> None:
        """An intermediate checkpoint with everything needed to continue bit for bit (``--resume``)."""
        resume = {
            "stage": stage, "epoch": epoch, "optimizer": optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "generator": self.generator.get_state(), "torch_rng": torch.get_rng_state(),
            "history": history_to_json(history),
        }
        if self.rotation_head is not None:  # training-only weights: not in the model's state dict
            resume["rotation_head"] = {k: v.detach().cpu() for k, v in self.rotation_head.state_dict().items()}
        if self.group is not None:  # each rank's random streams, so that every rank continues its own
            resume["rank_states"] = gather((self.generator.get_state(), torch.get_rng_state()))
            resume["world"] = self.group.world
            if not self.group.main:  # only rank 0 writes
                self.last_saved = (stage, epoch)
                return
        save_checkpoint(self.checkpoint_path, self.model, self.spec, dict(self.record, stage=stage, epoch=epoch, complete=False),
                        resume=resume)
        self.last_saved = (stage, epoch)

    def restore(self, state_dict: dict[str, Any], resume: dict[str, Any]) -> None:
        """Continue from an interrupted run's checkpoint (see `_save_epoch`)."""
        self.model.load_state_dict(state_dict)
        saved_world = int(resume.get("world", 1))
        if saved_world != (self.group.world if self.group is not None else 1):
            raise ValueError(f"the interrupted run was trained by {saved_world} process(es): resume it with as many")
        if self.rotation_head is not None:
            if "rotation_head" not in resume:
                raise ValueError("the interrupted run was trained without --rotation-weight: give the same options to resume")
            self.rotation_head.load_state_dict(resume["rotation_head"])
        self._resume = resume

    def fit(self) -> TrainResult:
        """Train all stages; on Ctrl-C return what was done with ``interrupted=True``."""
        cfg = self.config
        result = TrainResult(self.model)
        resume = self._resume
        if resume is not None:
            result.history = [EpochLog(**h) for h in resume["history"]]
        try:
            if cfg.model == "siamese" and cfg.pretrain_epochs > 0 and (resume is None or resume["stage"] == "pretrain"):
                loss_fn = ContrastiveLoss(cfg.margin)
                opt = self._optimizer(cfg.pretrain_epochs)
                self._run_stage(
                    "pretrain", cfg.pretrain_epochs,
                    lambda x, y: self._contrastive_step(opt, x, y, loss_fn),
                    lambda: self._validate_contrastive(loss_fn), result, "val pair acc", opt,
                )
            opt = self._optimizer(cfg.epochs)  # a fresh Adam, as the seed
            self._run_stage(
                "finetune" if cfg.model == "siamese" else "train", cfg.epochs,
                lambda x, y: self._ce_step(opt, x, y), self._validate_ce, result, "val acc", opt,
            )
        except KeyboardInterrupt:
            result.interrupted = True
        if self.group is not None and not result.interrupted:
            barrier()  # every rank has finished its last step
        self.model.eval()
        return result


def history_to_json(history: list[EpochLog]) -> list[dict[str, Any]]:
    return [asdict(h) for h in history]


def config_to_json(config: TrainConfig) -> dict[str, Any]:
    return asdict(config)
