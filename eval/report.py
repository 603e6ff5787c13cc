"""Render a faithfulness report (the dict `eval.faithfulness` writes as report.json): markdown and plots.

    write_report(report, out_dir)   # report.md, metrics.png, abstention.png, support_hist.png

Everything drawn comes from the report itself, so an old report.json can be re-rendered.
Each figure states its n and shows 95 % bootstrap intervals. matplotlib (the `eval` extra) is
imported here only, with the Agg backend: no display is needed.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from eval.metrics.calibration import bootstrap_ci
from eval.metrics.compare import LOWER_IS_BETTER

GROUP_COLORS = {"retrieval": "#4C72B0", "answers": "#55A868", "faithfulness": "#C44E52",
                "citations": "#8172B2", "abstention": "#CCB974"}
FILES = ("report.md", "metrics.png", "abstention.png", "support_hist.png")


def write_report(report: dict, out: Path) -> list[Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(markdown(report), encoding="utf-8")
    plot_metrics(report, out / "metrics.png")
    plot_abstention(report, out / "abstention.png")
    plot_support(report, out / "support_hist.png")
    return [out / f for f in FILES]


# --- markdown --------------------------------------------------------------------------------------


def _fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:.3f}"


def _ci(ci: Sequence[float | None] | None) -> str:
    return "—" if not ci or ci[0] is None else f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def _title(report: dict) -> str:
    return f"{report['dataset']['name']}: {report['mode']} mode, judge {report['judge']}"


def markdown(report: dict) -> str:
    ds, metrics = report["dataset"], report["metrics"]
    sample = ds.get("sample")
    lines = [
        f"# Faithfulness report — {_title(report)}",
        "",
        f"{ds['questions']} questions ({ds['answerable']} answerable, {ds['unanswerable']} unanswerable) from "
        f"`{ds['path']}` ({ds['format']}, sha256 `{ds['sha256'][:12]}`, collection `{ds['corpus_sha256'][:12]}`)"
        + (f"; a seeded sample of {sample['limit']} of {sample['of']} (seed {sample['seed']}, {sample['rule']})"
           if sample else "")
        + (f"; left out, having no letters or digits: {', '.join(ds['left_out'])}" if ds.get("left_out") else "")
        + f". Run key `{report['run_key']}`, created {report['created']}, {report['seconds']} s.",
        "",
        "## What the numbers mean",
        "",
        "Each metric is a mean over the questions it applies to (its n); the interval is the 95 % "
        "percentile bootstrap interval of that mean (1000 seeded resamples of those questions). "
        "Answers are compared with citation markers removed.",
        "",
        "| metric | over | formula |",
        "|---|---|---|",
    ]
    for m, d in report["definitions"].items():
        lines.append(f"| {m} | {d['over']} | {d['formula']} |")
    lines += [
        "",
        "Retrieval relevance: a retrieved chunk is relevant when its source is a gold source and one of its "
        "pages is a gold page (any page when the gold names none). Gold pages are alternatives — each holds an "
        "answer — so recall@5 is the share of questions with a relevant chunk in the top 5. The top 10 are "
        "retrieved with the answer's standalone query.",
        "",
        "A sentence is *supported* when the judge scores its cited sources together at or above the support "
        f"threshold ({report['config'].get('support_threshold')}) and no number it states is missing from them; an "
        "uncited sentence counts for faithfulness (not for citations) when one retrieved source supports it. "
        "Refusals are not judged for faithfulness or citations.",
    ]
    if report["mode"] == "extractive":
        lines += ["", "Extractive mode: answers are whole document sentences, so exact match is near 0 and F1 is "
                      "low by construction; **answer_recall** (the reference occurs in the answer) is the telling "
                      "answer metric."]
    lines += ["", "## Headline metrics", "", "| metric | value | 95 % CI | n | judge |", "|---|---:|---|---:|---|"]
    for m, v in metrics.items():
        arrow = " (lower is better)" if m in LOWER_IS_BETTER else ""
        lines.append(f"| {m}{arrow} | {_fmt(v)} | {_ci(report['ci95'].get(m))} | {report['n'].get(m, 0)} | "
                     f"{report['judges'].get(m, '')} |")
    lines += ["", "![metrics](metrics.png)", ""]

    ab = report["abstention"]
    at = _point_at(ab["curve"], ab["threshold"])
    lines += ["## Abstention", "",
              f"Refusal threshold on the evidence score: **{ab['threshold']}** (configured). At it: coverage "
              f"{_fmt(at['coverage'])}, risk {_fmt(at['risk'])}. Area under the risk–coverage curve (AURC, lower is "
              f"better): {_fmt(ab['aurc'])}. Risk = share of answered questions that are unanswerable or whose answer "
              "misses every reference; the curve sweeps the threshold over every observed evidence score.", ""]
    lines += ["| threshold | coverage | risk | correct refusals | false refusals |", "|---:|---:|---:|---:|---:|"]
    for p in _sparse(ab["curve"], 9):
        lines.append(f"| {p['threshold']:.4f} | {_fmt(p['coverage'])} | {_fmt(p['risk'])} | "
                     f"{_fmt(p['correct_refusal_rate'])} | {_fmt(p['false_refusal_rate'])} |")
    lines += ["", "![abstention](abstention.png)", "", "![support scores](support_hist.png)", ""]

    if report.get("by_type"):
        cols = ["recall@5", "answer_recall", "f1", "faithfulness", "citation_recall", "correct_refusal_rate",
                "false_refusal_rate"]
        lines += ["## By question type", "", "| type | n | " + " | ".join(cols) + " |",
                  "|---|---:|" + "---:|" * len(cols)]
        for t, row in report["by_type"].items():
            lines.append(f"| {t} | {row['n']} | " + " | ".join(_fmt(row.get(c)) for c in cols) + " |")
        lines.append("")

    if report.get("by_direction"):
        cols = ["recall@5", "mrr", "answer_recall", "f1", "faithfulness", "false_refusal_rate", "language_match"]
        lines += ["## By direction (question language → document language)", "",
                  "| direction | n | " + " | ".join(cols) + " |", "|---|---:|" + "---:|" * len(cols)]
        for d, row in report["by_direction"].items():
            lines.append(f"| {d} | {row['n']} | " + " | ".join(_fmt(row.get(c)) for c in cols) + " |")
        lines.append("")

    if report.get("baseline"):
        b = report["baseline"]
        lines += ["## Against the baseline", "", f"`{b['path']}`, tolerance {b['max_drop']}: "
                  + ("no headline metric is worse." if not b["regressions"] else "worse:"), ""]
        for r in b["regressions"]:
            lines.append(f"- {r['metric']}: {r['baseline']:.3f} → {r['current']:.3f}")
        lines += [f"- note: {n}" for n in b.get("notes", [])] + [""]

    lines += ["## Run", "", "Models:", ""]
    lines += [f"- {k}: {v if v is not None else '— (off or not available)'}" for k, v in report["models"].items()]
    lines += ["", "Versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items() if v), ""]
    if report.get("notices"):
        lines += ["Notices:", ""] + [f"- {n}" for n in report["notices"]] + [""]
    lines += ["Configuration:", "", "```json", json.dumps(report["config"], indent=1, ensure_ascii=False), "```", ""]
    return "\n".join(lines)


def _point_at(curve: list[dict], threshold: float) -> dict:
    """The curve point at `threshold` (eval.faithfulness puts the configured one on the curve),
    else the nearest."""
    return min(curve, key=lambda p: abs(p["threshold"] - threshold))


def _sparse(curve: list[dict], n: int) -> list[dict]:
    if len(curve) <= n:
        return curve
    step = (len(curve) - 1) / (n - 1)
    return [curve[round(i * step)] for i in range(n)]


# --- plots -----------------------------------------------------------------------------------------


def _pyplot():
    try:
        import matplotlib
    except ImportError as err:
        from rag.errors import MissingDependencyError

        raise MissingDependencyError("matplotlib", "eval") from err
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_metrics(report: dict, path: Path) -> None:
    """Horizontal bars, one per headline metric, with 95 % bootstrap error bars and n."""
    plt = _pyplot()
    names = [m for m in report["metrics"] if report["metrics"][m] is not None]
    fig, ax = plt.subplots(figsize=(8.5, 0.42 * len(names) + 1.6))
    ys = list(range(len(names)))[::-1]
    for y, m in zip(ys, names):
        v = report["metrics"][m]
        ci = report["ci95"].get(m) or [v, v]
        group = report["definitions"].get(m, {}).get("group", "")
        ax.barh(y, v, color=GROUP_COLORS.get(group, "grey"), alpha=0.85)
        ax.errorbar(v, y, xerr=[[v - ci[0]], [ci[1] - v]], fmt="|", color="black", ms=12, capsize=3, lw=1)
        ax.text(1.02, y, f"{v:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]  n={report['n'][m]}", va="center", fontsize=8,
                transform=ax.get_yaxis_transform())
    ax.set_yticks(ys, [m + (" ↓" if m in LOWER_IS_BETTER else "") for m in names])
    ax.set_xlim(-0.015, 1.015)  # a 0 or 1 value keeps its visible tick
    ax.set_xlabel("value (| = the value, whiskers = 95 % bootstrap CI; ↓ = lower is better)")
    ds = report["dataset"]
    ax.set_title(f"{_title(report)}\n{ds['questions']} questions ({ds['answerable']} answerable)", fontsize=10)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in GROUP_COLORS.values()]
    fig.legend(handles, list(GROUP_COLORS), fontsize=8, loc="lower center", ncol=5, frameon=False)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_abstention(report: dict, path: Path) -> None:
    """Left: refusal rates over the threshold; right: risk against coverage. Bands: 95 % bootstrap."""
    plt = _pyplot()
    ab, ds = report["abstention"], report["dataset"]
    curve = ab["curve"]
    t = [p["threshold"] for p in curve]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.3))
    series = (("correct_refusal_rate", "correct refusals (unanswerable)", "#55A868", ds["unanswerable"]),
              ("false_refusal_rate", "false refusals (answerable)", "#C44E52", ds["answerable"]))
    for key, label, color, n in series:
        ys = [p[key] for p in curve]
        if all(y is None for y in ys):
            continue
        left.step(t, ys, where="post", color=color, label=f"{label}, n={n}")
        lo = [p["ci95"][key][0] for p in curve]
        hi = [p["ci95"][key][1] for p in curve]
        if None not in lo and None not in hi:
            left.fill_between(t, lo, hi, step="post", color=color, alpha=0.2)
    left.axvline(ab["threshold"], color="black", ls="--", lw=1, label=f"configured threshold {ab['threshold']}")
    left.set_xlabel("refusal threshold on the evidence score")
    left.set_ylabel("rate")
    left.set_ylim(-0.02, 1.02)
    left.legend(fontsize=8, loc="best")
    left.set_title("Refusals over the threshold (bands: 95 % bootstrap)", fontsize=10)

    cov = [p["coverage"] for p in curve]
    risk = [p["risk"] for p in curve]
    right.plot(cov, risk, color="#4C72B0", marker=".", ms=3, label=f"risk–coverage, n={ds['questions']}")
    lo = [p["ci95"]["risk"][0] for p in curve]
    hi = [p["ci95"]["risk"][1] for p in curve]
    if None not in lo and None not in hi:
        right.fill_between(cov, lo, hi, color="#4C72B0", alpha=0.2, label="95 % bootstrap band")
    at = _point_at(curve, ab["threshold"])
    right.plot([at["coverage"]], [at["risk"]], "k*", ms=10, label="at the configured threshold")
    share_bad = ds["unanswerable"] / ds["questions"] if ds["questions"] else 0
    right.axhline(share_bad, color="grey", ls=":", lw=1, label=f"share unanswerable ({share_bad:.2f})")
    right.set_xlabel("coverage (share of questions answered)")
    right.set_ylabel("risk (answered wrongly / answered)")
    right.set_xlim(-0.02, 1.02)
    right.set_ylim(-0.02, 1.02)
    right.legend(fontsize=8, loc="upper left")
    right.set_title(f"Risk–coverage, AURC {_fmt(ab['aurc'])}", fontsize=10)
    fig.suptitle(_title(report), fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _label(name: str, values: list[float]) -> str:
    if not values:
        return f"{name}: n=0"
    lo, hi = bootstrap_ci(values)
    return f"{name}: n={len(values)}, mean {sum(values) / len(values):.2f} [{lo:.2f}, {hi:.2f}]"


def plot_support(report: dict, path: Path) -> None:
    """Histograms, answerable vs unanswerable: evidence scores (the refusal signal) and the judge's
    support of each answer sentence. Legends give n and the mean with its 95 % bootstrap CI."""
    plt = _pyplot()
    sc = report["scores"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.0))
    panels = ((axes[0], sc["evidence"], "evidence score (per question)", report["abstention"]["threshold"],
               "refusal threshold"),
              (axes[1], sc["sentence_support"], f"sentence support by the judge ({report['judge']})",
               report["config"].get("support_threshold"), "support threshold"))
    for ax, data, xlabel, line, line_label in panels:
        values = [v for k in ("answerable", "unanswerable") for v in data[k]]
        lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
        lo, hi = min(lo, 0.0), max(hi, 1.0)
        bins = [lo + (hi - lo) * i / 25 for i in range(26)]
        for key, color in (("answerable", "#4C72B0"), ("unanswerable", "#DD8452")):
            if data[key]:
                ax.hist(data[key], bins=bins, alpha=0.55, color=color, label=_label(key, data[key]))
        if line is not None and lo <= line <= hi:
            ax.axvline(line, color="black", ls="--", lw=1, label=f"{line_label} {line}")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("count")
        ax.legend(fontsize=8)
    axes[0].set_title("Evidence before answering (95 % CI of the mean)", fontsize=10)
    axes[1].set_title("Support of answer sentences (95 % CI of the mean)", fontsize=10)
    fig.suptitle(_title(report), fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
