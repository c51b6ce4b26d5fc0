"""Pictures a person would rather look at than read. matplotlib is imported lazily, with a file backend."""

from pathlib import Path
from typing import Dict, Sequence

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(matrix: np.ndarray, labels: Sequence[str], path: Path, title: str = "") -> None:
    """Counts, with each cell shaded by its share of the true class (row-normalised recall)."""
    plt = _pyplot()
    rows = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros(matrix.shape, dtype=float), where=rows > 0)
    fig, ax = plt.subplots(figsize=(1.2 * len(labels) + 1.5, 1.2 * len(labels) + 1))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(
                j,
                i,
                f"{matrix[i, j]}\n{100 * share[i, j]:.0f}%",
                ha="center",
                va="center",
                color="white" if share[i, j] > 0.5 else "black",
                fontsize=9,
            )
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    _save(fig, plt, path)


def plot_grid(grids: Dict[str, np.ndarray], rows: Sequence[int], cols: Sequence[int], path: Path, title: str = "") -> None:
    """One heat map per metric, rows = layers, columns = cluster counts, each cell annotated."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(grids), figsize=(3.2 * len(grids) + 0.8 * len(cols), 1.0 + 0.6 * len(rows)), squeeze=False)
    for ax, (metric, grid) in zip(axes[0], grids.items()):
        ax.imshow(grid, cmap="viridis", aspect="auto")
        low, high = grid.min(), grid.max()
        for i in range(len(rows)):
            for j in range(len(cols)):
                bright = high > low and (grid[i, j] - low) / (high - low) > 0.6  # viridis turns yellow
                ax.text(j, i, f"{grid[i, j]:.3f}", ha="center", va="center", color="black" if bright else "white", fontsize=9)
        ax.set_xticks(range(len(cols)), [f"K={k}" for k in cols])
        ax.set_yticks(range(len(rows)), [f"layer {r}" for r in rows])
        ax.set_title(metric)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save(fig, plt, path)


def _save(fig, plt, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)


def plot_timeline(
    wav: np.ndarray,
    sample_rate: int,
    attention: np.ndarray,
    path: Path,
    title: str = "",
    segments: Sequence = (),
) -> None:
    """Spectrogram, the classifier's attention weight of every frame, and (when known) the true emotional segments."""
    plt = _pyplot()
    fig, (spec, att) = plt.subplots(2, 1, figsize=(10, 4.2), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    spectrogram(spec, wav, sample_rate)
    spec.set_ylim(0, 8000)
    spec.set_ylabel("Hz")
    for s in segments:
        spec.axvspan(s.start, s.end, ymin=0.93, ymax=1.0, color="white" if s.label == "neu" else "cyan", alpha=0.8)
        spec.text(s.start, 7000, s.label, color="white", fontsize=8)
    frames = np.arange(len(attention)) * len(wav) / sample_rate / max(len(attention), 1)
    att.plot(frames, attention, color="tab:blue")
    att.fill_between(frames, attention, alpha=0.3)
    att.set_ylabel("attention")
    att.set_xlabel("seconds")
    spec.set_title(title, fontsize=10)
    fig.tight_layout()
    _save(fig, plt, path)


def spectrogram(ax, wav: np.ndarray, sample_rate: int) -> None:
    """dB spectrogram; digital silence is drawn at the floor (-120 dB), its log of zero is not an error."""
    with np.errstate(divide="ignore"):
        ax.specgram(wav, NFFT=512, Fs=sample_rate, noverlap=384, cmap="magma", vmin=-120)


def plot_prediction(
    wav: np.ndarray,
    sample_rate: int,
    posteriors: np.ndarray,
    weights: np.ndarray,
    labels: Sequence[str],
    predicted: Sequence,
    truth: Sequence,
    path: Path,
    title: str = "",
) -> None:
    """fesa predict's timeline: spectrogram, per-frame class posteriors (a heat strip), pooling weights, and the
    predicted segments (and the true ones, when a reference is given) as coloured bars."""
    plt = _pyplot()
    rows = 4 + bool(truth)
    fig, axes = plt.subplots(
        rows, 1, figsize=(11, 1.4 * rows + 1.2), sharex=True, gridspec_kw={"height_ratios": [2.2, 1.2, 1, 0.5] + [0.5] * bool(truth)}
    )
    seconds = len(wav) / sample_rate
    spectrogram(axes[0], wav, sample_rate)
    axes[0].set_ylim(0, 8000)
    axes[0].set_ylabel("Hz")
    axes[0].set_title(title, fontsize=10)
    axes[1].imshow(
        posteriors.T,
        aspect="auto",
        origin="lower",
        cmap="viridis",
        vmin=0,
        vmax=1,
        interpolation="nearest",
        extent=(0, seconds, -0.5, len(labels) - 0.5),
    )
    axes[1].set_yticks(range(len(labels)), labels, fontsize=8)
    axes[1].set_ylabel("posterior")
    t = (np.arange(len(weights)) + 0.5) * seconds / max(len(weights), 1)
    axes[2].plot(t, weights, color="tab:blue")
    axes[2].fill_between(t, weights, alpha=0.3)
    axes[2].set_ylabel("pooling")
    colours = {label: plt.get_cmap("tab10")(i % 10) for i, label in enumerate(labels)}
    for ax, spans, name in ((axes[3], predicted, "predicted"), *(((axes[4], truth, "true"),) if truth else ())):
        for s in spans:
            ax.axvspan(s.start, min(s.end, seconds), color=colours.get(s.label, "lightgray"), alpha=0.85)
            ax.text(s.start, 0.35, s.label, fontsize=7)
        ax.set_yticks([])
        ax.set_ylabel(name, rotation=0, ha="right", fontsize=8)
    axes[-1].set_xlim(0, seconds)
    axes[-1].set_xlabel("seconds")
    fig.tight_layout()
    _save(fig, plt, path)


def plot_curves(curves: Sequence, path: Path, title: str = "") -> None:
    """One column per training run: training loss above, the validation metric below, against updates.

    `curves` are :class:`fesa.pipeline.curves.Curve`; the best validation point is marked, and a run
    whose validation UA was still rising at its last update says so in its title.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(2, max(len(curves), 1), figsize=(3.4 * max(len(curves), 1), 5.0), squeeze=False)
    for col, curve in enumerate(curves):
        top, bottom = axes[0, col], axes[1, col]
        if curve.train:
            top.plot(*zip(*curve.train), color="tab:gray")
        top.set_title(
            curve.stage + ("\nstopped while still improving" if curve.still_improving else ""),
            fontsize=9,
            color="tab:red" if curve.still_improving else "black",
        )
        top.set_ylabel("training loss" if col == 0 else "")
        if curve.valid:
            bottom.plot(*zip(*curve.valid), marker=".", color="tab:blue")
            best = curve.best()
            bottom.plot(*best, marker="*", markersize=12, color="tab:orange", label=f"best {best[1]:.1f} @ {best[0]}")
            bottom.legend(fontsize=8, loc="best")
        bottom.set_ylabel(f"valid {curve.metric.upper() if curve.metric == 'ua' else curve.metric}")
        bottom.set_xlabel("updates")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save(fig, plt, path)
