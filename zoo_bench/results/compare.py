"""Baselines and compare: is the current run worse than the baseline, beyond noise?

Trials are matched by their id without the seed (a configuration); each side's seeds give a mean
and a 95% interval. Accuracy regresses only when the drop exceeds the threshold and the drop is
significant: where both sides kept which test images each trial got right (run folders, and baselines
saved since they keep it), by the paired test on the same images and seeds
(:func:`zoo_bench.results.stats.paired_difference`, p < 0.05); otherwise, where both sides have several
seeds, when the intervals over seeds do not overlap. Timing compares means of per-trial medians and is
information unless gated; a timing gate also needs the change to pass the floor and the spread of
:mod:`zoo_bench.results.timing`, and is skipped, with a warning, when the machines differ.

Exit codes: 0 pass; 1 regression; 2 usage error, unreadable file or no baseline;
3 the current run has errored trials or lacks trials the baseline has (broken beats regressed).
"""
from __future__ import annotations

import json
import platform
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..params import id_params, quiet_defaults, with_defaults
from ..plan.gates import DEFAULT_GATES, METRICS, Gate
from ..plan.providers import latest_providers, provider_changes
from ..plan.trial import strategy_label
from .correctness import Correctness, encode
from .fields import BASELINE_FIELDS
from .selection import tuned_rows
from .stats import Estimate, PairedDifference, estimate, paired_difference
from .store import RunStore, now_iso, to_dataframe
from .timing import TimingRule, judge, untimed

ALPHA = 0.05  # the paired test's level for an accuracy regression


class CompareInputError(UsageError):
    """A side of the comparison is missing or unreadable (exit 2)."""


def worker_threads(side: "Side") -> list[int]:
    """The CPU threads per worker a side's trials ran with (empty: the frameworks' defaults)."""
    return sorted({int(r["worker_threads"]) for r in side.rows if r.get("worker_threads") is not None})


@dataclass
class Side:
    """One side of a comparison: rows, machine and where it came from."""

    label: str
    rows: list[dict[str, Any]]
    machine: dict[str, Any]
    suite: dict[str, Any] = field(default_factory=dict)
    selection: dict[str, Any] | None = None  # a run with [select]: its tuned numbers are compared too
    providers: dict[str, Any] | None = None  # which plugin provided each name (run.json); None before they were kept
    correctness: Correctness = field(default_factory=Correctness)  # which test images each trial got right


def machine_info(meta: dict[str, Any]) -> dict[str, Any]:
    """What identifies a machine for timing: device names per backend and CPU count."""
    devices = {k: v.get("name") for k, v in (meta.get("devices") or {}).items() if isinstance(v, dict)}
    return {"devices": devices, "cpu_count": meta.get("cpu_count"), "platform": meta.get("platform")}


def load_side(path: Path) -> Side:
    """A run folder (``trials.jsonl`` + ``run.json``) or a baseline file."""
    try:
        if path.is_dir():
            store = RunStore(path)
            if not store.jsonl.exists():
                raise CompareInputError(f"{path}: not a run folder (no trials.jsonl)")
            meta = store.meta()
            return Side(str(path), store.rows(), machine_info(meta), meta.get("suite") or {}, meta.get("selection"),
                        latest_providers(meta), Correctness(run_dir=path))
        data = json.loads(path.read_text())
        return Side(str(path), data["trials"], data["machine"], data.get("suite") or {}, data.get("selection"),
                    data.get("providers"), Correctness(images=data.get("test_images")))
    except FileNotFoundError:
        raise CompareInputError(f"{path}: no such baseline or run (save one with: zoo-bench baseline save RUN "
                                "--name NAME)") from None
    except (json.JSONDecodeError, KeyError, TypeError, IsADirectoryError, UnicodeDecodeError) as exc:
        raise CompareInputError(f"{path}: unreadable baseline ({type(exc).__name__}: {exc})") from None


def save_baseline(run_dir: Path, name: str, out_dir: Path) -> Path:
    """Write ``out_dir/NAME.json``: per-trial results (with which test images each got right, where its
    predictions file is readable), the suite, machine and package info."""
    if not re.fullmatch(r"[\w.-]+", name):
        raise UsageError(f"--name {name!r}: use letters, digits, '.', '-' and '_'")
    side = load_side(run_dir)
    meta = RunStore(run_dir).meta()
    trials, images = [], {}
    for row in side.rows:
        trial = {k: row.get(k) for k in BASELINE_FIELDS}
        correct = side.correctness.of(row) if row.get("status") == "ok" else None
        if correct is not None and not isinstance(correct, str):
            key, keys, trial["test_correct"] = encode(correct)
            images[key] = keys
        trials.append(trial)
    payload = {
        "name": name, "saved_at": now_iso(), "run_id": meta.get("run_id"), "suite_name": meta.get("suite_name"),
        "suite": side.suite, "machine": side.machine, "versions": meta.get("versions"), "selection": side.selection,
        "providers": side.providers, "saved_with_python": platform.python_version(),
        "trials": trials, "test_images": images,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps(payload, indent=1, sort_keys=True, default=str) + "\n")
    return path


