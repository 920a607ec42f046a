"""Rendering a comparison: the terminal table, report.md, results.json and PNG plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from securefl import jsonout
from securefl.evaluation.compare import Comparison

__all__ = ["format_table", "write_report"]

_COLUMNS = (
    ("protocol", 18), ("secure", 6), ("accuracy", 8), ("epsilon", 7), ("up B/rd", 10), ("down B/rd", 9),
    ("client s/rd", 11), ("server s/rd", 11), ("setup s/rd", 10), ("drops", 5), ("aborted", 7), ("probe msg", 9),
    ("probe agg", 9), ("chance", 6),
)


def _row(result: dict[str, Any]) -> list[str]:
    probe = result["probe"]
    return [
        result["name"],
        "yes" if result["secure"] else "NO",
        f"{result['final_accuracy']:.4f}",
        "none" if result["epsilon"] is None else f"{result['epsilon']:.2f}",
        f"{result['bytes_up_per_client_per_round']:,.0f}",
        f"{result['bytes_down_per_client_per_round']:,.0f}",
        f"{result['client_seconds_per_round']:.4f}",
        f"{result['server_seconds_per_round']:.4f}",
        f"{result['setup_seconds_per_round']:.4f}",
        str(result["dropped"]),
        str(result["rounds_aborted"]),
        f"{probe['messages']['cosine']:.3f}" if probe["vectors_attacked"] else "n/a",
        f"{probe['aggregate']['cosine']:.3f}",
        f"{probe['chance']['cosine']:.3f}",
    ]


def format_table(comparison: Comparison | dict[str, Any]) -> str:
    """The comparison as an aligned text table (one row per protocol)."""
    data = comparison.to_dict() if isinstance(comparison, Comparison) else comparison
    rows = [_row(r) for r in data["protocols"]]
    widths = [max(w, len(name), *(len(r[i]) for r in rows)) for i, (name, w) in enumerate(_COLUMNS)]
    lines = ["  ".join(name.ljust(widths[i]) for i, (name, _) in enumerate(_COLUMNS)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]
    return "\n".join(lines)


def _markdown_table(data: dict[str, Any]) -> str:
    header = "| " + " | ".join(name for name, _ in _COLUMNS) + " |"
    rule = "|" + "|".join("---" for _ in _COLUMNS) + "|"
    return "\n".join([header, rule, *("| " + " | ".join(_row(r)) + " |" for r in data["protocols"])])


def _report_markdown(data: dict[str, Any]) -> str:
    settings = data["settings"]
    lines = [
        "# securefl comparison report",
        "",
        f"FedAvg on the embedded digits data: {settings['clients']} clients, {settings['rounds']} rounds, "
        f"dropout probability {settings['dropout']}, seed {settings['seed']}; identical splits and seeds for "
        f"every protocol (the phase at which a client drops is drawn among each protocol's own phases, so the "
        f"drop counts can differ). Central DP is calibrated to epsilon = {settings['epsilon_target']} "
        f"at delta = {settings['delta']:g} (clip {settings['dp_clip']}).",
        "",
        _markdown_table(data),
        "",
        "Columns: final test accuracy; epsilon of the released model (none without DP); upload and download "
        "bytes per client per round; client and server seconds per round (client: local training plus "
        "protocol) and the protocol's setup per round, for all parties together (key generation, Paillier's "
        "obfuscators: work a deployment can do before training); dropouts injected and rounds aborted; "
        "the privacy probe: best cosine similarity between a "
        "reconstructed input and any client's true example, from the individual messages the server received "
        "(`probe msg`; n/a when the server received no vector it could read as numbers, only ciphertexts), "
        "from the aggregate it releases (`probe agg`), and for random candidates (`chance`).",
        "",
        "![accuracy per round](accuracy.png)",
        "",
        "![overhead](overhead.png)",
        "",
        "![reconstructions](reconstructions.png)",
        "",
        "## What each protocol protects",
        "",
    ]
    for result in data["protocols"]:
        probe = result["probe"]
        messages = probe["messages"]
        seen = (f"messages cosine {messages['cosine']:.3f} (PSNR {messages['psnr']:.1f} dB)"
                if messages["cosine"] is not None else f"messages n/a ({messages['not_applicable']})")
        lines += [
            f"### {result['name']}",
            "",
            result["threat_model"],
            "",
            f"Probe: {seen}, "
            f"aggregate cosine {probe['aggregate']['cosine']:.3f} (PSNR {probe['aggregate']['psnr']:.1f} dB), "
            f"chance {probe['chance']['cosine']:.3f}; {probe['vectors_attacked']} vectors attacked.",
            "",
        ]
    if any(r["dp"] != "none" for r in data["protocols"]):
        lines += [
            "## Differential privacy at this scale",
            "",
            "The DP rows add noise of standard deviation z C to a sum of only "
            f"{settings['clients']} clipped updates, so the noise dominates the signal of a "
            "model with thousands of parameters. DP-FedAvg needs many clients per round; see "
            "`docs/privacy.md` for runs with 100 clients. The aggregate probe shows what the noise buys.",
            "",
        ]
    lines += [
        "## Reading the probe",
        "",
        "The probe round is the worst case for a client: one SGD step on a single example, so the first "
        "layer's update rows divided by their bias updates are that example (Phong et al. 2017). A score near 1 "
        "means the image is recovered. The message probe measures what the protocol protects: the server's "
        "own transcript. The aggregate probe measures what the *sum* still reveals (a hidden unit that only one "
        "client's example activated), which secure aggregation alone does not hide; differential privacy "
        "is the layer that bounds it.",
        "",
    ]
    return "\n".join(lines)


def _plot_accuracy(data: dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    figure, axes = plt.subplots(figsize=(7, 4.2))
    styles = ("-", "--", "-.", ":")
    markers = ("o", "s", "^", "v", "D", "x", "+")
    for index, result in enumerate(data["protocols"]):
        accuracies = result["accuracy_per_round"]
        axes.plot(range(1, len(accuracies) + 1), accuracies, linestyle=styles[index % len(styles)],
                  marker=markers[index % len(markers)], markersize=4, label=result["name"])
    locator = axes.xaxis.get_major_locator()
    if isinstance(locator, MaxNLocator):  # the default AutoLocator is one
        locator.set_params(integer=True)
    axes.set_xlabel("round (exact protocols give identical, overlapping curves)")
    axes.set_ylabel("test accuracy")
    axes.set_ylim(0, 1)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    axes.set_title("FedAvg on digits: accuracy per round")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _plot_overhead(data: dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt

    names = [r["name"] for r in data["protocols"]]
    positions = np.arange(len(names))
    figure, (seconds_axes, bytes_axes) = plt.subplots(1, 2, figsize=(11, 4.2))
    width = 0.38
    client_seconds = [r["client_seconds_per_round"] for r in data["protocols"]]
    server_seconds = [max(r["server_seconds_per_round"], 1e-6) for r in data["protocols"]]
    seconds_axes.bar(positions - width / 2, client_seconds, width, label="client")
    seconds_axes.bar(positions + width / 2, server_seconds, width, label="server")
    seconds_axes.set_yscale("log")
    seconds_axes.set_ylabel("seconds per round (log)")
    seconds_axes.set_title("compute")
    bytes_up = [r["bytes_up_per_client_per_round"] for r in data["protocols"]]
    bytes_down = [max(r["bytes_down_per_client_per_round"], 1) for r in data["protocols"]]
    bytes_axes.bar(positions - width / 2, bytes_up, width, label="upload")
    bytes_axes.bar(positions + width / 2, bytes_down, width, label="download")
    bytes_axes.set_yscale("log")
    bytes_axes.set_ylabel("bytes per client per round (log)")
    bytes_axes.set_title("communication")
    for axes in (seconds_axes, bytes_axes):
        axes.set_xticks(positions, names, rotation=30, ha="right", fontsize=8)
        axes.legend(fontsize=8)
        axes.grid(alpha=0.3, axis="y")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _plot_reconstructions(comparison: Comparison, path: Path) -> None:
    import matplotlib.pyplot as plt

    rows = comparison.results
    figure, grid = plt.subplots(len(rows), 4, figsize=(7.2, 1.8 * len(rows) + 0.7), squeeze=False)
    titles = ("from messages", "closest true", "from aggregate", "closest true")
    for row_index, (row, result) in enumerate(zip(grid, rows)):
        images: list[np.ndarray | None] = []
        labels: list[str] = []
        for score in (result.probe.messages, result.probe.aggregate):
            target = score.best_target
            images += [score.best_candidate,
                       result.probe_examples[target] if target is not None and len(result.probe_examples) else None]
            labels += [f"cos {score.cosine:.2f}", f"client {target}" if target is not None else ""]
        for column, (axes, image, label) in enumerate(zip(row, images, labels)):
            axes.set_xticks([])
            axes.set_yticks([])
            if image is not None and image.size == 64:
                axes.imshow(np.clip(image, 0, 1).reshape(8, 8), cmap="gray_r", vmin=0, vmax=1)
            elif column == 0:
                axes.text(0.5, 0.5, "only ciphertexts:\nnothing to invert", ha="center", va="center", fontsize=7)
                label = ""
            axes.set_xlabel(label, fontsize=7)
            if column == 0:
                axes.set_ylabel(result.contender.name, fontsize=8)
            if row_index == 0:
                axes.set_title(titles[column], fontsize=8)
    figure.suptitle("What a curious server reconstructs (probe round)", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write_report(comparison: Comparison, out_dir: str | Path) -> dict[str, Path]:
    """Write results.json, report.md and the three PNG plots into ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = comparison.to_dict()
    paths = {
        "results": out / "results.json",
        "report": out / "report.md",
        "accuracy": out / "accuracy.png",
        "overhead": out / "overhead.png",
        "reconstructions": out / "reconstructions.png",
    }
    paths["results"].write_text(jsonout.dumps(data, indent=2) + "\n", encoding="utf-8")
    paths["report"].write_text(_report_markdown(data), encoding="utf-8")
    _plot_accuracy(data, paths["accuracy"])
    _plot_overhead(data, paths["overhead"])
    _plot_reconstructions(comparison, paths["reconstructions"])
    return paths
