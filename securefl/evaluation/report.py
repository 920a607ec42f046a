"""Rendering a comparison: the terminal table, report.md, results.json and PNG plots."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from securefl import jsonout
from securefl.evaluation.compare import ROW_PARTS, Comparison

__all__ = ["format_table", "format_spread", "write_report"]

#: (header, figure of ``ContenderResult.summary``, kind): the table's columns after the row's name.
_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("accuracy", "final_accuracy", "fraction"),
    ("epsilon", "epsilon", "number"),
    ("eps vs server", "server_epsilon", "number"),
    ("up B/rd", "bytes_up_per_client_per_round", "bytes"),
    ("down B/rd", "bytes_down_per_client_per_round", "bytes"),
    ("round s", "round_seconds", "seconds"),
    ("train s", "client_train_seconds_per_round", "seconds"),
    ("client s", "client_online_seconds_per_round", "seconds"),
    ("offline s", "client_offline_seconds_per_round", "seconds"),
    ("server s", "server_seconds_per_round", "seconds"),
    ("helper s", "helpers_seconds_per_round", "seconds"),
    ("sim s", "simulator_seconds_per_round", "seconds"),
    ("drops", "dropped", "count"),
    ("aborted", "rounds_aborted", "count"),
    ("rejected", "rejected", "count"),
    ("probe msg", "probe_messages", "fraction"),
    ("probe agg", "probe_aggregate", "fraction"),
    ("chance", "probe_chance", "fraction"),
)

#: The time parts the overhead plot stacks, in order (``ROW_PARTS`` less evaluation, build and probe).
_PLOTTED_PARTS = ("client_train", "client_online", "client_offline", "server", "helpers", "simulator")


def format_spread(stat: dict[str, Any] | None, kind: str = "number") -> str:
    """``mean±h`` to the interval's first significant digit, at most 4 significant digits of the mean.

    h is the larger distance from the mean to an end of the interval.

    One seed: the mean to 3 significant digits. ``None``: "n/a".
    """
    if stat is None:
        return "n/a"
    mean = float(stat["mean"])
    if not np.isfinite(mean):
        return "inf"
    half = max(float(stat["high"]) - mean, mean - float(stat["low"]), 0.0)
    if kind == "count" and float(mean).is_integer() and half == 0:
        return f"{int(mean)}"
    if kind == "bytes" and half < 0.5:
        return f"{mean:,.0f}"
    if stat.get("interval") == "one seed" or not np.isfinite(half):
        return f"{mean:.3g}" if kind != "fraction" else f"{mean:.3f}"
    if half == 0:
        return "0" if mean == 0 else (f"{mean:.3g}±0" if kind != "fraction" else f"{mean:.3f}±0")
    # Down to the interval's first significant digit, never beyond the mean's fourth; above 1 both are
    # rounded to that digit's place (1262±28 prints 1260±30).
    decimals = -int(np.floor(np.log10(half)))
    if mean != 0:
        decimals = min(decimals, 3 - int(np.floor(np.log10(abs(mean)))))
    if decimals < 0:
        mean, half = round(mean, decimals), round(half, decimals)
    decimals = max(0, decimals)
    if kind == "bytes":
        return f"{mean:,.{decimals}f}±{half:,.{decimals}f}"
    return f"{mean:.{decimals}f}±{half:.{decimals}f}"


def _summary(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A row's summary list by figure name (a figure that does not apply is absent)."""
    return {entry["figure"]: entry for entry in result["summary"]}


def _row(result: dict[str, Any]) -> list[str]:
    summary = _summary(result)
    federation = result["federation"]
    cohort = (f"{federation['clients']}" if federation["sample_rate"] == 1.0
              else f"{federation['clients']} q={federation['sample_rate']:g}")
    cells = [result["name"], "yes" if result["secure"] else "NO", cohort]
    for _, figure, kind in _COLUMNS:
        stat = summary.get(figure)
        if figure in ("epsilon", "server_epsilon") and stat is None:
            cells.append("none")
        elif figure == "probe_messages" and stat is None:
            cells.append("n/a")
        else:
            cells.append(format_spread(stat, kind))
    return cells


