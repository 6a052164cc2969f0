"""Horizontal bar charts of benchmark results (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence


def bar_chart(
    path: str,
    title: str,
    unit: str,
    labels: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    fmt: Callable[[float], str] = lambda v: f"{v:,.0f}",
) -> None:
    """One bar per label for each series (``None``: not applicable); write a PNG to ``path``.

    The value axis is linear, so bar lengths compare as ratios; every bar is labelled
    with its value, so the slowest engines can still be read.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n, k = len(labels), len(series)
    height = 0.8 / k
    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.35 * n * k))
    for i, (name, vs) in enumerate(series.items()):
        ys = [j + (i - (k - 1) / 2) * height for j in range(n)]
        bars = ax.barh(ys, [v or 0 for v in vs], height=height, label=name if k > 1 else None)
        for bar, v in zip(bars, vs):
            text = "n/a" if v is None else fmt(v)
            ax.annotate(
                f" {text}",
                (bar.get_width(), bar.get_y() + height / 2),
                va="center",
                fontsize=8,
            )
    ax.set_yticks(range(n), labels)
    ax.invert_yaxis()
    ax.set_xlabel(unit)
    ax.set_title(title)
    ax.margins(x=0.2)
    if k > 1:
        ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
