"""``manage.py pretrain``: build a model from MNIST + EMNIST letters and/or local image folders."""

import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from training import canvas_eval, datasets, fonts, nn, pretraining, registry, strokes
from training.classes import CLASSES
from training.models import ModelVersion


class Command(BaseCommand):
    help = (
        "Pretrain the CNN. By default downloads MNIST and EMNIST letters through torchvision; "
        "offline, use --mnist-root, --data-dir, --packs, --strokes and --fonts."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--data-dir",
            action="append",
            default=[],
            help="Image folder laid out as <label>/<file>.png (repeatable); 15%% held out by path.",
        )
        parser.add_argument(
            "--mnist-root", help="An existing torchvision MNIST root (no download)."
        )
        parser.add_argument("--emnist-root", help="An existing torchvision EMNIST root.")
        parser.add_argument(
            "--packs",
            action="append",
            default=[],
            help="EMNIST-style npz pack (images, labels, cases; repeatable); 15%% held out.",
        )
        parser.add_argument(
            "--strokes",
            action="append",
            default=[],
            help="Pen-stroke file (.jsonl.gz, UNIPEN-style; repeatable): the training writers "
            "drawn at random pen widths; 15%% of writers held out for the canvas simulation.",
        )
        parser.add_argument(
            "--stroke-copies",
            type=int,
            default=1,
            help="Drawings of each training pen character, each at its own pen width.",
        )
        parser.add_argument(
            "--fonts",
            action="append",
            default=[],
            help="Folder of .ttf/.otf fonts (repeatable): every class rendered from every font.",
        )
        parser.add_argument(
            "--font-copies",
            type=int,
            default=20,
            help="Augmented renderings of each class from each font.",
        )
        parser.add_argument(
            "--canvas-per-case",
            type=int,
            default=200,
            help="Held-out pen characters per case drawn at every pen width for the report.",
        )
        parser.add_argument(
            "--jobs", type=int, default=2, help="Processes that preprocess the images."
        )
        parser.add_argument(
            "--download-dir",
            default=str(settings.VAR_DIR / "data"),
            help="Where MNIST and EMNIST are downloaded when no local data is given.",
        )
        parser.add_argument("--cache-dir", default=str(settings.VAR_DIR / "cache"))
        parser.add_argument(
            "--epochs",
            type=int,
            help="Passes over the training images (default: as many as show the network "
            "about 1.4 M images: 20 over MNIST and the local handwriting, 8 over MNIST "
            "and EMNIST letters).",
        )
        parser.add_argument("--batch-size", type=int, default=128)
        parser.add_argument("--lr", type=float, default=3e-3)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument(
            "--init-from",
            help="Start from this weights.pt (same architecture) instead of random weights.",
        )
        parser.add_argument(
            "--balance",
            type=float,
            default=pretraining.DEFAULT_BALANCE,
            help="Share of class-balanced sampling; the rest follows natural frequency.",
        )
        parser.add_argument(
            "--precision",
            choices=pretraining.PRECISIONS,
            default="auto",
            help="Training arithmetic: auto takes bf16 autocast where the CPU has native bf16.",
        )
        parser.add_argument(
            "--no-prior",
            action="store_true",
            help="Do not choose a digit prior on the validation images.",
        )
        parser.add_argument("--threads", type=int, default=2)
        parser.add_argument(
            "--limit",
            type=int,
            help="At most this many training images per source (quick runs).",
        )
        activation = parser.add_mutually_exclusive_group()
        activation.add_argument(
            "--activate",
            action="store_true",
            help="Activate even if a version is active.",
        )
        activation.add_argument("--no-activate", action="store_true", help="Never activate.")
        parser.add_argument(
            "--export",
            help="Also write weights.pt, anchors.npz, version.json to this folder.",
        )

    def handle(self, *args, **options):
        started = time.monotonic()
        cache = Path(options["cache_dir"])
        train_parts, validation_parts, eval_sets, sources = self._load(options, cache)
        train = datasets.GlyphData.concat(train_parts)
        if not len(train):
            raise CommandError("No training images found.")
        epochs = options["epochs"] or pretraining.default_epochs(len(train))
        self.stdout.write(f"Training on {len(train)} images for {epochs} epochs: {sources}")
        model = pretraining.pretrain(
            train,
            epochs=epochs,
            batch_size=options["batch_size"],
            lr=options["lr"],
            seed=options["seed"],
            balance=options["balance"],
            precision=options["precision"],
            threads=options["threads"],
            progress=options["verbosity"] > 0,
            initial=self._initial(options["init_from"]),
        )
        prior = pretraining.choose_digit_prior(
            model, datasets.GlyphData.concat(validation_parts), search=not options["no_prior"]
        )
        pretraining.add_digit_prior(model, prior["digit_prior"])
        self._print_prior(prior)
        # Pretrained versions are stored at half precision; report on the weights as stored.
        weights = nn.serialize_state(model, half=True)
        model = nn.deserialize_state(weights)
        heldout = datasets.GlyphData.concat(list(eval_sets.values()))
        sets = pretraining.report(model, eval_sets)
        headline = nn.evaluate(model, heldout.glyphs, heldout.labels)
        canvas = self._canvas_report(model, options)
        duration = round(time.monotonic() - started, 1)
        metrics = {
            **headline,
            "confused_pairs": pretraining.confused_pairs(headline["confusion"]),
            "sets": sets,
            "canvas": canvas,
        }
        training_info = {
            "kind": "pretrain",
            "command": "manage.py pretrain " + shlex.join(sys.argv[2:]),
            "sources": sources,
            "epochs": epochs,
            "batch_size": options["batch_size"],
            "lr": options["lr"],
            "seed": options["seed"],
            "init_from": options["init_from"],
            "balance": options["balance"],
            "digit_prior": prior,
            "precision": pretraining.training_precision(options["precision"]),
            "threads": options["threads"],
            "duration_seconds": duration,
            "torch": torch.__version__,
        }
        anchors = pretraining.anchor_set(train, heldout, seed=options["seed"])
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
        self._print_report(version, sets, duration, activate)

    def _load(self, options, cache):
        limit, seed, jobs = options["limit"], options["seed"], options["jobs"]
        train_parts, validation_parts, eval_sets, sources = [], [], {}, {}

        def add_training(data: datasets.GlyphData, source: str):
            train, validation = datasets.split_validation(data.limit(limit, seed))
            # The validation side keeps what the held-out side has: uppercase look-alikes too.
            train_parts.append(datasets.drop_uppercase_digit_lookalikes(train))
            validation_parts.append(validation)
            sources[source] = len(train_parts[-1])

        def add_split(data: datasets.GlyphData, source: str, prefix: str):
            train, heldout = datasets.split_heldout(data)
            add_training(train, source)
            for group, members in _groups(heldout).items():
                eval_sets[f"{prefix}{group}"] = heldout.subset(members)

        local = any(
            options[name] for name in ("mnist_root", "emnist_root", "data_dir", "packs", "strokes")
        )
        mnist_root = options["mnist_root"] or (None if local else options["download_dir"])
        emnist_root = options["emnist_root"] or (None if local else options["download_dir"])
        try:
            if mnist_root:
                mnist = datasets.load_mnist(
                    mnist_root, train=True, download=not local, cache_dir=cache, jobs=jobs
                )
                add_training(mnist, "mnist")
                eval_sets["mnist_test"] = datasets.load_mnist(
                    mnist_root, train=False, download=not local, cache_dir=cache, jobs=jobs
                )
            if emnist_root:
                emnist = datasets.load_emnist_letters(
                    emnist_root, train=True, download=not local, cache_dir=cache, jobs=jobs
                )
                add_training(emnist, "emnist_letters")
                eval_sets["emnist_test"] = datasets.load_emnist_letters(
                    emnist_root, train=False, download=not local, cache_dir=cache, jobs=jobs
                )
            for data_dir in options["data_dir"]:
                folder = datasets.load_image_folder(data_dir, cache_dir=cache, jobs=jobs)
                add_split(folder, data_dir, prefix=f"{Path(data_dir).name}/")
            for pack in options["packs"]:
                # Pack images are named <pack>/<label>/<case>_<n>: grouped by pack and case.
                add_split(datasets.load_pack(pack, cache_dir=cache, jobs=jobs), pack, prefix="")
            for stroke_file in options["strokes"]:
                drawn = datasets.load_pen_strokes(
                    stroke_file,
                    copies=options["stroke_copies"],
                    seed=seed,
                    cache_dir=cache,
                    jobs=jobs,
                )
                add_training(drawn, stroke_file)
            for font_dir in options["fonts"]:
                rendered = fonts.render_font_folder(
                    font_dir, copies=options["font_copies"], seed=seed
                )
                add_training(rendered, font_dir)
        except (datasets.DatasetUnavailable, fonts.FontsUnavailable) as error:
            raise CommandError(str(error)) from None
        return train_parts, validation_parts, eval_sets, sources

    def _initial(self, path):
        if not path:
            return None
        try:
            return nn.deserialize_state(Path(path).read_bytes())
        except (OSError, RuntimeError, ValueError) as error:
            raise CommandError(f"--init-from {path}: {error}") from None

    def _canvas_report(self, model, options) -> dict:
        """The canvas simulation on the held-out writers of every pen-stroke file."""
        tables = {}
        for stroke_file in options["strokes"]:
            characters = strokes.load_pen_characters(stroke_file, heldout=True)
            drawings = canvas_eval.pen_drawings(
                characters, per_case=options["canvas_per_case"], seed=options["seed"]
            )
            if not drawings:
                continue
            table = canvas_eval.measure(canvas_eval.model_reader(model), drawings)
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

    def _print_prior(self, prior: dict):
        if prior["validation_balanced"] is None:
            self.stdout.write("Digit prior 0 (no validation digits and letters to weigh).")
            return
        self.stdout.write(
            f"Digit prior {prior['digit_prior']:.2f}: on {prior['validation']} validation images, "
            f"balanced over the classes {100 * prior['validation_balanced']:.2f}%, "
            f"digits {100 * prior['validation_digits']:.2f}%, "
            f"letters {100 * prior['validation_letters']:.2f}%"
        )

    def _print_report(self, version, sets, duration, activated):
        def pct(value):
            return "   -  " if value is None else f"{100 * value:6.2f}"

        self.stdout.write(f"\nModel v{version.number} in {duration:.0f} s")
        self.stdout.write(
            f"{'evaluation set':<40} {'n':>6} {'all':>6} {'digits':>6} {'letters':>7}"
        )
        for name, result in sets.items():
            self.stdout.write(
                f"{name:<40} {result['count']:>6} {pct(result['overall'])} "
                f"{pct(result['digits'])} {pct(result['letters'])}"
            )
        metrics = version.metrics
        self.stdout.write(
            f"{'all held-out':<40} {metrics['count']:>6} {pct(metrics['overall'])} "
            f"{pct(metrics['digits'])} {pct(metrics['letters'])}"
        )
        worst = sorted(metrics["per_class"].items(), key=lambda item: item[1])[:10]
        self.stdout.write("worst classes: " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in worst))
        self.stdout.write(
            "most confused (true->predicted): "
            + ", ".join(
                f"{p['true']}->{p['predicted']} {p['count']}" for p in metrics["confused_pairs"]
            )
        )
        state = "active" if activated else "not activated"
        self.stdout.write(self.style.SUCCESS(f"Saved model v{version.number} ({state})."))


def _groups(data: datasets.GlyphData) -> dict[str, np.ndarray]:
    """Held-out images by source folder and case (lower, upper, digit) from their file names."""
    keys = [
        f"{Path(name).parts[0] if len(Path(name).parts) > 2 else 'all'}/"
        f"{Path(name).name.split('_')[0] if '_' in Path(name).name else 'all'}"
        for name in data.names
    ]
    return {key: np.array([k == key for k in keys]) for key in sorted(set(keys))}