def config_id(trial_id: str) -> str:
    """A trial id without its seed."""
    return trial_id.rsplit("/seed=", 1)[0]


def canonical_config(row: dict[str, Any], strategies: dict[str, Any] | None) -> str:
    """A row's configuration as today's trial id would name it (without the seed).

    Rows written before a parameter was added, renamed or respelled (a baseline from an older
    version) get today's names, values and defaults, so they still match the same configuration.
    Unknown strategies keep their id as written.
    """
    cls = (strategies or {}).get(row.get("strategy"))
    if cls is None or not isinstance(row.get("params"), dict) or row["trial_id"].startswith("tuned:"):
        return config_id(row["trial_id"])

    specs = cls.param_specs()
    renamed = getattr(cls, "renamed_params", {}) or {}
    params = with_defaults({}, cls.params)  # what a row without a parameter meant
    for key, value in row["params"].items():
        key = renamed.get(key, key)
        if key in specs:
            params[key] = specs[key].canonical(value)
        else:  # a parameter that no longer exists: keep it, so the configurations do not merge
            params[key] = value
    params = id_params(params, quiet_defaults(cls.params))
    return f"{row['backend']}/{row['backbone']}/{strategy_label(row['strategy'], params)}/n={row['size_per_class']}"


def with_tuned(side: Side) -> list[dict[str, Any]]:
    """A side's rows plus, for a run with [select], its chosen trials as ``tuned:...`` rows (one per seed)."""
    if not side.selection:
        return side.rows

    chosen = tuned_rows(to_dataframe(side.rows), side.selection)
    extra = [] if chosen.empty else [
        {k: (None if isinstance(v, float) and v != v else v) for k, v in r.items()}
        for r in chosen.to_dict("records")]
    return side.rows + extra


@dataclass
class Line:
    """One configuration and metric, compared."""

    config: str
    metric: str
    baseline: Estimate | None
    current: Estimate | None
    delta: float | None  # points for accuracy, relative change for time
    status: str  # pass | fail | info | new | missing | error | skipped
    note: str = ""


@dataclass
class Report:
    lines: list[Line]
    warnings: list[str]
    exit_code: int

    def as_json(self) -> str:
        def enc(e: Estimate | None):
            return None if e is None else {"mean": e.mean, "ci95_half_width": e.half_width, "n": e.n}

        return json.dumps({"exit_code": self.exit_code, "warnings": self.warnings, "lines": [
            {**{k: v for k, v in asdict(line).items() if k not in ("baseline", "current")},
             "baseline": enc(line.baseline), "current": enc(line.current)} for line in self.lines]}, indent=1)


def overlap_rule(base: Estimate, cur: Estimate, limit_points: float) -> bool:
    """Accuracy regressed: the drop exceeds the limit and, with several seeds each, the CIs are apart."""
    drop_exceeds = (cur.mean - base.mean) * 100 < limit_points
    if base.n >= 2 and cur.n >= 2:
        return drop_exceeds and not base.overlaps(cur)
    return drop_exceeds


def paired_accuracy(baseline: Side, current: Side, b_rows: list[dict[str, Any]],
                    c_rows: list[dict[str, Any]]) -> PairedDifference | str:
    """Current minus baseline accuracy, paired on the images and seeds both sides tested; or why not."""
    base = {r["seed"]: r for r in b_rows if r.get("status") == "ok"}
    cur = {r["seed"]: r for r in c_rows if r.get("status") == "ok"}
    seeds = sorted(set(base) & set(cur))
    if not seeds or seeds != sorted(base) or seeds != sorted(cur):
        return "not the same seeds"
    rows_b, rows_c = [], []
    for seed in seeds:
        found_b, found_c = baseline.correctness.of(base[seed]), current.correctness.of(cur[seed])
        for found in (found_b, found_c):
            if isinstance(found, str):
                return found
        if set(found_b.index) != set(found_c.index):
            return f"not the same test images at seed {seed}"
        keys = sorted(found_b.index)
        rows_b.append(found_b[keys].to_numpy())
        rows_c.append(found_c[keys].to_numpy())
    if len({len(r) for r in rows_b}) != 1:
        return "the seeds were tested on different images"
    return paired_difference(rows_c, rows_b)


def accuracy_status(baseline: Side, current: Side, b_rows: list[dict[str, Any]], c_rows: list[dict[str, Any]],
                    b: Estimate, c: Estimate, applicable: list[Gate]) -> tuple[str, str]:
    """pass or fail, and the note saying on what evidence: the paired test where both sides have it."""
    paired = paired_accuracy(baseline, current, b_rows, c_rows)
    if isinstance(paired, str):
        failed = [g for g in applicable if overlap_rule(b, c, g.limit)]
        return ("fail" if failed else "pass"), f"seed intervals, not paired: {paired}"
    drop = (c.mean - b.mean) * 100
    significant = paired.delta < 0 and paired.p < ALPHA
    failed = [g for g in applicable if drop < g.limit and significant]
    return ("fail" if failed else "pass"), (f"paired {paired.delta:+.2f} pt [{paired.low:+.2f}, {paired.high:+.2f}], "
                                            f"p {paired.p:.2g}, {paired.seeds} seeds x {paired.images} images")


