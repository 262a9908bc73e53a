"""Train the ``peaknet-demo`` preset on synthetic diffraction frames; writes safetensors weights.

The frames come from ``peaknet_serve.synthetic.SyntheticFrames``, the generator ``peaknet-serve
push`` uses. Half of the frames are drawn like the pusher's defaults (30 spots, here on 70 % of
the frames), half with widened spot counts, widths, intensities and backgrounds, so the model
does not learn one setting by heart; frames without spots are part of both. Labels are ``spot_mask``
disks around the injected centres, so a predicted component is centred on its spot. The input is
prepared exactly as the service prepares it (``prepare_batch`` with the default ``InputConfig``:
per-frame instance norm). Loss: class-weighted cross-entropy plus soft Dice on the peak class
(peak pixels are ~0.15 % of a hit frame).

Everything is drawn from the seed: sample ``i`` uses ``numpy.random.default_rng([seed, i])``
whatever the number of loader workers. On a CPU the run is bit-for-bit reproducible; on a GPU up
to the atomic adds of the upsampling backward pass.

    python scripts/train_demo_model.py --workers 14 --loss-log loss.tsv  # GPU: ~2.5 min on an H100
    python scripts/train_demo_model.py --device cpu --frame-size 256 --batch-size 8 --steps 1500
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from peaknet_serve.accuracy import score
from peaknet_serve.model import (
    InputConfig,
    build_peaknet,
    crop,
    load_preset,
    load_weights,
    predict_mask,
    prepare_batch,
    save_weights,
)
from peaknet_serve.peaks import find_peaks
from peaknet_serve.synthetic import FrameTruth, SyntheticFrames, blank_frame, spot_mask

logger = logging.getLogger("train_demo_model")

PRESET = "peaknet-demo"
IGNORE = 255  # label of faint spots: no loss either way
VISIBLE_SNR = 5.0  # spots at least this visible are labelled peaks
FAINT_SNR = 2.5  # spots between the two are ignored; fainter ones are background
TRAINING_SEED_BASE = 10_000  # training frames never equal the pusher's (seed 0 by default)
VALIDATION_SEED = 20_000  # nor the validation frames


class SyntheticPeaks(Dataset):
    """Sample ``i``: one float32 frame (NaN at gap pixels) and its uint8 label, both (H, W).

    Labels: 1 on spots bright enough to find, 0 on background, ``IGNORE`` on spots near the
    limit of detection (either answer is fine there) and never 1 on a gap.
    """

    def __init__(self, *, size: int, seed: int, label_radius: float, length: int) -> None:
        self.size = size
        self.seed = TRAINING_SEED_BASE + seed
        self.label_radius = label_radius
        self.length = length
        self.scale = (size / 512) ** 2  # spots per pixel as on the service's 512x512 frames

    def __len__(self) -> int:
        return self.length

    def generator(self, rng: np.random.Generator) -> SyntheticFrames:
        shape = (self.size, self.size)
        kind = rng.random()
        if kind < 1 / 3:  # the pusher's defaults
            return SyntheticFrames(
                shape=shape, peaks=max(1, round(30 * self.scale)), hit_fraction=0.7, seed=self.seed
            )
        if kind < 2 / 3:  # widened settings, true Poisson noise
            background_lo = math.exp(rng.uniform(math.log(2.0), math.log(50.0)))
            intensity_lo = math.exp(rng.uniform(math.log(600.0), math.log(3000.0)))
            sigma_lo = rng.uniform(0.6, 1.2)
            return SyntheticFrames(
                shape=shape,
                peaks=max(1, round(rng.integers(5, 90) * self.scale)),
                hit_fraction=0.8,
                seed=self.seed,
                background=(background_lo, background_lo * rng.uniform(1.0, 2.5)),
                intensity=(intensity_lo, intensity_lo * math.exp(rng.uniform(1.0, 3.0))),
                sigma=(sigma_lo, sigma_lo + rng.uniform(0.0, 0.6)),
                min_distance=float(rng.uniform(7.0, 14.0)),
                noise="poisson",
            )
        # like pattern_sim's: sharp spots from faint to strong on 0.5-80 photons/px, many
        # frames blank
        background_lo = math.exp(rng.uniform(math.log(0.5), math.log(80.0)))
        return SyntheticFrames(
            shape=shape,
            peaks=max(1, round(rng.integers(10, 120) * self.scale)),
            hit_fraction=0.5,
            seed=self.seed,
            background=(background_lo, background_lo * rng.uniform(1.0, 1.5)),
            intensity=(20.0, 5000.0),
            sigma=(0.4, 1.0),
            min_distance=6.0,
            noise="poisson",
        )

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, index])
        frames = self.generator(rng)
        image, truth = frames.frame(index)
        label = self.label(image, truth)
        if rng.random() < 0.3:
            gaps = gap_pixels(rng, image.shape)
            image[gaps] = np.nan
            label[gaps] = 0
        return image, label

    def label(self, image: np.ndarray, truth: FrameTruth) -> np.ndarray:
        """Spot disks by how visible each spot is: its photons against the Poisson noise of the
        background under a disk of 2 sigma."""
        background = float(np.median(image))
        snr = truth.intensity / np.sqrt(
            truth.intensity + background * 4 * math.pi * truth.sigma**2 + 1.0
        )
        label = np.zeros(image.shape, dtype=np.uint8)
        faint = (snr >= FAINT_SNR) & (snr < VISIBLE_SNR)
        for keep, value in ((snr >= VISIBLE_SNR, 1), (faint, IGNORE)):
            if keep.any():
                chosen = truth_subset(truth, keep)
                label[spot_mask(chosen, image.shape, radius=self.label_radius)] = value
        return label


def truth_subset(truth: FrameTruth, keep: np.ndarray) -> FrameTruth:
    """The spots of ``truth`` where ``keep``."""
    return FrameTruth(
        truth.event,
        truth.timestamp,
        truth.wavelength_nm,
        truth.panel[keep],
        truth.y[keep],
        truth.x[keep],
        truth.intensity[keep],
        truth.sigma[keep],
    )


def gap_pixels(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Module gaps (1-3 bands of 2-12 rows or columns) and 0-0.5 % dead pixels."""
    gaps = rng.random(shape) < rng.uniform(0.0, 0.005)
    for _ in range(int(rng.integers(1, 4))):
        width = int(rng.integers(2, 13))
        start = int(rng.integers(0, shape[0] - width))
        if rng.random() < 0.5:
            gaps[start : start + width] = True
        else:
            gaps[:, start : start + width] = True
    return gaps


def dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - soft Dice of the peak class over the batch's labelled pixels."""
    prob = logits.float().softmax(dim=1)[:, 1]
    counted = (target != IGNORE).float()
    target = (target == 1).float()
    overlap = (prob * target).sum()
    return 1.0 - (2.0 * overlap + 1.0) / ((prob * counted).sum() + target.sum() + 1.0)


def learning_rate(step: int, *, steps: int, peak: float, warmup: int) -> float:
    """Linear warm-up, then cosine decay to 2 % of ``peak``."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (0.02 + 0.98 * 0.5 * (1.0 + math.cos(math.pi * progress)))


def fit_steps(steps: int, *, done: int, elapsed: float, per_step: float, budget: float) -> int:
    """Steps that fit ``budget`` seconds, ``done`` steps and ``elapsed`` seconds in.

    Called at the end of warm-up, where the learning rate does not depend on the step count yet,
    so the shortened run equals a run started with ``--steps`` set to the result.
    """
    fitting = done + int((budget - elapsed) / max(per_step, 1e-9))
    if fitting >= steps:
        return steps
    fitting = max(fitting, done + 1)
    logger.warning(
        "%d steps would not fit the %.0f s budget at %.3f s/step: training %d steps "
        "(rerun with --steps %d to reproduce)",
        steps,
        budget,
        per_step,
        fitting,
        fitting,
    )
    return fitting


def validate(
    model: torch.nn.Module, device: torch.device, *, frames: int, radius: float = 1.5
) -> str:
    """Recall/precision of the model on 512x512 frames drawn like the pusher's defaults."""
    generator = SyntheticFrames(shape=(512, 512), seed=VALIDATION_SEED)
    model.eval()
    truths, found = [], []
    for start in range(0, frames, 16):
        images, batch_truths = generator.batch(start, min(16, frames - start))
        masks = predict_mask(model, torch.from_numpy(images).to(device)).cpu().numpy()
        found.extend(find_peaks(m, im) for m, im in zip(masks, images, strict=True))
        truths.extend(batch_truths)
    s = score(truths, found, radius=radius)
    rng = np.random.default_rng(VALIDATION_SEED)
    blank_peaks = []
    for photons in (1.0, 10.0, 50.0):
        for ring in (False, True):
            for gaps in (False, True):
                image = blank_frame(rng, (512, 512), photons=photons, water_ring=ring, gaps=gaps)
                mask = predict_mask(model, torch.from_numpy(image[None]).to(device))[0]
                blank_peaks.append(find_peaks(mask.cpu().numpy(), image).n_found)
    model.train()
    return (
        f"validation on {frames} frames: recall {s.recall:.4f} precision {s.precision:.4f} "
        f"mean error {s.mean_error:.3f} px p95 {s.p95_error:.3f} px hit accuracy "
        f"{s.hit_accuracy:.4f}; peaks on 12 blank 512x512 frames (1, 10, 50 photons/px, "
        f"with and without water ring and gaps): {blank_peaks}"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--out", type=Path, default=Path("src/peaknet_serve/weights/peaknet-demo.safetensors"))
    add("--loss-log", type=Path, default=None, help="write 'step loss lr' lines here")
    add("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    add("--steps", type=int, default=3000)
    add("--batch-size", type=int, default=16)
    add("--frame-size", type=int, default=512, help="square training frames, multiple of 32")
    add("--lr", type=float, default=3e-3, help="peak learning rate (AdamW)")
    add("--warmup", type=int, default=100)
    add("--weight-decay", type=float, default=1e-4)
    add("--peak-weight", type=float, default=5.0, help="cross-entropy weight of the peak class")
    add("--dice-weight", type=float, default=1.0)
    add("--label-radius", type=float, default=2.0, help="spot_mask radius of the labels, px")
    add("--seed", type=int, default=0)
    add("--init", type=Path, default=None, help="start from these weights (fine-tuning)")
    add("--workers", type=int, default=0, help="data loader processes")
    add("--log-every", type=int, default=50)
    add("--val-frames", type=int, default=128, help="512x512 frames scored at the end (0: none)")
    add(
        "--time-budget",
        type=float,
        default=None,
        help="seconds: if the speed measured during warm-up says --steps would take longer, "
        "train fewer steps (the log says how many, to reproduce the run with --steps)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    model = build_peaknet(load_preset(PRESET))
    if args.init is not None:
        load_weights(model, args.init)
        logger.info("starting from %s", args.init)
    model = model.to(device).train()
    logger.info(
        "%s: %d parameters on %s", PRESET, sum(p.numel() for p in model.parameters()), device
    )
    data = SyntheticPeaks(
        size=args.frame_size,
        seed=args.seed,
        label_radius=args.label_radius,
        length=args.steps * args.batch_size,
    )
    loader = DataLoader(
        data,
        batch_size=args.batch_size,
        shuffle=False,
        num_workers=args.workers,
        pin_memory=device.type == "cuda",
        persistent_workers=args.workers > 0,
        prefetch_factor=4 if args.workers > 0 else None,
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    class_weight = torch.tensor([1.0, args.peak_weight], device=device)
    inputs = InputConfig()
    log_lines = ["step\tloss\tce\tdice\tlr"]
    running = np.zeros(3)
    started = time.monotonic()
    bar = tqdm(loader, total=args.steps, unit="step", mininterval=5.0)
    steps = args.steps
    half_warm = started
    for step, (images, labels) in enumerate(bar):
        if step == steps:
            break
        if step == args.warmup // 2:
            half_warm = time.monotonic()
        if step == args.warmup and args.time_budget is not None:
            now = time.monotonic()
            steps = fit_steps(
                steps,
                done=step,
                elapsed=now - started,
                per_step=(now - half_warm) / (step - args.warmup // 2),
                budget=args.time_budget,
            )
            bar.total = steps
        lr = learning_rate(step, steps=steps, peak=args.lr, warmup=args.warmup)
        for group in optimizer.param_groups:
            group["lr"] = lr
        images = images.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True).long()
        x, box = prepare_batch(images, inputs)
        logits = crop(model(x), box)
        ce = F.cross_entropy(logits, labels, weight=class_weight, ignore_index=IGNORE)
        dice = dice_loss(logits, labels)
        loss = ce + args.dice_weight * dice
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        running += [loss.item(), ce.item(), dice.item()]
        if (step + 1) % args.log_every == 0 or step + 1 == steps:
            count = (step % args.log_every) + 1
            mean = running / count
            running[:] = 0
            log_lines.append(f"{step + 1}\t{mean[0]:.5f}\t{mean[1]:.5f}\t{mean[2]:.5f}\t{lr:.6f}")
            logger.info(
                "step %5d  loss %.4f  (ce %.4f, dice %.4f)  lr %.2e  %.1f s",
                step + 1,
                mean[0],
                mean[1],
                mean[2],
                lr,
                time.monotonic() - started,
            )
    bar.close()
    seconds = time.monotonic() - started
    logger.info("trained %d steps of %d frames in %.1f s", steps, args.batch_size, seconds)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_weights(model, args.out)
    logger.info("weights written to %s", args.out)
    if args.loss_log is not None:
        args.loss_log.parent.mkdir(parents=True, exist_ok=True)
        args.loss_log.write_text("\n".join(log_lines) + "\n")
    if args.val_frames > 0:
        logger.info("%s", validate(model, device, frames=args.val_frames))
    return 0


if __name__ == "__main__":
    sys.exit(main())
