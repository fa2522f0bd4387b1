"""``manage.py pretrain``: build a model from MNIST + EMNIST letters and/or local image folders."""

import json
import shlex
import sys
import time
from pathlib import Path

import torch
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from training import canvas_eval, datasets, nn, pretraining, registry
from training.classes import CLASSES
from training.models import ModelVersion
from training.pretraining_report import accuracy_table, prior_summary
from training.pretraining_sources import SOURCE_ERRORS, Sources, load_sources


class Command(BaseCommand):
    help = (
        "Pretrain the CNN. By default downloads MNIST and EMNIST letters through torchvision; "
        "offline, use --mnist-root, --data-dir, --packs, --strokes and --fonts."
    )

    def add_arguments(self, parser):
        _source_arguments(parser.add_argument_group("sources"))
        _training_arguments(parser.add_argument_group("training"))
        _output_arguments(parser.add_argument_group("report and result"))

    def handle(self, *args, **options):
        started = time.monotonic()
        try:
            device = pretraining.training_device(options["device"])
        except pretraining.DeviceUnavailable as error:
            raise CommandError(f"--device {options['device']}: {error}.") from None
        precision = pretraining.training_precision(options["precision"], device)
        _check_schedule(options)
        initial = self._weights(options["init_from"], "--init-from")
        average_with = self._weights(options["average_with"], "--average-with")
        sources = _load(options)
        train = datasets.GlyphData.concat(sources.train)
        if not len(train):
            raise CommandError("No training images found.")
        schedule = _schedule(train, options, device=device, precision=precision, initial=initial)
        self.stdout.write(
            f"Training on {len(train)} images for {schedule['steps']} steps "
            f"({schedule['epochs']:g} epochs) on {device} ({precision}): {sources.counts}"
        )
        model = self._train(train, options, steps=schedule["steps"], device=device, initial=initial)
        if average_with is not None:
            pretraining.average_weights(model, average_with, share=options["average_share"])
        prior = self._add_prior(model, sources, options)
        # Pretrained versions are stored at half precision; report on the weights as stored.
        weights = nn.serialize_state(model, half=True)
        model = nn.deserialize_state(weights)
        heldout = datasets.GlyphData.concat(list(sources.eval_sets.values()))
        metrics = self._metrics(model, heldout, sources.eval_sets, options)
        duration = round(time.monotonic() - started, 1)
        training_info = _training_info(
            options,
            sources=sources.counts,
            schedule=schedule,
            prior=prior,
            device=device,
            precision=precision,
            duration=duration,
        )
        anchors = pretraining.anchor_set(sources.train, heldout, seed=options["seed"])
        has_active = ModelVersion.objects.filter(status=ModelVersion.Status.ACTIVE).exists()
        activate = options["activate"] or not (options["no_activate"] or has_active)
        version = registry.version_create(
            weights=weights,
            metrics=metrics,
            training_info=training_info,
            anchors=anchors,
            activate=activate,
        )
        if options["export"]:
            self._export(Path(options["export"]), version, weights, anchors)
        self.stdout.write(f"\nModel v{version.number} in {duration:.0f} s")
        self.stdout.write(accuracy_table(metrics["sets"], version.metrics))
        state = "active" if activate else "not activated"
        self.stdout.write(self.style.SUCCESS(f"Saved model v{version.number} ({state})."))

    def _train(self, train, options, *, steps: int, device: str, initial):
        """The trained network (``initial`` itself when there are no steps)."""
        if steps == 0:
            return initial
        return pretraining.pretrain(
            train,
            steps=steps,
            batch_size=options["batch_size"],
            lr=options["lr"],
            seed=options["seed"],
            balance=options["balance"],
            precision=options["precision"],
            device=device,
            threads=options["threads"],
            progress=options["verbosity"] > 0,
            initial=initial,
        )

    def _add_prior(self, model, sources, options) -> dict:
        """Fold the digit prior chosen on the validation images into ``model``; its figures."""
        validation = datasets.GlyphData.concat(sources.validation)
        prior = pretraining.choose_digit_prior(model, validation, search=not options["no_prior"])
        pretraining.add_digit_prior(model, prior["digit_prior"])
        self.stdout.write(prior_summary(prior))
        return prior

    def _metrics(self, model, heldout, eval_sets, options) -> dict:
        """The version's figures: all held-out images, each evaluation set, the canvas."""
        headline = nn.evaluate(model, heldout.glyphs, heldout.labels)
        return {
            **headline,
            "confused_pairs": pretraining.confused_pairs(headline["confusion"]),
            "sets": pretraining.report(model, eval_sets),
            "canvas": self._canvas_report(model, options),
        }

    def _weights(self, path, option: str):
        if not path:
            return None
        try:
            return nn.deserialize_state(Path(path).read_bytes())
        except (OSError, RuntimeError, ValueError) as error:
            raise CommandError(f"{option} {path}: {error}") from None

    def _canvas_report(self, model, options) -> dict:
        """The canvas simulation on the held-out writers of every pen-stroke file."""
        tables = {}
        for stroke_file in options["strokes"]:
            table = canvas_eval.held_out_writers(
                model, stroke_file, per_case=options["canvas_per_case"], seed=options["seed"]
            )
            if table is None:
                continue
            self.stdout.write(canvas_eval.format_table(table, f"Canvas simulation: {stroke_file}"))
            tables[Path(stroke_file).name] = {str(width): row for width, row in table.items()}
        return tables

    def _export(self, folder: Path, version, weights: bytes, anchors: bytes):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "weights.pt").write_bytes(weights)
        (folder / "anchors.npz").write_bytes(anchors)
        description = {
            "architecture": version.architecture,
            "sha256": version.sha256,
            "classes": list(CLASSES),
            "metrics": version.metrics,
            "training_info": version.training_info,
        }
        (folder / "version.json").write_text(json.dumps(description, indent=1) + "\n")
        self.stdout.write(f"Exported to {folder}")