def compare(baseline: Side, current: Side, gates: list[Gate], strategies: dict[str, Any] | None = None,
            timing: TimingRule | None = None) -> Report:
    """Every configuration of either side, per metric, with pass or fail.

    ``strategies`` (name -> Strategy class) lets rows from older versions match today's ids. Runs with
    ``[select]`` on both sides are also compared on their tuned numbers (lines ``tuned:...``). ``timing``:
    the floor and spread multiple of timing gates (default: the current run's suite, else the baseline's).
    """
    timing = timing or TimingRule.from_suite(current.suite or baseline.suite)
    warnings = provider_changes(baseline.providers, current.providers, current.label, before_label=baseline.label)
    same_machine = baseline.machine.get("devices") == current.machine.get("devices") and \
        baseline.machine.get("cpu_count") == current.machine.get("cpu_count") and \
        worker_threads(baseline) == worker_threads(current)
    if any(g.metric == "epoch_time" for g in gates) and not same_machine:
        warnings.append(f"timing gate skipped: the machines differ (baseline {baseline.machine.get('devices')}, "
                        f"{baseline.machine.get('cpu_count')} CPUs, worker threads {worker_threads(baseline)}; "
                        f"current {current.machine.get('devices')}, {current.machine.get('cpu_count')} CPUs, "
                        f"worker threads {worker_threads(current)})")

    def grouped(rows):
        out: dict[str, list[dict]] = {}
        for r in rows:
            out.setdefault(canonical_config(r, strategies), []).append(r)
        return out

    both_tuned = bool(baseline.selection) and bool(current.selection)
    base_g = grouped(with_tuned(baseline) if both_tuned else baseline.rows)
    cur_g = grouped(with_tuned(current) if both_tuned else current.rows)
    lines: list[Line] = []
    broken = regressed = False
    for config in sorted(set(base_g) | set(cur_g)):
        b_rows, c_rows = base_g.get(config, []), cur_g.get(config, [])
        c_errors = [r for r in c_rows if r.get("status") != "ok"]
        missing_seeds = {r["seed"] for r in b_rows} - {r["seed"] for r in c_rows}
        if not c_rows:
            lines.append(Line(config, "all", None, None, None, "missing", "in the baseline, not in the current run"))
            broken = True
            continue
        if c_errors:
            lines.append(Line(config, "all", None, None, None, "error", c_errors[0].get("error") or "error"))
            broken = True
        if missing_seeds and b_rows:
            lines.append(Line(config, "all", None, None, None, "missing", f"seeds {sorted(missing_seeds)} missing"))
            broken = True
        for metric, (column, unit) in METRICS.items():
            applicable = [g for g in gates if g.applies(metric, config)]
            b = estimate(r.get(column) for r in b_rows if r.get("status") == "ok")
            c = estimate(r.get(column) for r in c_rows if r.get("status") == "ok")
            ok_b = [r for r in b_rows if r.get("status") == "ok"]
            if metric == "epoch_time" and applicable and b is None and ok_b and c_rows:
                lines.append(Line(config, metric, None, None, None, "skipped", f"not gated: {untimed(ok_b, timing)}"))
                continue
            if c is None and b is None:
                continue
            if not b_rows:
                lines.append(Line(config, metric, None, c, None, "new", "no baseline for this trial"))
                continue
            if b is None or c is None:
                continue
            status, notes = "info", [f"gate {g.metric}:{g.limit:+g}{g.unit}" for g in applicable if g.pattern]
            if metric == "accuracy":
                delta = (c.mean - b.mean) * 100
                if applicable:
                    status, evidence = accuracy_status(baseline, current, b_rows, c_rows, b, c, applicable)
                    notes += [evidence] if evidence else []
            else:
                delta = c.mean / b.mean - 1 if b.mean else None
                why_not = untimed(ok_b, timing) if applicable else None
                if applicable and not same_machine:
                    status = "skipped"
                elif why_not:
                    status, notes = "skipped", notes + [f"not gated: {why_not}"]
                elif applicable and delta is not None:
                    verdict = judge(ok_b, [r for r in c_rows if r.get("status") == "ok"], b.mean, c.mean,
                                    min(g.limit for g in applicable), timing)
                    status, notes = ("fail" if verdict.failed else "pass"), notes + [verdict.note]
            regressed |= status == "fail"
            lines.append(Line(config, metric, b, c, delta, status, "; ".join(notes)))
    code = 3 if broken else (1 if regressed else 0)
    return Report(lines, warnings, code)


def gates_from(cli: list[str] | None, suite: dict[str, Any]) -> list[Gate]:
    """Gates from the command line, else the suite's ``[compare] fail``, else the default accuracy gate."""
    texts = cli or (suite.get("compare") or {}).get("fail") or DEFAULT_GATES
    return [Gate.parse(t) for t in texts]
