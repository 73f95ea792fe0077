"""``[train]``: the training protocol of a run (optimiser, schedule, batches, checkpoints).

Epochs are counted from 0 in code and stored that way in checkpoints; ``epoch_NNN.pt`` and
``metrics.jsonl`` use the 1-based number of completed epochs, as astronomers quote them.
Warm-up and backbone freezing both count from the first epoch: with ``freeze_backbone_epochs = 5``
and ``warmup_epochs = 5`` the head alone is trained while the learning rate ramps up.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import Field, model_validator

from dhs_core import ComponentConfig, Slot


class AdamWConfig(ComponentConfig):
    """AdamW (Loshchilov & Hutter 2019): Adam with decoupled weight decay."""

    # optimiser name (only AdamW: the published protocols all use it)
    name: Literal["adamw"] = "adamw"
    # peak learning rate (after warm-up); above 1 AdamW diverges on any network here
    lr: float = Field(default=5e-4, gt=0, le=1)
    # decoupled weight decay (per step, multiplied by lr); above 1 it erases the weights
    weight_decay: float = Field(default=1e-4, ge=0, le=1)
    # Adam moment coefficients
    betas: tuple[float, float] = (0.9, 0.999)


class StepSchedule(ComponentConfig):
    """Multiply the learning rate by ``factor`` every ``step_epoch`` epochs (StepLR)."""

    # schedule name
    name: Literal["step"] = "step"
    # epochs between learning-rate drops (the published runs: 130 for EfficientNetV2-S, 80 for
    # BottleneckedResNet, i.e. a single drop within 160 epochs)
    step_epoch: int = Field(ge=1)
    # multiplicative factor at each drop
    factor: float = Field(default=0.5, gt=0, le=1)


class CosineSchedule(ComponentConfig):
    """Cosine annealing from lr to ``eta_min`` over ``t_max`` epochs (then held at eta_min)."""

    # schedule name
    name: Literal["cosine"] = "cosine"
    # epochs of one half cosine period
    t_max: int = Field(ge=1)
    # final learning rate
    eta_min: float = Field(default=0.0, ge=0)


class ConstantSchedule(ComponentConfig):
    """The learning rate stays at lr (after warm-up)."""

    # schedule name
    name: Literal["constant"] = "constant"


Schedule = Annotated[Union[StepSchedule, CosineSchedule, ConstantSchedule], Field(discriminator="name")]

#: validation metrics a run can monitor for best.pt / early stopping, and which way is better
MONITORABLE = {"val_auc": "max", "val_pauc": "max", "val_tpr_at_fpr": "max", "val_loss": "min"}


class EarlyStoppingConfig(ComponentConfig):
    """Stop when the metric has not improved for ``patience`` epochs."""

    # validation metric watched
    metric: Literal["val_auc", "val_pauc", "val_tpr_at_fpr", "val_loss"] = "val_auc"
    # epochs without improvement before stopping
    patience: int = Field(default=10, ge=1)
    # smallest change counted as an improvement
    min_delta: float = Field(default=0.0, ge=0)


class TrainConfig(ComponentConfig):
    """The training protocol."""

    # number of epochs (the last epoch index is epochs - 1); the published runs use <= 160, and
    # 10,000 epochs of even the smallest survey would take years
    epochs: int = Field(ge=1, le=10_000)
    # samples per forward/backward pass (what fits in memory)
    micro_batch: int = Field(default=64, ge=1)
    # samples per optimiser step; gradients of effective_batch / micro_batch micro-batches are
    # accumulated. None = micro_batch
    effective_batch: int | None = Field(default=None, ge=1)
    # optimiser
    optimizer: AdamWConfig = AdamWConfig()
    # learning-rate schedule after warm-up
    schedule: Schedule = ConstantSchedule()
    # epochs of linear warm-up from lr/100 to lr
    warmup_epochs: int = Field(default=0, ge=0)
    # epochs with the backbone frozen (head and metadata branch only; backbone BatchNorm
    # statistics frozen too), then the whole network trains
    freeze_backbone_epochs: int = Field(default=0, ge=0)
    # freezing a randomly initialised backbone trains the head on random features; it is refused
    # unless the backbone is pretrained (model.pretrained, init_weights) or this is true
    allow_random_freeze: bool = False
    # loss (a registered loss component, selected by name)
    loss: Annotated[Any, Slot("loss")] = {"name": "bce"}
    # validation metric deciding best.pt
    monitor: Literal["val_auc", "val_pauc", "val_tpr_at_fpr", "val_loss"] = "val_auc"
    # early stopping; None = train all epochs
    early_stopping: EarlyStoppingConfig | None = None
    # write epoch_NNN.pt every this many epochs (0 = never)
    checkpoint_every: int = Field(default=0, ge=0)
    # random dihedral flips/rotations of training cutouts (the symmetries of a lens image)
    augment: bool = True
    # arithmetic: auto = bf16 autocast on CUDA when supported, else fp16 with a gradient
    # scaler; always fp32 on CPU
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    # NHWC memory layout (faster convolutions on recent GPUs)
    channels_last: bool = False
    # device: auto = cuda when available
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # torch intra-op CPU threads (None = torch's default, one per core); on a shared machine use
    # at most the free cores, since oversubscribed threads spin and slow training down sharply
    cpu_threads: int | None = Field(default=None, ge=1)
    # data-loader worker processes
    num_workers: int = Field(default=0, ge=0)
    # start from the model weights of another run's checkpoint (fine-tuning, the "v4" protocol);
    # optimiser and schedule start fresh
    init_weights: str | None = None

    @model_validator(mode="after")
    def _check_batches(self) -> TrainConfig:
        eff = self.effective_batch or self.micro_batch
        if eff % self.micro_batch:
            raise ValueError(
                f"effective_batch = {eff} is not a multiple of micro_batch = {self.micro_batch}; gradients are "
                f"accumulated over whole micro-batches (e.g. effective_batch = {self.micro_batch * max(1, round(eff / self.micro_batch))})"
            )
        return self