def _source_arguments(group):
    group.add_argument(
        "--data-dir",
        action="append",
        default=[],
        help="Image folder laid out as <label>/<file>.png (repeatable); 15%% held out by path.",
    )
    group.add_argument("--mnist-root", help="An existing torchvision MNIST root (no download).")
    group.add_argument("--emnist-root", help="An existing torchvision EMNIST root.")
    group.add_argument(
        "--packs",
        action="append",
        default=[],
        help="EMNIST-style npz pack (images, labels, cases; repeatable); 15%% held out.",
    )
    group.add_argument(
        "--strokes",
        action="append",
        default=[],
        help="Pen-stroke file (.jsonl.gz, UNIPEN-style; repeatable): the training writers "
        "drawn at random pen widths; 15%% of writers held out for the canvas simulation.",
    )
    group.add_argument(
        "--stroke-copies",
        type=int,
        default=1,
        help="Drawings of each training pen character, each at its own pen width.",
    )
    group.add_argument(
        "--fonts",
        action="append",
        default=[],
        help="Folder of .ttf/.otf fonts (repeatable): every class rendered from every font.",
    )
    group.add_argument(
        "--font-copies",
        type=int,
        default=20,
        help="Augmented renderings of each class from each font.",
    )
    group.add_argument("--jobs", type=int, default=2, help="Processes that preprocess the images.")
    group.add_argument(
        "--download-dir",
        default=str(settings.VAR_DIR / "data"),
        help="Where MNIST and EMNIST are downloaded when no local data is given.",
    )
    group.add_argument("--cache-dir", default=str(settings.VAR_DIR / "cache"))
    group.add_argument(
        "--limit", type=int, help="At most this many training images per source (quick runs)."
    )


def _training_arguments(group):
    length = group.add_mutually_exclusive_group()
    length.add_argument(
        "--epochs",
        type=int,
        help="Passes over the training images; 0 with --init-from trains nothing (to "
        "average two models). Default: as many steps as show the network about 1.4 M "
        f"images, or as fit {pretraining.DEFAULT_TRAINING_MINUTES:g} minutes on this "
        "machine, whichever are fewer.",
    )
    length.add_argument("--steps", type=int, help="Training steps (batches) instead of epochs.")
    length.add_argument(
        "--train-minutes",
        type=float,
        help="As many steps as fit this many minutes of training here (measured on a "
        "few steps first); the steps taken are recorded, so --steps makes the run again.",
    )
    group.add_argument("--batch-size", type=int, default=128)
    group.add_argument("--lr", type=float, default=3e-3)
    group.add_argument("--seed", type=int, default=0)
    group.add_argument(
        "--init-from",
        help="Start from this weights.pt (same architecture) instead of random weights.",
    )
    group.add_argument(
        "--average-with",
        help="After training, average the weights with this weights.pt (same architecture), "
        "typically the model --init-from fine-tuned: keeps what it read well.",
    )
    group.add_argument(
        "--average-share",
        type=float,
        default=0.5,
        help="The share of --average-with's weights in the average (0..1).",
    )
    group.add_argument(
        "--balance",
        type=float,
        default=pretraining.DEFAULT_BALANCE,
        help="Share of class-balanced sampling; the rest follows natural frequency.",
    )
    group.add_argument(
        "--device",
        choices=pretraining.DEVICES,
        default="auto",
        help="Where to train: auto takes CUDA, then MPS, then the CPU.",
    )
    group.add_argument(
        "--precision",
        choices=pretraining.PRECISIONS,
        default="auto",
        help="Training arithmetic: auto takes bf16 autocast on a GPU with bf16 (else fp16), "
        "fp16 on MPS, bf16 on a CPU with native bf16 (else fp32).",
    )
    group.add_argument(
        "--no-prior",
        action="store_true",
        help="Do not choose a digit prior on the validation images.",
    )
    group.add_argument("--threads", type=int, default=2)


