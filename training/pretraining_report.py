"""The text a pretraining run prints about its digit prior and its accuracy (no Django)."""


def prior_summary(prior: dict) -> str:
    """One line on the digit prior chosen by ``pretraining.choose_digit_prior``."""
    if prior["validation_balanced"] is None:
        return "Digit prior 0 (no validation digits and letters to weigh)."
    return (
        f"Digit prior {prior['digit_prior']:.2f}: on {prior['validation']} validation images, "
        f"balanced over the classes {100 * prior['validation_balanced']:.2f}%, "
        f"digits {100 * prior['validation_digits']:.2f}%, "
        f"letters {100 * prior['validation_letters']:.2f}%"
    )


def accuracy_table(sets: dict, metrics: dict) -> str:
    """Accuracy per evaluation set and on all held-out images, the worst classes, confusions."""

    def pct(value):
        return "   -  " if value is None else f"{100 * value:6.2f}"

    def row(name: str, result: dict) -> str:
        return (
            f"{name:<40} {result['count']:>6} {pct(result['overall'])} "
            f"{pct(result['digits'])} {pct(result['letters'])}"
        )

    lines = [f"{'evaluation set':<40} {'n':>6} {'all':>6} {'digits':>6} {'letters':>7}"]
    lines += [row(name, result) for name, result in sets.items()]
    lines.append(row("all held-out", metrics))
    worst = sorted(metrics["per_class"].items(), key=lambda item: item[1])[:10]
    lines.append("worst classes: " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in worst))
    pairs = metrics["confused_pairs"]
    lines.append(
        "most confused (true->predicted): "
        + ", ".join(f"{p['true']}->{p['predicted']} {p['count']}" for p in pairs)
    )
    return "\n".join(lines)
