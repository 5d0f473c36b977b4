"""The README's result tables, generated from a bundle's model card (``ecg-edge rebuild`` rewrites the block
between ``<!-- results:begin -->`` and ``<!-- results:end -->``; ``ecg-edge results`` prints it)."""
from __future__ import annotations

from pathlib import Path

from edge_sdk.errors import ConfigError

from .float_ops import LEGEND, compact

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"

#: Card fidelity entries -> (model file, row name), for the student's files against its own float model.
INT8_ROWS = {"student_onnx_int8_vs_fp32": ("student_int8.onnx", "student int8, ONNX Runtime QDQ"),
             "student_tflite_int8_vs_fp32": ("student_int8.tflite", "student int8, TFLite")}
CHEST_KEYS = (("clean_sinus", "clean sinus: top = {}"), ("af", "AF: top = {}"), ("other", "other rhythms: top = {}"))


def _f(v, digits: int = 4) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def _pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.1f} %"


def _count(fraction, n) -> str:
    """A fraction of ``n`` windows or records as a count and a percentage: one window in 5,523 is not '0.0 %'."""
    if fraction is None or not n:
        return _pct(fraction)
    return f"{round(fraction * n):,} ({100 * fraction:.2f} %)"


def _int8_label(card: dict, key: str) -> str:
    """Row name of an int8 file, with the parts it keeps in float (or 'full-integer' for TFLite)."""
    file, label = INT8_ROWS[key]
    q = (card["files"].get(file) or {}).get("quantization") or {}
    if q.get("float_ops"):
        return f"{label}, float: {compact(q['float_ops'])}"
    return f"{label} full-integer" if file.endswith(".tflite") else label


def _rule_text(rule: dict) -> str:
    """One phrase on the card's record rule: what it is and where it was fitted and chosen."""
    fitted = rule.get("fitted") or {}
    text = ("a logistic regression over each output's mean, log-mean, max, min and spread of window probabilities "
            "and the window count" if rule["method"] == "logistic" else rule["method"])
    if fitted:
        text += (f", fitted on {fitted.get('n_records', '?'):,} training records and chosen (C = "
                 f"{fitted.get('regularization_C', '?'):g}) on the validation records")
    return text + " (`edge_sdk/record_rule.py`)"


def _plan_markdown(plan: dict) -> list[str]:
    lines = ["", f"Which parts stay float, chosen by measurement (`quantize/precision_plan.py`) on "
                 f"{plan['measured_on']}, target max error {plan['target_max_abs_prob_error']} "
                 f"({'reached' if plan['reached'] else 'not reached'} there); each step keeps one more part in float "
                 f"in the ONNX Runtime int8 model ({LEGEND}):", "",
             "| float part added | float parts | max abs prob. error | p99 | windows > target "
             "| ms / window (1 thread, build machine) |",
             "|---|---|---:|---:|---:|---:|"]
    for st in plan["steps"]:
        lines.append(f"| {st['added'] or 'none (all int8)'} | {compact(st['float_ops'])} | "
                     f"{_f(st['max_abs_prob_error'], 3)} | "
                     f"{_f(st['p99_abs_prob_error'], 3)} | {st['windows_over_target']:,} | "
                     f"{_f(st['ms_per_window_1_thread'], 2)} |")
    return lines


def _qat_runs_markdown(sel: dict) -> list[str]:
    key = f"windows_over_{sel['precision_target']}"
    rec = all("records_top_label_changed" in r[h] for r in sel["runs"] for h in ("choose", "check"))
    lines = ["", f"Which QAT run the int8 files come from (`quantize/qat_select.py`): one run per seed, each made into "
                 f"an int8 ONNX Runtime model as the bundle is, and measured against its own fp32 model. Kept: "
                 f"seed {sel['chosen_seed']}, by the {sel['rule']}. Choose half: {sel['choose']}; check half: "
                 f"{sel['check']}.", "",
             f"| seed | float parts | choose: max | choose: windows > {sel['precision_target']} | check: max | "
             f"check: windows > {sel['precision_target']} |" +
             (" records whose top label of the mean changes (choose / check; not part of the rule) |" if rec else ""),
             "|---:|---|---:|---:|---:|---:|" + ("---:|" if rec else "")]
    for r in sel["runs"]:
        kept = r["seed"] == sel["chosen_seed"]
        seed = f"**{r['seed']} (kept)**" if kept else str(r["seed"])
        c, k = r["choose"], r["check"]
        lines.append(f"| {seed} | {compact(r['float_ops']) or 'none'} | {_f(c['max_abs_prob_error'], 4)} | "
                     f"{c[key]:,} of {c['n_windows']:,} | {_f(k['max_abs_prob_error'], 4)} | "
                     f"{k[key]:,} of {k['n_windows']:,} |" +
                     (f" {c['records_top_label_changed']} of {c['n_records']:,} / {k['records_top_label_changed']} of "
                      f"{k['n_records']:,} |" if rec else ""))
    return lines