def _output_arguments(group):
    group.add_argument(
        "--canvas-per-case",
        type=int,
        default=200,
        help="Held-out pen characters per case drawn at every pen width for the report.",
    )
    activation = group.add_mutually_exclusive_group()
    activation.add_argument(
        "--activate", action="store_true", help="Activate even if a version is active."
    )
    activation.add_argument("--no-activate", action="store_true", help="Never activate.")
    group.add_argument(
        "--export", help="Also write weights.pt, anchors.npz, version.json to this folder."
    )


def _check_schedule(options) -> None:
    """Refuse, before any data loads, a run that cannot make a model."""
    for option in ("epochs", "steps"):
        if options[option] is not None and options[option] < 0:
            raise CommandError(f"--{option} must be 0 or more.")
        if options[option] == 0 and not options["init_from"]:
            raise CommandError(f"--{option} 0 trains nothing: it needs --init-from.")
    if options["train_minutes"] is not None and not options["train_minutes"] > 0:
        raise CommandError("--train-minutes must be more than 0.")
    if not 0.0 <= options["average_share"] <= 1.0:
        raise CommandError("--average-share must be within 0..1.")


def _load(options) -> Sources:
    try:
        return load_sources(
            mnist_root=options["mnist_root"],
            emnist_root=options["emnist_root"],
            download_dir=options["download_dir"],
            data_dirs=options["data_dir"],
            packs=options["packs"],
            strokes=options["strokes"],
            stroke_copies=options["stroke_copies"],
            font_dirs=options["fonts"],
            font_copies=options["font_copies"],
            limit=options["limit"],
            seed=options["seed"],
            cache_dir=Path(options["cache_dir"]),
            jobs=options["jobs"],
        )
    except SOURCE_ERRORS as error:
        raise CommandError(str(error)) from None


def _schedule(train, options, *, device: str, precision: str, initial) -> dict:
    """The training steps: from ``--epochs`` or ``--steps``, else from a time budget.

    A budget counts steps at the speed measured here, so a default run fits the same
    minutes on a laptop and on a slow server; on a fast one the image count caps it.
    """
    per_epoch = pretraining.steps_per_epoch(len(train), options["batch_size"])
    minutes = step_seconds = None
    if options["epochs"] is not None:
        steps = options["epochs"] * per_epoch
    elif options["steps"] is not None:
        steps = options["steps"]
    else:
        minutes = options["train_minutes"] or pretraining.DEFAULT_TRAINING_MINUTES
        measured = pretraining.measure_step_seconds(
            train,
            batch_size=options["batch_size"],
            precision=precision,
            device=device,
            threads=options["threads"],
            initial=initial,
        )
        # Rounded as recorded, so that the record gives back the steps it led to.
        step_seconds = round(measured, 4)
        steps = pretraining.steps_within(minutes * 60, step_seconds)
        if options["train_minutes"] is None:
            steps = min(steps, pretraining.default_epochs(len(train)) * per_epoch)
    return {
        "steps": steps,
        "epochs": round(steps / per_epoch, 2),
        "train_minutes": minutes,
        "step_seconds": step_seconds,
    }


def _training_info(options, *, sources, schedule, prior, device, precision, duration) -> dict:
    """How the version was made, enough to make it again (``--steps`` repeats a budget's run)."""
    return {
        "kind": "pretrain",
        "command": "manage.py pretrain " + shlex.join(sys.argv[2:]),
        "sources": sources,
        **schedule,
        "batch_size": options["batch_size"],
        "lr": options["lr"],
        "seed": options["seed"],
        "init_from": options["init_from"],
        "average_with": options["average_with"],
        "average_share": options["average_share"] if options["average_with"] else None,
        "balance": options["balance"],
        "digit_prior": prior,
        "device": device,
        "precision": precision,
        "threads": options["threads"],
        "duration_seconds": duration,
        "torch": torch.__version__,
    }
