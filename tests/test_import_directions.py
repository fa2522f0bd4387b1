"""The import directions the README's architecture section promises, read from the source."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The ML core runs without Django: pretraining, serving and fine-tuning share it.
ML_CORE = [
    "nn", "preprocessing", "augment", "finetune", "trunk", "pretraining", "datasets", "classes",
    "strokes", "fonts", "canvas_eval", "export", "pretraining_sources", "pretraining_report",
]  # fmt: skip
# What training may use of recognition: its reads and its writes, nothing else.
TRAINING_MAY_USE = {"recognition.selectors", "recognition.services"}
# Faces of an app that no other app builds on.
FACES = {"admin", "api", "dashboard", "views", "tasks", "caches", "metrics", "health"}


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, relative imports resolved, with ``from x import y`` as
    both ``x`` and ``x.y`` (y may be a module)."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return found


def sources(app: str) -> list[Path]:
    return [p for p in (ROOT / app).rglob("*.py") if "migrations" not in p.parts]


def violations(app: str, rule) -> list[str]:
    return sorted(
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sources(app)
        for name in imports(path)
        if rule(path, name)
    )


def in_ml_core(path: Path) -> bool:
    """training/<core>.py, or any module of a package training/<core>/."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return len(parts) > 1 and parts[0] == "training" and parts[1] in ML_CORE


def is_training_module(name: str) -> bool:
    return (ROOT / "training" / f"{name}.py").exists() or (ROOT / "training" / name).is_dir()


def ml_core_rule(path: Path, name: str) -> bool:
    if not in_ml_core(path):
        return False
    parts = name.split(".")
    # ``from .classes import CLASSES`` also reads as training.classes.CLASSES: fine.
    beside = parts[0] == "training" and len(parts) > 1 and parts[1] not in ML_CORE
    return parts[0] in {"django", "rest_framework", "celery", "recognition", "recognizer_site"} or (
        beside and parts[1] != "" and is_training_module(parts[1])
    )


def training_rule(path: Path, name: str) -> bool:
    if not name.startswith("recognition"):
        return False
    return name != "recognition" and not any(
        name == allowed or name.startswith(allowed + ".") for allowed in TRAINING_MAY_USE
    )


APPS = ("training", "recognition", "writers")


def faces_rule(app: str):
    others = set(APPS) - {app}

    def rule(path: Path, name: str) -> bool:
        parts = name.split(".")
        # One admin site: an admin may build on another app's admin classes.
        face = path.relative_to(ROOT / app).with_suffix("").parts[0]
        same_face = parts[1:2] == [face] == ["admin"]
        return parts[0] in others and len(parts) > 1 and parts[1] in FACES and not same_face

    return rule


def test_the_ml_core_imports_no_django_and_nothing_of_the_apps():
    assert violations("training", ml_core_rule) == []


def test_training_uses_recognition_only_through_its_selectors_and_services():
    assert violations("training", training_rule) == []


@pytest.mark.parametrize("app", APPS)
def test_no_app_builds_on_another_apps_faces(app):
    assert violations(app, faces_rule(app)) == []


def test_the_check_sees_a_wrong_import(tmp_path, monkeypatch):
    """The rules flag the imports they forbid (the deliberate mistakes of this test)."""
    wrong = ROOT / "training" / "finetune.py"
    source = "from django.conf import settings\nfrom recognition.models import Sample\n"
    monkeypatch.setattr(Path, "read_text", lambda self: source if self == wrong else "")
    assert ml_core_rule(wrong, "django.conf")
    assert ml_core_rule(ROOT / "training" / "datasets" / "glyphs.py", "training.services")
    assert training_rule(wrong, "recognition.models")
    assert faces_rule("training")(wrong, "recognition.dashboard")
    assert imports(wrong) >= {"django.conf", "recognition.models", "recognition.models.Sample"}
