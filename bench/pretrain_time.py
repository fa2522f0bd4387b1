"""How long `manage.py pretrain` takes here, from the command to the saved version.

Runs the command with every local source (../shared/data) and its default schedule,
or the options given after ``--``, in a scratch registry (its own VAR_DIR) but with
the shared glyph cache, so a second run measures warm caches. Prints the wall time
against the 15-minute goal, the schedule the command chose (steps, the step time it
measured, the budget) and the canvas simulation's balanced accuracy.

    .venv/bin/python bench/pretrain_time.py [--cache-dir var/cache] [-- --train-minutes 5]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
GOAL_MINUTES = 15
SOURCES = [
    "--mnist-root", str(DATA / "mnist"),
    "--data-dir", str(DATA / "handwriting"),
    "--packs", str(DATA / "packs" / "emnist_byclass_test.npz"),
    "--packs", str(DATA / "packs" / "emnist_letters_partial.npz"),
    "--strokes", str(DATA / "strokes" / "unipen_r01v07.jsonl.gz"),
]  # fmt: skip


def manage(var_dir: Path, *arguments: str) -> None:
    environment = {**os.environ, "VAR_DIR": str(var_dir), "DEBUG": "1"}
    environment.pop("DATABASE_URL", None)
    subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *arguments], env=environment, check=True
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache-dir", default=str(ROOT / "var" / "cache"))
    parser.add_argument("extra", nargs="*", help="pretrain options after --")
    args = parser.parse_args()
    cached = Path(args.cache_dir).is_dir() and any(Path(args.cache_dir).iterdir())
    with tempfile.TemporaryDirectory(prefix="pretrain-time-") as scratch:
        var_dir = Path(scratch)
        manage(var_dir, "migrate", "--verbosity", "0")
        began = time.monotonic()
        manage(
            var_dir,
            "pretrain",
            *SOURCES,
            "--cache-dir", args.cache_dir,
            "--export", str(var_dir / "export"),
            *args.extra,
        )  # fmt: skip
        wall = time.monotonic() - began
        info = json.loads((var_dir / "export" / "version.json").read_text())
    training = info["training_info"]
    canvas = next(iter(info["metrics"]["canvas"].values()), {})
    balanced = [row["balanced"]["exact"] for row in canvas.values()] if canvas else []
    print(f"\npretrain {' '.join(args.extra) or '(default schedule)'}")
    print(f"glyph caches: {'warm' if cached else 'cold'} ({args.cache_dir})")
    print(f"whole command: {wall / 60:.1f} min (goal {GOAL_MINUTES} min with warm caches)")
    budget = (
        f", budget {training['train_minutes']} min at {training['step_seconds']} s a step"
        if training["train_minutes"]
        else ""
    )
    print(
        f"schedule: {training['steps']} steps of {training['batch_size']} "
        f"({training['epochs']} epochs){budget}, {training['precision']}"
    )
    print(f"images shown: {training['steps'] * training['batch_size']:,}")
    if balanced:
        print(f"canvas balanced, exact, worst-best width: {min(balanced):.1%}-{max(balanced):.1%}")


if __name__ == "__main__":
    main()