def _headers() -> list[str]:
    return ["protocol", "secure", "clients", *(header for header, _, _ in _COLUMNS)]


def format_table(comparison: Comparison | dict[str, Any]) -> str:
    """The comparison as an aligned text table (one row per protocol, mean±interval over the seeds)."""
    data = comparison.to_dict() if isinstance(comparison, Comparison) else comparison
    rows = [_row(r) for r in data["protocols"]]
    headers = _headers()
    widths = [max(len(name), *(len(r[i]) for r in rows)) for i, name in enumerate(headers)]
    lines = ["  ".join(name.ljust(widths[i]) for i, name in enumerate(headers)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]
    return "\n".join(lines)


def _markdown_table(data: dict[str, Any]) -> str:
    headers = _headers()
    header = "| " + " | ".join(headers) + " |"
    rule = "|" + "|".join("---" for _ in headers) + "|"
    return "\n".join([header, rule, *("| " + " | ".join(_row(r)) + " |" for r in data["protocols"])])


def _interval_words(settings: dict[str, Any]) -> str:
    seeds = settings["seeds"]
    if seeds == 1:
        return "one seed (no interval: rerun with --seeds 3 or more for one)"
    if seeds < 5:
        return f"{seeds} seeds; `±` is the larger distance from the mean to the minimum or maximum over the seeds"
    return f"{seeds} seeds; `±` is the half-width of the 95% Student-t interval of the mean"


def _time_table(data: dict[str, Any]) -> str:
    parts = list(ROW_PARTS)
    lines = ["| protocol | wall s | " + " | ".join(parts) + " | unaccounted |",
             "|" + "|".join("---" for _ in range(len(parts) + 3)) + "|"]
    for result in data["protocols"]:
        runs = result["seeds"]
        wall = float(np.mean([run["seconds"] for run in runs]))
        cells = [f"{float(np.mean([run['seconds_by_part'].get(part, 0.0) for run in runs])):.3g}" for part in parts]
        unaccounted = float(np.mean([run["unaccounted_seconds"] for run in runs]))
        lines.append(f"| {result['name']} | {wall:.3g} | " + " | ".join(cells)
                     + f" | {unaccounted:.2g} ({100 * unaccounted / wall:.1f}%) |")
    return "\n".join(lines)


def _report_markdown(data: dict[str, Any]) -> str:
    settings = data["settings"]
    federations = settings["federations"]
    plain, dp = federations["none"], federations["dp"]
    lines = [
        "# securefl comparison report",
        "",
        "FedAvg on the embedded digits data, dropout probability "
        f"{settings['dropout']}, {_interval_words(settings)} (seeds {settings['seed']} to "
        f"{settings['seed'] + settings['seeds'] - 1}); identical splits and seeds for every protocol at each "
        "seed (the same clients drop in every protocol of a federation; the phase at which one drops is drawn "
        "among that protocol's own phases).",
        "",
        *([f"* Rows without DP: {plain['clients']} clients, all of them every round, {plain['rounds']} rounds, "
           f"an MLP of {plain['model_parameters']:,} parameters ({plain['hidden']} hidden units)."]
          if any(r["dp"] == "none" for r in data["protocols"]) else []),
        *([f"* DP rows: {dp['clients']} clients Poisson-sampled at q = {dp['sample_rate']:g} each round, "
        f"{dp['rounds']} rounds, an MLP of "
        f"{dp['model_parameters']:,} parameters ({dp['hidden']} hidden units): DP-FedAvg needs many clients "
        f"per round for the noise z C / (q N) to leave the signal standing. Central and distributed DP are "
        f"calibrated to epsilon = {settings['epsilon_target']} at delta = {settings['delta']:g} "
        f"(clip {settings['dp_clip']}); the clients are sampled from the simulation's seeded generator."]
          if any(r["dp"] != "none" for r in data["protocols"]) else []),
        *([f"* Poisoning: client(s) {', '.join(map(str, settings['poison']['clients']))} of every row are "
           f"model-replacement attackers (Bagdasaryan et al. 2020) sending reference + "
           f"{settings['poison']['boost']:g} x (local - reference) and skipping every clip (the DP stage's "
           "too); `accuracy` is with them, `rejected` counts the contributions the aggregators excluded after "
           "verification (validated-sharing)."]
          if settings.get("poison", {}).get("clients") else []),
        "",
        _markdown_table(data),
        "",
        "Columns: clients (and the sampling rate q); final test accuracy; epsilon of the released model (none "
        "without DP) and against the server (`eps vs server`: the server routes every message, so it knows "
        "who took part and sampling does not amplify; none where the server sees the exact sum, as under "
        "central DP); upload and download bytes per client per round; seconds per round: the round's wall time "
        "and its parts, each a total over every party of the round (divide by the cohort for one client's "
        "share): `train` local training, `client` the clients' protocol work once the update exists "
        "(flattening, clipping, noise, encoding, every client engine's phases), `offline` the protocol's setup "
        "(key generation, Paillier's obfuscators: a deployment runs it while the clients train, so it costs "
        "no round time there if it fits in the training time), `server` the server engine with the round's "
        "plan and release, `helper` the helper parties (aggregators, Paillier's decryptor), `sim` what only "
        "the simulation pays (sampling, dropout draws, routing messages, the transcript audit); dropouts "
        "injected and rounds aborted; the privacy probe: best cosine similarity between a reconstructed input "
        "and any client's true example, from the individual messages the server received (`probe msg`; n/a "
        "when the server received no vector it could read as numbers, only ciphertexts), from the aggregate "
        "it releases (`probe agg`), and the same for as many random candidates as the attack on a plaintext "
        "transcript makes (`chance`, one baseline for every row of a federation).",
        "",
        "## Where the time goes",
        "",
        "Each row's wall time (per seed, mean over the seeds) and its parts over all rounds, plus the row's "
        "own `build` (data, partition, model) and `probe`; `unaccounted` is what no timer measured.",
        "",
        _time_table(data),
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
        summary = _summary(result)
        messages = summary.get("probe_messages")
        seen = (f"messages cosine {format_spread(messages, 'fraction')}" if messages is not None
                else f"messages n/a ({result['seeds'][0]['probe']['messages']['not_applicable']})")
        lines += [
            f"### {result['name']}",
            "",
            result["threat_model"],
            "",
            f"Probe: {seen}, aggregate cosine {format_spread(summary['probe_aggregate'], 'fraction')}, "
            f"chance {format_spread(summary['probe_chance'], 'fraction')}; "
            f"{result['seeds'][0]['probe']['vectors_attacked']} vectors attacked.",
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


def _identical_groups(data: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """Rows whose accuracy curves are equal at every seed, grouped (exact protocols train the same model)."""
    groups: list[list[dict[str, Any]]] = []
    for result in data["protocols"]:
        curves = [run["accuracy_per_round"] for run in result["seeds"]]
        for group in groups:
            if [run["accuracy_per_round"] for run in group[0]["seeds"]] == curves:
                group.append(result)
                break
        else:
            groups.append([result])
    return groups


def _plot_accuracy(data: dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    figure, axes = plt.subplots(figsize=(7.5, 4.6))
    styles = ("-", "--", "-.", ":")
    markers = ("o", "s", "^", "v", "D", "x", "+")
    merged = False
    for index, group in enumerate(_identical_groups(data)):
        curves = np.array([run["accuracy_per_round"] for run in group[0]["seeds"]], dtype=np.float64)
        rounds = np.arange(1, curves.shape[1] + 1)
        label = " = ".join(result["name"] for result in group)
        merged = merged or len(group) > 1
        line, = axes.plot(rounds, curves.mean(axis=0), linestyle=styles[index % len(styles)],
                          marker=markers[index % len(markers)], markersize=4, label=label)
        if len(curves) > 1:
            axes.fill_between(rounds, curves.min(axis=0), curves.max(axis=0), color=line.get_color(), alpha=0.15)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("round")
    axes.set_ylabel("test accuracy (mean over seeds; band: min-max)")
    axes.set_ylim(0, 1)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, loc="lower right")
    title = "FedAvg on digits: accuracy per round"
    if merged:
        title += "\n(rows joined by '=' have identical curves at every seed)"
    axes.set_title(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=130)
    plt.close(figure)


def _log_axis(axes: Any) -> None:
    from matplotlib.ticker import LogFormatterSciNotation, LogLocator

    axes.set_yscale("log")
    axes.yaxis.set_major_locator(LogLocator(base=10, numticks=12))
    axes.yaxis.set_minor_locator(LogLocator(base=10, subs=[k / 10 for k in range(2, 10)], numticks=12))
    axes.yaxis.set_major_formatter(LogFormatterSciNotation(base=10))
    axes.grid(alpha=0.3, axis="y", which="major")
    axes.grid(alpha=0.1, axis="y", which="minor")


def _bars(axes: Any, data: dict[str, Any], figures: Sequence[tuple[str, str]], floor: float) -> None:
    """Grouped bars (one per figure) per row, mean over the seeds with min-max error bars.

    A part a row does not have (zero at every seed, e.g. helpers without
    helper parties) gets no bar rather than one at the axis floor.
    """
    rows = data["protocols"]
    positions = np.arange(len(rows))
    width = 0.8 / len(figures)
    for index, (figure, label) in enumerate(figures):
        stats = [_summary(row).get(figure) for row in rows]
        means = np.array([max(s["mean"], floor) if s and s["mean"] > 0 else np.nan for s in stats])
        low = np.array([max(s["low"], floor) if s and s["mean"] > 0 else np.nan for s in stats])
        high = np.array([max(s["high"], floor) if s and s["mean"] > 0 else np.nan for s in stats])
        offset = (index - (len(figures) - 1) / 2) * width
        shown = ~np.isnan(means)
        axes.bar((positions + offset)[shown], means[shown], width, label=label,
                 yerr=np.vstack([means - low, high - means])[:, shown], capsize=2, error_kw={"linewidth": 0.8})
    axes.set_xticks(positions, [row["name"] for row in rows], rotation=30, ha="right", fontsize=8)


def _plot_overhead(data: dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt

    figure, (seconds_axes, bytes_axes) = plt.subplots(1, 2, figsize=(12, 5.2))
    floor = 1e-5
    _bars(seconds_axes, data, [(f"{part}_seconds_per_round", part.replace("_", " ")) for part in _PLOTTED_PARTS],
          floor)
    _log_axis(seconds_axes)
    seconds_axes.set_ylabel("seconds per round, all parties (log)")
    seconds_axes.set_title("compute per round, by part", fontsize=10)
    _bars(bytes_axes, data, [("bytes_up_per_client_per_round", "upload"),
                             ("bytes_down_per_client_per_round", "download")], 1.0)
    _log_axis(bytes_axes)
    bytes_axes.set_ylabel("bytes per client per round (log)")
    bytes_axes.set_title("communication per client", fontsize=10)
    for axes, columns in ((seconds_axes, 3), (bytes_axes, 2)):
        axes.legend(fontsize=7, ncol=columns, loc="upper center", bbox_to_anchor=(0.5, -0.32), frameon=False)
    seconds_axes.text(0.0, -0.5, "error bars: min-max over the seeds; no bar: the row has no such part",
                      transform=seconds_axes.transAxes, fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=130, bbox_inches="tight")
    plt.close(figure)


def _plot_reconstructions(comparison: Comparison, path: Path) -> None:
    import matplotlib.pyplot as plt

    rows = comparison.results  # the first seed's probe of every row
    figure, grid = plt.subplots(len(rows), 4, figsize=(7.2, 1.8 * len(rows) + 0.7), squeeze=False)
    titles = ("from messages", "closest true", "from aggregate", "closest true")
    for row_index, (row, result) in enumerate(zip(grid, rows)):
        images: list[np.ndarray | None] = []
        labels: list[str] = []
        run = result.runs[0]
        for score in (run.probe.messages, run.probe.aggregate):
            target = score.best_target
            images += [score.best_candidate,
                       run.probe_examples[target] if target is not None and len(run.probe_examples) else None]
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