def results_markdown(card: dict, bundle: str = "bundles/default") -> str:
    """Markdown tables of skill, int8 fidelity and chest-lead behaviour, every number from ``card``."""
    names = [d["name"] for d in card["labels"]]
    fid = card["fidelity"]
    ev = card["evaluation"]
    student, teacher = card["student"], card.get("teacher") or {}
    onnx = fid.get("student_onnx_int8_vs_fp32", {})
    rule = card.get("record_rule") or {"method": "mean"}
    by_rule = rule["method"] != "mean"
    lines = [f"Held-out split: {ev['data']} ({ev['n_records']:,} records, {ev['n_windows']:,} windows; never used for "
             f"training, selection or thresholds). Every number below is from `{bundle}/model_card.json`, written "
             "by `ecg-edge rebuild --force` (or its last step, `ecg-edge quantize --config "
             "configs/default_bundle.json --force`).", "",
             "Record-level AUROC per output (by name) and the Challenge 2017 score (mean F1 of N, A, O, record "
             "level, top label" + (f" of the mean window probabilities; and with the card's record rule, "
                                   f"{_rule_text(rule)}" if by_rule else "") + "):", "",
             "| model | parameters | MMAC / 10-s window | " + " | ".join(names) + " | Challenge F1 |" +
             (" Challenge F1, record rule |" if by_rule else ""),
             "|---|---:|---:|" + "---:|" * (len(names) + 1 + by_rule)]
    rows = []
    tvs = fid.get("student_fp32_vs_teacher_fp32")
    if tvs and "auroc_reference" in tvs:
        rows.append((f"teacher ({teacher.get('width', '?')} Net1D), fp32 torch", teacher.get("params"),
                     teacher.get("macs_per_window"), tvs["auroc_reference"], tvs.get("challenge2017_f1_reference"),
                     None))
    if "auroc_reference" in onnx:
        rows.append(("student fp32 (ONNX)", student["params"], student["macs_per_window"], onnx["auroc_reference"],
                     onnx.get("challenge2017_f1_reference"),
                     (onnx.get("record_rule") or {}).get("challenge2017_f1_reference")))
    for key in INT8_ROWS:
        if key in fid and "auroc" in fid[key]:
            rows.append((f"**{_int8_label(card, key)}**", student["params"], student["macs_per_window"], fid[key]["auroc"],
                         fid[key].get("challenge2017_f1"), (fid[key].get("record_rule") or {}).get("challenge2017_f1")))
    for label, params, macs, auroc, f1, rule_f1 in rows:
        lines.append(f"| {label} | {params:,} | {macs / 1e6:.1f} | " +
                     " | ".join(_f(auroc.get(n)) for n in names) + f" | {_f(f1, 3)} |" +
                     (f" {_f(rule_f1, 3)} |" if by_rule else ""))
    boot = (onnx.get("record_rule") or {}).get("bootstrap")
    if by_rule and boot:
        lines += ["", f"How sure the record rule's score is ({boot['resamples']:,} bootstrap resamples of the "
                      f"{boot['n_records']:,} held-out records, student int8 ONNX Runtime): "
                      f"{boot['score']:.3f}, standard error {boot['score_se']:.3f}, 95 % interval "
                      f"{boot['score_ci95'][0]:.3f}-{boot['score_ci95'][1]:.3f}; its gain over the top label of the mean "
                      f"on the same records {boot['gain_vs_mean']:+.3f} (95 % interval "
                      f"{boot['gain_vs_mean_ci95'][0]:+.3f} to {boot['gain_vs_mean_ci95'][1]:+.3f})."]
    lines += ["", "int8 against the float student (same graph), on every held-out window:", "",
              "| file | max abs prob. error | p99 | mean | windows > 0.03 | top label, windows | top label, records |" +
              (" record rule, records |" if by_rule else ""),
              "|---|---:|---:|---:|---:|---:|---:|" + ("---:|" if by_rule else "")]
    for key in INT8_ROWS:
        if key in fid:
            d = fid[key]
            rule = d.get("record_rule") or {}
            lines.append(f"| {_int8_label(card, key)} | {_f(d['max_abs_prob_error'], 4)} | {_f(d['p99_abs_prob_error'], 3)} | "
                         f"{_f(d['mean_abs_prob_error'])} | {_count(d['windows_over_0.03'], d.get('n_windows'))} | "
                         f"{_pct(d['argmax_agreement'])} | "
                         f"{_count(d.get('record_top_label_agreement'), d.get('n_records_compared'))} |" +
                         (f" {_count(rule.get('agreement'), rule.get('n_records_compared'))} |" if by_rule else ""))
    machine = fid.get("measured_on")
    if machine:
        kernel = {"avx512_vnni": "AVX-512 VNNI", "avx_vnni": "AVX-VNNI",
                  "avx2": "AVX2 without VNNI, where ONNX Runtime's u8s8 kernel can saturate"}.get(
            machine["int8_kernel"], machine["int8_kernel"])
        lines += ["", f"Measured with ONNX Runtime {machine['onnxruntime']} on a CPU with {kernel}: ONNX Runtime's "
                      "int8 figures can differ slightly on another kind of CPU (without VNNI its u8s8 kernel sums "
                      "pairs of products in 16 bits, which saturate on large ones)."]
    bounds = student.get("activation_bounds")
    if bounds and bounds.get("held_out"):
        h = bounds["held_out"]
        vs = h.get("int8_vs_unbounded_max_abs_prob_error") or {}
        lines += ["", f"The float student's activations are bounded to their ranges on the {bounds['windows']:,} "
                      "calibration windows (`quantize/activation_bounds.py`), and every file above is made from the "
                      f"bounded student. Against the student as trained, the fp32 file differs on "
                      f"{_count(h['windows_changed'] / h['windows'], h['windows'])} of the held-out windows, by at most "
                      f"{h['max_abs_prob_change']:.4f}, with the same top label on {_pct(h['top_label_same'])} of all "
                      "windows" + (" (int8 against the student as trained: max " +
                                   " / ".join(f"{v:.4f} {k}" for k, v in vs.items()) + ")" if vs else "") + "."]
    if card.get("precision_plan"):
        lines += _plan_markdown(card["precision_plan"])
    selection = (student.get("qat") or {}).get("selection")
    if selection:
        lines += _qat_runs_markdown(selection)
    chest = ev.get("chest_lead")
    if chest:
        expected = {k: next((m[k]["expected"] for m in chest["models"].values() if k in m), "?") for k, _ in CHEST_KEYS}
        lines += ["", f"Chest lead (Holter MLII, the Polar H10's kind of lead): {chest['data'].split(', records')[0]}, "
                      f"the held-out side of the fixed MIT-BIH split ({chest['n_windows']:,} windows of 10 s, hop 5 s; "
                      "see `distill/chest_lead.py`). Fraction of windows whose top output is the expected one:", "",
                  "| model | " + " | ".join(t.format(expected[k]) for k, t in CHEST_KEYS) +
                  " | records where NSR is the most common top label |", "|---|---:|---:|---:|---:|"]
        for model, m in chest["models"].items():
            cells = [_pct(m.get(k, {}).get("expected_top_fraction")) for k, _ in CHEST_KEYS]
            lines.append(f"| {model} | " + " | ".join(cells) +
                         f" | {_pct(m.get('clean_sinus', {}).get('records_majority_expected'))} |")
    return "\n".join(lines)


def update_readme(readme: str | Path, card: dict, bundle: str = "bundles/default") -> bool:
    """Replace the results block of ``readme`` with :func:`results_markdown`; returns whether it changed.
    A README without both markers is a :class:`~edge_sdk.errors.ConfigError`."""
    p = Path(readme)
    text = p.read_text(encoding="utf-8")
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise ConfigError(f"{p} needs one '{BEGIN}' line followed by one '{END}' line around the result tables")
    head, rest = text.split(BEGIN)
    _, tail = rest.split(END)
    new = f"{head}{BEGIN}\n{results_markdown(card, bundle)}\n{END}{tail}"
    if new != text:
        p.write_text(new, encoding="utf-8")
    return new != text
