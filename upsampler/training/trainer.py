"""The training loop: one readable ``Trainer.train``, on one CPU or many GPUs.

Each step reads top to bottom: degrade, discriminator step, generator step, EMA, log, sample,
checkpoint. Every random draw of a step (crops, degradations, caption dropout, z) comes from
generators seeded by (seed, step, rank), so a run resumed at step s repeats the uninterrupted
run exactly, and data-parallel ranks stay in step.

Data parallelism uses accelerate for process setup (``accelerate launch`` or ``torchrun``) and
averages gradients explicitly after each backward instead of wrapping the models in DDP: the
lazy R1 penalty differentiates through the discriminator twice, which DDP does not support,
and the generator's tracked mean style (a buffer) must be averaged too. StyleGAN2-ADA does the
same.
"""

from __future__ import annotations

import copy
import errno
import json
import math
import os
import shutil
import time
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from enum import IntEnum
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from safetensors import SafetensorError

from upsampler.data import StepBatchSampler, collate
from upsampler.degradations import DegradationPipeline, PairPool
from upsampler.io.files import atomic_output
from upsampler.io.tensors import to_uint8
from upsampler.losses.gan import (
    discriminator_loss,
    generator_adversarial_loss,
    mismatched,
    pyramid_loss,
    r1_penalty,
    reconstruction_loss,
    target_pyramid,
)
from upsampler.text.base import TextEmbeddings
from upsampler.training import builders, checkpoints
from upsampler.training.recipe import TRACKERS, Recipe, RecipeError

ProgressCallback = Callable[[int, dict], None]


class Stream(IntEnum):
    """The random streams of a step: each is seeded by (seed, step, rank, stream), so one can
    change (a new loss, another batch size) without shifting the draws of the others."""

    DEGRADATION = 1  # degradation parameters, clean-input choice, the pair pool
    TEACHER_STYLES = 2  # the z of a teacher that has style noise (online teachers only)
    CAPTION_DROPOUT = 3
    STYLE_NOISE = 10  # the student's z; micro-batch i draws from STYLE_NOISE + its first index


class TrainingDivergedError(RuntimeError):
    """A loss became NaN or infinite; training stopped without overwriting good checkpoints."""


class OutputWriteError(RuntimeError):
    """A checkpoint, sample or log of the run could not be written (a full disk, permissions);
    training stopped, and the last complete checkpoint is intact."""


def _make_accelerator(recipe: Recipe, run_dir: Path):
    """accelerate's Accelerator for ``recipe``, with the trackers of ``train.log_with``.

    accelerate quietly leaves out a tracker whose package is missing, so that is checked here
    first: a run that asked for TensorBoard fails before it starts, not after hours without
    a single event file.
    """
    try:
        import accelerate
    except ImportError as error:
        raise ImportError(
            f"training needs the package accelerate ({error}): pip install 'upsampler[train]'"
        ) from error
    from accelerate import Accelerator
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS, get_available_trackers
    from accelerate.utils import ProjectConfiguration

    trackers = recipe.train.trackers
    available = {str(tracker) for tracker in get_available_trackers()}
    for name in trackers:
        if name not in LOGGER_TYPE_TO_CLASS:
            raise RecipeError(
                f"train.log_with: this accelerate ({accelerate.__version__}) has no {name!r} "
                f"tracker; upgrade it (pip install -U accelerate) or remove {name!r}"
            )
        if name not in available:
            package = TRACKERS[name]
            raise RecipeError(
                f"train.log_with = {name!r} needs the {package} package, which is not installed: "
                f"pip install {package} (or remove {name!r} from train.log_with)"
            )
    # Trackers that write files (TensorBoard, MLflow, Aim) write them under RUN/logs/.
    project = ProjectConfiguration(project_dir=str(run_dir), logging_dir=str(run_dir / "logs"))
    return Accelerator(
        cpu=recipe.train.device == "cpu", log_with=trackers or None, project_config=project
    )


def flat_config(values: dict, prefix: str = "") -> dict[str, bool | int | float | str]:
    """``values`` (the recipe as a dict) as one level of scalars, as trackers store
    hyper-parameters: ``{"train": {"steps": 6}}`` -> ``{"train.steps": 6}``; lists and empty
    tables become their JSON text (``"[8, 16]"``)."""
    flat: dict[str, bool | int | float | str] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flat_config(value, f"{name}."))
        elif isinstance(value, bool | int | float | str):
            flat[name] = value
        else:
            flat[name] = json.dumps(value)
    return flat


class Trainer:
    """Trains a GigaGAN upsampler from a :class:`Recipe`.

    Args:
        recipe: the validated recipe.
        resume: continue the run in ``train.output_dir`` from its latest checkpoint (from step 0
            when it stopped before its first one). Without it the folder must be new or empty
            (:class:`~upsampler.training.checkpoints.RunFolderError` otherwise), so one folder
            never mixes two runs.
        progress: called after every step with ``(step, logs)``; the CLI draws its bar from it.

    Raises:
        RunFolderError, FileNotFoundError: see :func:`~upsampler.training.checkpoints.check_run_folder`;
            raised before any model is built.
        RecipeError, DataError: a recipe that cannot be trained, or bad data.
    """

    def __init__(
        self, recipe: Recipe, *, resume: bool = False, progress: ProgressCallback | None = None
    ):
        self.recipe = recipe
        self.progress = progress
        self.run_dir = Path(recipe.train.output_dir)
        self.accelerator = _make_accelerator(recipe, self.run_dir)
        self.device = self.accelerator.device
        self.rank = self.accelerator.process_index
        self.world_size = self.accelerator.num_processes
        self.is_main = self.accelerator.is_main_process

        # The run folder first, then the data: both fail before any model is built. The main
        # process decides and tells the others, which may not even see the same disk.
        self.run_id = self._start_run(resume)

        # A bad data folder fails before any model is built.
        self.dataset = builders.build_dataset(recipe)

        torch.manual_seed(recipe.train.seed)  # weight initialisation, identical on every rank
        self.generator = builders.build_generator(recipe).to(self.device)
        self.discriminator = builders.build_discriminator(recipe, self.generator).to(self.device)
        if recipe.train.init_from:
            builders.init_generator(self.generator, recipe.train.init_from)
        self.generator_ema = copy.deepcopy(self.generator).eval().requires_grad_(False)
        if recipe.data.crop_size % (recipe.scale * self.generator.size_multiple):
            raise RecipeError(
                f"data.crop_size ({recipe.data.crop_size}) must be a multiple of scale x size_multiple "
                f"({recipe.scale} x {self.generator.size_multiple}) so the low-resolution crop fits the model"
            )
        self.scale = self.generator.scale
        self.teacher = builders.build_teacher(recipe, self.device)

        optimisers = builders.build_optimisers(recipe, self.generator, self.discriminator)
        self.optimizer_g, self.optimizer_d = optimisers.generator, optimisers.discriminator
        self.scheduler_g = optimisers.generator_schedule
        self.scheduler_d = optimisers.discriminator_schedule
        precision = recipe.train.mixed_precision
        self.autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=precision == "fp16")

        self.degrade = builders.build_degradation(recipe)
        self.clean_degrade = DegradationPipeline.from_preset("bicubic", scale=self.scale)
        self.pool = (
            PairPool(recipe.degradation.pool_size) if recipe.degradation.pool_size > 0 else None
        )
        self.lpips = builders.build_lpips(recipe, self.device)
        self.clip = builders.build_clip(recipe, self.device)
        self.text_encoder = builders.build_text_encoder(recipe, self.generator, self.device)
        self._text_cache: dict[str, TextEmbeddings] = self._read_text_cache()

        self.step = 0
        if resume:
            self._resume()

    # ------------------------------------------------------------------ set-up helpers

    def _start_run(self, resume: bool) -> str:
        """Check the run folder (main process) and return the run's id, the same on every rank:
        a new one, or for ``resume`` the one in ``run.json`` (or in the checkpoint, see _resume)."""
        decision: tuple[Exception | None, str | None] = (None, None)
        if self.is_main:
            try:
                checkpoints.check_run_folder(self.run_dir, resume=resume)
                run_id = checkpoints.read_run_id(self.run_dir) if resume else None
                decision = (None, run_id)
            except (checkpoints.RunFolderError, FileNotFoundError) as error:
                decision = (error, None)
        if self.world_size > 1:
            from accelerate.utils import broadcast_object_list

            decision = tuple(broadcast_object_list(list(decision)))
        error, run_id = decision
        if error is not None:
            raise error
        self._run_id_recorded = run_id is not None
        return run_id or self._from_main(checkpoints.new_run_id())

    def _from_main(self, value):
        """``value`` as the main process has it, on every process."""
        if self.world_size == 1:
            return value
        from accelerate.utils import broadcast_object_list

        return broadcast_object_list([value])[0]

    def _read_text_cache(self) -> dict[str, TextEmbeddings]:
        """Precomputed embeddings from ``text.cache``: ``{caption: (1, T, D) embeddings}``."""
        path = Path(self.recipe.text.cache) if self.recipe.text.cache else None
        if self.text_encoder is None or path is None or not path.is_file():
            return {}
        from safetensors import safe_open

        cache = {}
        with safe_open(str(path), framework="pt") as handle:
            captions = json.loads(handle.metadata()["captions"])
            tokens, pooled, mask = (
                handle.get_tensor(name) for name in ("tokens", "pooled", "mask")
            )
        if tokens.shape[-1] != self.text_encoder.dim:
            raise RecipeError(
                f"text.cache {path} holds {tokens.shape[-1]}-d embeddings but the text encoder gives "
                f"{self.text_encoder.dim}-d ones: it was made with another encoder; delete it or change text.cache"
            )
        for row, caption in enumerate(captions):
            cache[caption] = TextEmbeddings(
                tokens[row : row + 1], pooled[row : row + 1], mask[row : row + 1].bool()
            )
        return cache

    def _write_text_cache(self) -> None:
        if self.text_encoder is None or not self.recipe.text.cache or not self._text_cache:
            return
        from safetensors.torch import save_file

        path = Path(self.recipe.text.cache)
        captions = list(self._text_cache)
        rows = TextEmbeddings.cat([self._text_cache[c] for c in captions]).to("cpu")
        with (
            self._stop_on_write_error(f"write the text cache {path}"),
            atomic_output(path) as tmp,
        ):
            save_file(
                {
                    "tokens": rows.tokens.contiguous(),
                    "pooled": rows.pooled.contiguous(),
                    "mask": rows.mask.to(torch.uint8),
                },
                str(tmp),
                metadata={"captions": json.dumps(captions)},
            )

    def _resume(self) -> None:
        checkpoint = checkpoints.latest_checkpoint(self.run_dir)
        if checkpoint is None:  # the run stopped before its first checkpoint: start it again
            return
        state = checkpoints.load_trainer_state(checkpoint)
        saved_id = state.get("run_id")
        if saved_id is not None and saved_id != self.run_id:
            if self._run_id_recorded:
                raise checkpoints.RunFolderError(
                    f"{checkpoint} belongs to run {saved_id} but {self.run_dir / checkpoints.RUN_FILE} "
                    f"names run {self.run_id}: the folder mixes two runs; move one of them away"
                )
            self.run_id = saved_id  # run.json lost (or never written): the checkpoint knows
        for name, model in (
            ("generator", self.generator),
            ("generator_ema", self.generator_ema),
            ("discriminator", self.discriminator),
        ):
            loaded = type(model).from_pretrained(checkpoint / name)
            model.load_state_dict(loaded.state_dict())
        self.optimizer_g.load_state_dict(state["optimizer_g"])
        self.optimizer_d.load_state_dict(state["optimizer_d"])
        self.scheduler_g.load_state_dict(state["scheduler_g"])
        self.scheduler_d.load_state_dict(state["scheduler_d"])
        self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["torch_rng"])
        if self.pool is not None:
            self.pool.load_state_dict(state["pool"])
        self.step = int(state["step"])

    # ------------------------------------------------------------------ per-step helpers

    def _generator_for(self, step: int, stream: int) -> torch.Generator:
        """A generator on the device, seeded by (seed, step, rank, :class:`Stream`)."""
        seed = hash((self.recipe.train.seed, step, self.rank, int(stream))) % 2**63
        return torch.Generator(self.device).manual_seed(seed)

    def _encode(self, captions: list[str], step: int) -> TextEmbeddings | None:
        if self.text_encoder is None:
            return None
        dropout = self.recipe.data.caption_dropout
        if dropout > 0:
            draws = torch.rand(
                len(captions),
                generator=self._generator_for(step, Stream.CAPTION_DROPOUT),
                device=self.device,
            ).tolist()
            captions = [
                "" if draw < dropout else caption
                for draw, caption in zip(draws, captions, strict=True)
            ]
        missing = [c for c in dict.fromkeys(captions) if c not in self._text_cache]
        if missing:
            encoded = self.text_encoder.encode(missing)
            for row, caption in enumerate(missing):
                self._text_cache[caption] = encoded.index([row]).to("cpu")
        return TextEmbeddings.cat([self._text_cache[c] for c in captions]).to(self.device)

    def _autocast(self):
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def _average_gradients(self, model: torch.nn.Module) -> None:
        """All-reduce the gradients of ``model`` (one flat buffer) across data-parallel ranks."""
        if self.world_size == 1:
            return
        params = [p for p in model.parameters() if p.requires_grad]
        flat = torch.cat(
            [(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in params]
        )
        torch.distributed.all_reduce(flat)
        flat /= self.world_size
        offset = 0
        for p in params:
            p.grad = flat[offset : offset + p.numel()].view_as(p).clone()
            offset += p.numel()

    def _optimizer_step(self, model, optimizer, scheduler) -> None:
        self._average_gradients(model)
        self.scaler.unscale_(optimizer)
        if self.recipe.optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), self.recipe.optim.grad_clip)
        self.scaler.step(optimizer)
        self.scaler.update()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)

    def _check_finite(self, logs: dict) -> None:
        bad = {k: v for k, v in logs.items() if not math.isfinite(v)}
        if bad:
            last = checkpoints.latest_checkpoint(self.run_dir)
            where = (
                f"the last good checkpoint is {last}" if last else "no checkpoint was written yet"
            )
            raise TrainingDivergedError(
                f"non-finite loss at step {self.step}: {bad}; training stopped and {where} "
                "(try a lower learning rate, gradient clipping or fp32)"
            )

    @torch.no_grad()
    def _update_ema(self) -> None:
        optim = self.recipe.optim
        decay = 0.0 if self.step < optim.ema_start else optim.ema_decay
        for ema, live in zip(
            self.generator_ema.parameters(), self.generator.parameters(), strict=True
        ):
            ema.lerp_(live.detach(), 1.0 - decay)
        for ema, live in zip(self.generator_ema.buffers(), self.generator.buffers(), strict=True):
            ema.copy_(live)

    @torch.no_grad()
    def _sync_buffers(self) -> None:
        """Average the generator's tracked mean style across ranks (each saw its own batch)."""
        if self.world_size > 1:
            for buffer in self.generator.buffers():
                torch.distributed.all_reduce(buffer)
                buffer /= self.world_size

    # ------------------------------------------------------------------ the loop

    def train(self) -> Path:
        """Run until ``train.steps``; returns the final checkpoint folder."""
        recipe, train = self.recipe, self.recipe.train
        micro = recipe.data.batch_size
        accumulation = train.gradient_accumulation
        sampler = StepBatchSampler(
            len(self.dataset),
            batch_size=micro * accumulation,
            seed=train.seed,
            start_step=self.step,
            steps=train.steps,
            rank=self.rank,
            world_size=self.world_size,
        )
        loader = torch.utils.data.DataLoader(
            self.dataset,
            batch_sampler=sampler,
            num_workers=recipe.data.num_workers,
            collate_fn=collate,
        )
        if self.is_main:
            with self._stop_on_write_error(f"write {self.run_dir / 'recipe.toml'}"):
                self.run_dir.mkdir(parents=True, exist_ok=True)
                checkpoints.write_run_file(self.run_dir, self.run_id)
                with atomic_output(self.run_dir / "recipe.toml") as tmp:
                    tmp.write_text(recipe.dumps())
        self.accelerator.wait_for_everyone()
        self.generator.train()
        self.discriminator.train()
        last_checkpoint = checkpoints.latest_checkpoint(self.run_dir)

        self._start_trackers()
        try:
            for batch in loader:
                started = time.perf_counter()
                gan_phase = self.step >= train.warmup_steps
                hq_all = batch["hq"].to(self.device, non_blocking=True)
                text_all = self._encode(batch["caption"], self.step)

                # 1. Degrade: high-resolution crops -> realistic low-resolution inputs, on the device;
                # the teacher's answer for them. A teacher cache holds both already.
                if "lq" in batch:
                    lq_all = batch["lq"].to(self.device, non_blocking=True)
                    teacher_all = batch["teacher"].to(self.device, non_blocking=True)
                else:
                    with torch.no_grad():
                        lq_all, hq_all = self._degrade(hq_all)
                        teacher_all = self._teach(lq_all) if self.teacher is not None else None

                logs: dict[str, float] = {}
                captions = batch["caption"]

                # 2. Discriminator step (GAN phase only), with lazy R1 on real images.
                if gan_phase:
                    apply_r1 = recipe.loss.r1_gamma > 0 and self.step % recipe.loss.r1_interval == 0
                    for start, lq, hq, teacher, text, _ in self._micro_batches(
                        micro, lq_all, hq_all, teacher_all, text_all, captions
                    ):
                        logs_d = self._discriminator_step(
                            lq, hq, teacher, text, apply_r1, accumulation, start
                        )
                        for k, v in logs_d.items():
                            logs[k] = logs.get(k, 0.0) + v / accumulation
                    self._optimizer_step(self.discriminator, self.optimizer_d, self.scheduler_d)

                # 3. Generator step: reconstruction (+ LPIPS) always, adversarial in the GAN phase;
                # the same against the teacher's output when distilling.
                for start, lq, hq, teacher, text, micro_captions in self._micro_batches(
                    micro, lq_all, hq_all, teacher_all, text_all, captions
                ):
                    logs_g = self._generator_step(
                        lq, hq, teacher, text, micro_captions, gan_phase, accumulation, start
                    )
                    for k, v in logs_g.items():
                        logs[k] = logs.get(k, 0.0) + v / accumulation
                self._check_finite(logs)
                self._optimizer_step(self.generator, self.optimizer_g, self.scheduler_g)
                self._sync_buffers()

                # 4. EMA of the generator: the weights that get released.
                self._update_ema()
                self.step += 1

                # 5. Log, 6. sample, 7. checkpoint.
                logs["seconds_per_step"] = time.perf_counter() - started
                logs["lr"] = self.scheduler_g.get_last_lr()[0]
                if self.is_main and (self.step % train.log_every == 0 or self.step == train.steps):
                    self._log(logs)
                if self.is_main and (
                    self.step % train.sample_every == 0 or self.step == train.steps
                ):
                    self._save_samples()
                if self.step % train.checkpoint_every == 0 or self.step in (
                    train.steps,
                    train.warmup_steps,
                ):
                    last_checkpoint = self.save_checkpoint()
                if self.progress is not None and self.is_main:
                    self.progress(self.step, logs)
        finally:
            self._end_trackers()
        self.accelerator.wait_for_everyone()
        return last_checkpoint

    def _degrade(self, hq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(lq, target) for a batch of crops; the target is unsharp-masked when configured."""
        generator = self._generator_for(self.step, Stream.DEGRADATION)
        config = self.recipe.degradation
        lq, hq = self.degrade.make_pair(hq, generator, sharpen=config.sharpen_target)
        if config.clean_probability > 0:
            clean = torch.rand(lq.shape[0], generator=generator, device=generator.device)
            clean = clean.to(lq.device) < config.clean_probability
            lq = torch.where(clean[:, None, None, None], self.clean_degrade(hq, generator), lq)
        if self.pool is not None:
            lq, hq = self.pool(lq, hq, generator=generator)
        return lq.contiguous(), hq.contiguous()

    @staticmethod
    def _micro_batches(micro, lq_all, hq_all, teacher_all, text_all, captions):
        """Yield (start, lq, hq, teacher, text, captions) slices of ``micro`` images for
        gradient accumulation (teacher and text None when absent)."""
        for start in range(0, hq_all.shape[0], micro):
            stop = min(start + micro, hq_all.shape[0])
            text = text_all.index(range(start, stop)) if text_all is not None else None
            teacher = teacher_all[start:stop] if teacher_all is not None else None
            yield start, lq_all[start:stop], hq_all[start:stop], teacher, text, captions[start:stop]

    def _teach(self, lq: torch.Tensor) -> torch.Tensor:
        """The frozen teacher's output for ``lq`` (B, 3, h, w): (B, 3, scale*h, scale*w) in [0, 1]."""
        ws = None
        if self.teacher.uses_styles:
            generator = self._generator_for(self.step, Stream.TEACHER_STYLES)
            ws = self.teacher.image_styles(None, generator=generator)
            ws = ws.expand(lq.shape[0], *ws.shape[1:])
        return self.teacher(lq.float(), ws=ws).hq.float().clamp(0.0, 1.0)

    def _pyramids(self, output, hq: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Fake and real pyramids for the discriminator: full resolution first, its scale count."""
        fake = output.pyramid[::-1][: self.discriminator.num_scales]
        real = target_pyramid(hq, [tuple(level.shape[-2:]) for level in fake])
        return fake, real

    def _discriminator_step(
        self, lq, hq, teacher, text, apply_r1, accumulation, start
    ) -> dict[str, float]:
        loss_config, teacher_real = self.recipe.loss, self.recipe.teacher.real
        with torch.no_grad(), self._autocast():
            fake_output = self.generator(
                lq,
                text,
                generator=self._generator_for(self.step, Stream.STYLE_NOISE + start),
                return_pyramid=True,
            )
        fake, real = self._pyramids(fake_output, hq)
        fake = [level.detach().float() for level in fake]
        if apply_r1:
            real = [level.detach().requires_grad_(True) for level in real]
        with self._autocast():
            real_logits = self.discriminator(real, lq, text)
            fake_logits = self.discriminator(fake, lq, text)
            loss = discriminator_loss(real_logits, fake_logits)
            logs = {"d_loss": loss.item()}
            if text is not None and loss_config.matching_aware > 0 and lq.shape[0] > 1:
                # Matching-aware loss (GigaGAN Sec. 3.3): a real image with another image's
                # text is a fake, so the discriminator must check the text, not just realism.
                wrong = self.discriminator(real, lq, text.index(mismatched(lq.shape[0])))
                matching = torch.stack([F.softplus(logit).mean() for logit in wrong]).mean()
                loss = loss + loss_config.matching_aware * matching
                logs["d_matching"] = matching.item()
            if teacher is not None and teacher_real > 0:
                # The teacher's answers count as real too: clean, sharp outputs for exactly
                # this input, a target the student can reach where a photo's detail is lost.
                levels = [tuple(level.shape[-2:]) for level in fake]
                taught = self.discriminator(target_pyramid(teacher.float(), levels), lq, text)
                taught_real = torch.stack([F.softplus(-logit).mean() for logit in taught]).mean()
                loss = loss + teacher_real * taught_real
                logs["d_teacher_real"] = taught_real.item()
        if apply_r1:
            penalty = r1_penalty([logit.float() for logit in real_logits], real)
            # Scaled by the interval because it runs only every r1_interval steps.
            loss = loss + loss_config.r1_gamma / 2 * penalty * loss_config.r1_interval
            logs["r1"] = penalty.item()
        self.scaler.scale(loss / accumulation).backward()
        return logs

    def _generator_step(
        self, lq, hq, teacher, text, captions, gan_phase, accumulation, start
    ) -> dict[str, float]:
        loss_config = self.recipe.loss
        with self._autocast():
            output = self.generator(
                lq,
                text,
                generator=self._generator_for(self.step, Stream.STYLE_NOISE + start),
                return_pyramid=True,
            )
            hq_fake = output.hq.float()
            reconstruction = reconstruction_loss(hq_fake, hq, loss_config.reconstruction_type)
            loss = loss_config.reconstruction * reconstruction
            logs = {"reconstruction": reconstruction.item()}
            if loss_config.pyramid > 0:
                pyramid = pyramid_loss(
                    [p.float() for p in output.pyramid], hq, loss_config.reconstruction_type
                )
                loss = loss + loss_config.pyramid * pyramid
                logs["pyramid"] = pyramid.item()
            perceptual_on = gan_phase or loss_config.perceptual_in_warmup
            if self.lpips is not None and perceptual_on and loss_config.lpips > 0:
                perceptual = self.lpips(hq_fake, hq).mean()
                loss = loss + loss_config.lpips * perceptual
                logs["lpips"] = perceptual.item()
            if teacher is not None:
                loss = loss + self._teacher_losses(output, hq_fake, teacher, perceptual_on, logs)
            if self.clip is not None and perceptual_on:
                clip = self.clip(hq_fake, captions)
                loss = loss + loss_config.clip * clip
                logs["clip"] = clip.item()
            if gan_phase and loss_config.adversarial > 0:
                fake, _ = self._pyramids(output, hq)
                adversarial = generator_adversarial_loss(self.discriminator(fake, lq, text))
                loss = loss + loss_config.adversarial * adversarial
                logs["g_adversarial"] = adversarial.item()
        logs["g_loss"] = loss.item()
        self.scaler.scale(loss / accumulation).backward()
        # The generator's loss also filled the discriminator's gradients: drop them.
        self.discriminator.zero_grad(set_to_none=True)
        return logs

    def _teacher_losses(self, output, hq_fake, teacher, perceptual_on, logs) -> torch.Tensor:
        """Distillation: the ground-truth losses again, against the teacher's output."""
        config, kind = self.recipe.teacher, self.recipe.loss.reconstruction_type
        teacher = teacher.float()
        distance = reconstruction_loss(hq_fake, teacher, kind)
        logs["teacher_reconstruction"] = distance.item()
        loss = config.reconstruction * distance
        if config.pyramid > 0:
            pyramid = pyramid_loss([p.float() for p in output.pyramid], teacher, kind)
            loss = loss + config.pyramid * pyramid
            logs["teacher_pyramid"] = pyramid.item()
        if self.lpips is not None and perceptual_on and config.lpips > 0:
            perceptual = self.lpips(hq_fake, teacher).mean()
            loss = loss + config.lpips * perceptual
            logs["teacher_lpips"] = perceptual.item()
        return loss

    # ------------------------------------------------------------------ outputs

    def _log(self, logs: dict) -> None:
        record = {
            "step": self.step,
            "run_id": self.run_id,
            **{k: round(v, 6) for k, v in logs.items()},
        }
        path = self.run_dir / "metrics.jsonl"
        with self._stop_on_write_error(f"write {path}"), path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        if self.accelerator.trackers:
            with self._stop_on_write_error(f"log step {self.step} to {self._tracker_names}"):
                self.accelerator.log(logs, step=self.step)

    @property
    def _tracker_names(self) -> str:
        return ", ".join(self.recipe.train.trackers)

    def _start_trackers(self) -> None:
        """Start the trackers of ``train.log_with`` (main process) with the recipe, flattened,
        and the run id as their configuration. Local ones write under ``RUN/logs/``; the run
        folder's name is the project name every tracker gets."""
        if not (self.is_main and self.recipe.train.trackers):
            return
        config = {"run_id": self.run_id, **flat_config(self.recipe.to_dict())}
        with self._stop_on_write_error(f"start the trackers ({self._tracker_names})"):
            self.accelerator.init_trackers(self.run_dir.resolve().name, config=config)

    def _end_trackers(self) -> None:
        """Finish the trackers (flush and close), also when training stops early.

        This is what ``Accelerator.end_training`` does to trackers; that method also destroys
        the process group, which a caller of :meth:`train` may still need (to save or
        compare the weights of every rank, as the data-parallel test does)."""
        trackers = list(self.accelerator.trackers)
        self.accelerator.trackers.clear()
        for tracker in trackers:
            tracker.finish()

    @torch.no_grad()
    def _save_samples(self, count: int = 4) -> Path:
        """A PNG grid, one row per fixed validation crop: LQ (nearest) | EMA output | HQ."""
        keys = StepBatchSampler(
            len(self.dataset), batch_size=count, seed=self.recipe.train.seed + 1, steps=1
        ).batch(0)
        batch = collate([self.dataset[key] for key in keys])
        hq = batch["hq"].to(self.device)
        if "lq" in batch:  # a teacher cache
            lq = batch["lq"].to(self.device)
        else:
            lq = self.degrade(
                hq, generator=torch.Generator(self.device).manual_seed(self.recipe.train.seed)
            )
        text = None
        if self.text_encoder is not None:
            text = self.text_encoder.encode(batch["caption"]).to(self.device)
        output = self.generator_ema(
            lq, text, generator=torch.Generator(self.device).manual_seed(0)
        ).hq.clamp(0, 1)
        lq_big = F.interpolate(lq, scale_factor=self.scale, mode="nearest")
        rows = torch.cat(
            [torch.cat([a, b, c], dim=-1) for a, b, c in zip(lq_big, output, hq, strict=True)],
            dim=-2,
        )
        pixels = to_uint8(rows)
        folder = self.run_dir / "samples"
        path = folder / f"step-{self.step:08d}.png"
        with self._stop_on_write_error(f"write the sample {path}"), atomic_output(path) as tmp:
            Image.fromarray(pixels).save(tmp, format="PNG")
        return path

    def save_checkpoint(self) -> Path:
        """Write a checkpoint of the current step (main process), atomically.

        Older checkpoints are pruned only once it is complete. If it cannot be written (a full
        disk) its temporary folder is removed, the older checkpoints stay, and every process
        raises :class:`OutputWriteError`.
        """
        final = checkpoints.checkpoint_dir(self.run_dir, self.step)
        failure: OutputWriteError | None = None
        if self.is_main:
            state = {
                "step": self.step,
                "run_id": self.run_id,
                "optimizer_g": self.optimizer_g.state_dict(),
                "optimizer_d": self.optimizer_d.state_dict(),
                "scheduler_g": self.scheduler_g.state_dict(),
                "scheduler_d": self.scheduler_d.state_dict(),
                "scaler": self.scaler.state_dict(),
                "torch_rng": torch.get_rng_state(),
            }
            if self.pool is not None:
                state["pool"] = self.pool.state_dict()

            def write(tmp: Path) -> None:
                self.generator.save_pretrained(tmp / "generator")
                self.generator_ema.save_pretrained(tmp / "generator_ema")
                self.discriminator.save_pretrained(tmp / "discriminator")
                torch.save(state, tmp / "trainer_state.pt")
                (tmp / "recipe.toml").write_text(self.recipe.dumps())

            try:
                with self._stop_on_write_error(f"write checkpoint {final.name} to {final.parent}"):
                    checkpoints.write_atomically(final, write)
                # The end of the reconstruction warm-up is a release of its own (the PSNR model).
                warmup_end = checkpoints.checkpoint_dir(
                    self.run_dir, self.recipe.train.warmup_steps
                )
                with self._stop_on_write_error(f"remove old checkpoints in {final.parent}"):
                    checkpoints.prune_checkpoints(
                        self.run_dir, self.recipe.train.keep_checkpoints, protect=[warmup_end]
                    )
                self._write_text_cache()
            except OutputWriteError as error:
                failure = error
        # Every process learns whether the main one succeeded (this is also the barrier), so
        # none waits forever for a process that stopped.
        if self.world_size > 1:
            flag = torch.tensor([0.0 if failure else 1.0], device=self.device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
            if failure is None and flag.item() == 0:
                failure = OutputWriteError(
                    f"the main process could not write checkpoint {final.name}; see its error"
                )
        if failure is not None:
            raise failure
        return final

    @contextmanager
    def _stop_on_write_error(self, what: str, *, cleanup: Path | None = None):
        """Turn a failure to write (doing ``what``) into one :class:`OutputWriteError` that says
        what failed, why, which checkpoint is intact and how to go on; ``cleanup`` is a
        temporary file to remove.

        A full disk is an OSError from Python's own writes, but a SafetensorError from
        safetensors and a RuntimeError ("unexpected pos") from torch.save.
        """
        try:
            yield
        except (OSError, RuntimeError, SafetensorError) as error:
            if cleanup is not None:
                cleanup.unlink(missing_ok=True)
            raise OutputWriteError(self._write_error_message(what, error)) from error

    def _write_error_message(self, what: str, error: Exception) -> str:
        reason = getattr(error, "strerror", None) or str(error)
        try:
            free = shutil.disk_usage(self.run_dir).free
        except OSError:
            free = None
        if getattr(error, "errno", None) == errno.ENOSPC or "No space left" in reason:
            full, reason = True, os.strerror(errno.ENOSPC)
        elif getattr(error, "errno", None) == errno.EDQUOT:
            full = True
        elif free is not None and free < 16 * 2**20:  # torch.save says only "unexpected pos"
            full, reason = (
                True,
                f"{reason} (the disk holding {self.run_dir} is full: {free} bytes free)",
            )
        else:
            full = False
        fix = "free space on that disk" if full else "fix that"
        last = checkpoints.latest_checkpoint(self.run_dir)
        if last is None:
            return (
                f"could not {what}: {reason}; no checkpoint was written yet, so the "
                f"{self.step} steps done are lost; {fix} and run again with --resume"
            )
        done = checkpoints.checkpoint_step(last)
        lost = f"; steps {done + 1}-{self.step} are lost" if self.step > done else ""
        return (
            f"could not {what}: {reason}; the previous checkpoint {last.name} is intact{lost}; "
            f"{fix} and run again with --resume"
        )
