"""Publishing one exported model of a run into the model zoo (``zoo/<dataset>/<name>/``).

``published(run)`` lists what a run can publish: the export stage's model (``best``: the
search's choice for the primary budget, ``export/``) and every pruned model
(``prune/p<target>[-tags]/``), each a committed unit whose manifest is checked before its
files are trusted. ``publish(run, which, out)`` copies that unit's ``model.pt`` byte for
byte and its ``model.json`` with the keys the zoo adds: ``method`` (``evolution`` /
``nsga2`` or ``prune``), ``seed``, ``recipe`` (the stages and lengths that made it, read
from the run's stored ``config.yaml`` and stage records and from the card itself),
``licence`` (the teacher's attribution; the LICENSE beside released teacher weights is
copied as ``LICENSE.teacher``) and ``source`` (the run's URL). It writes a temporary
sibling of ``out`` and renames it last. Data images are never copied.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Optional

import yaml

from .errors import ConfigError, GancError
from .export import EXPORT
from .runs import _check_budget_export
from .store import open_store

MAX_MB = 2.0                      # the zoo's limit on model.pt
LICENSE_COPY = "LICENSE.teacher"  # the teacher's LICENSE, copied beside the model
PRUNE = "prune"
BEST = "best"
ZOO_FILES = ("model.pt", "model.json")


def open_run(store: str, run_id: str):
    """The run ``<store>/runs/<run_id>``; one line when it holds nothing."""
    st = open_store(store)
    if run_id not in st.children("runs"):
        raise ConfigError(f"no run {run_id!r} in {st.url()} ({st.url('runs/' + run_id)} "
                          "does not exist)")
    run = st.run(run_id)
    return run


def _unit_card(run, prefix: str) -> Optional[tuple[dict, dict]]:
    """(manifest, card) of a committed unit holding model.pt and model.json, or None."""
    try:
        manifest = run.read_unit(prefix)
    except GancError:
        return None
    if manifest is None or not all(f in manifest.get("files", {}) for f in ZOO_FILES):
        return None
    card = json.loads(run.read_unit_file(prefix, "model.json", manifest))
    return manifest, card


def published(run) -> list[dict]:
    """What ``run`` can publish: ``name`` (the selector), ``method``, ``prefix``, ``macs``,
    ``fid``, ``config`` (a channel config, or None for a pruned net's widths)."""
    out = []
    found = _unit_card(run, EXPORT)
    if found:
        card = found[1]
        out.append({"name": BEST, "method": _search_method(run), "prefix": EXPORT,
                    "macs": card.get("macs"), "fid": card.get("fid"),
                    "config": card.get("config_str")})
    for name in run.children(PRUNE) if run.exists(PRUNE) else []:
        found = _unit_card(run, f"{PRUNE}/{name}")
        if found:
            card = found[1]
            out.append({"name": name, "method": "prune", "prefix": f"{PRUNE}/{name}",
                        "macs": card.get("macs"), "fid": card.get("fid"), "config": None,
                        "target": card.get("target")})
    return out


def describe(entry: dict) -> str:
    """One line of ``ganc publish --list``."""
    fid = "-" if entry["fid"] is None else f"{entry['fid']:.2f}"
    macs = "-" if entry["macs"] is None else f"{entry['macs'] / 1e9:.3f}G"
    what = entry["config"] or f"target {entry.get('target')}"
    return f"{entry['name']:20} {entry['method']:10} MACs {macs:>9} FID {fid:>8}  {what}"


def select(run, which: str) -> dict:
    """The entry of :func:`published` that ``which`` names: ``best``, ``budget:<MACs>``
    (the export, when it is that budget's best), ``prune:<target>[-tags]`` or a prune
    unit's folder name (``p0.5``, ``p0.5-nolds-crop128-mytag``, ``prune/p0.5``,
    :func:`ganc.prune.artifacts.export_prefix`); one line listing the choices when none
    matches."""
    entries = published(run)
    by_name = {e["name"]: e for e in entries}
    kind, _, value = which.partition(":")
    name = which
    if kind == "budget" and value:
        try:
            budget = float(value)
        except ValueError:
            raise ConfigError(f"--model {which}: {value!r} is not a MACs budget") from None
        if BEST in by_name:
            try:
                _check_budget_export(run, budget, run.read_unit(EXPORT))
            except GancError as e:
                raise ConfigError(f"--model {which}: {e}") from None
        name = BEST
    elif kind == PRUNE and value:
        head, dash, tags = value.partition("-")   # 0.5, 0.5-nolds-crop128, p0.5-mytag
        name = f"p{float(head):g}{dash}{tags}" if _is_number(head) else value
    elif which.startswith(PRUNE + "/"):
        name = which[len(PRUNE) + 1:]
    if name not in by_name:
        have = ", ".join(e["name"] for e in entries) or "nothing"
        raise ConfigError(f"--model {which}: no such exported model in {run.url()}; it has: "
                          f"{have} (ganc publish --list)")
    return by_name[name]


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


# ---------------------------------------------------------------- what the card records
def run_config(run, prefix: str) -> dict:
    """The run's stored config as a dict: for a pruned model its variant's own
    ``prune/configs/<folder>.yaml`` (a run from before it: the prune stage's
    ``prune/config.yaml``), else the pipeline's ``config.yaml``, else the supernet's; one
    line when the run stored none (the recipe is never guessed)."""
    if prefix.startswith(PRUNE + "/"):
        from .prune.artifacts import variant_config_key  # deferred: torch
        keys: tuple = (variant_config_key(prefix), f"{PRUNE}/config.yaml", "config.yaml")
    else:
        keys = ("config.yaml", "finetune/config.yaml", "supernet/config.yaml")
    for key in keys:
        if run.exists(key):
            data = yaml.safe_load(run.read_bytes(key).decode())
            if isinstance(data, dict):
                return data
    raise ConfigError(f"{run.url()} stores no config ({' or '.join(keys)}); cannot record "
                      "the model's recipe")


def _search_method(run) -> str:
    for key in ("config.yaml", "supernet/config.yaml"):
        if run.exists(key):
            data = yaml.safe_load(run.read_bytes(key).decode()) or {}
            return str((data.get("search") or {}).get("method") or "evolution")
    return "evolution"


def _json(run, key: str) -> dict:
    return run.get_json(key) if run.exists(key) else {}


def recipe(run, entry: dict, card: dict, cfg: dict) -> dict:
    """Which stages and lengths made the model, from the stored config, stage records and
    the card."""
    sec = {k: cfg.get(k) or {} for k in ("data", "distill", "search", "finetune", "prune")}
    data = {"root": sec["data"].get("root") or "generated demo data",
            "load_size": sec["data"].get("load_size"),
            "crop_size": sec["data"].get("crop_size"),
            "train_crop_size": sec["data"].get("train_crop_size")
            or sec["data"].get("crop_size")}
    if entry["method"] == "prune":
        ft = card.get("finetune") or {}
        return {
            "agents": {"steps": card.get("steps"), "target": card.get("target"),
                       "d_target": card.get("d_target"), "base_model": card.get("base_model"),
                       "crop_size": card.get("agents_crop_size"),
                       "chosen_step": card.get("chosen_step"),
                       "ablation": card.get("ablation"), "variant": card.get("method")},
            "finetune": {"steps": card.get("finetune_steps"),
                         "lr": (ft.get("recipe") or {}).get("lr"),
                         **_known("crop_size", card.get("train_crop_size"))},
            "data": data}
    best = _json(run, "best.json")
    rec = _json(run, "pipeline/supernet.json")
    search = best.get("search") if isinstance(best.get("search"), dict) else {}
    return {
        "supernet": {"steps": sec["distill"].get("steps"),
                     "epochs": sec["distill"].get("epochs"),
                     "epochs_decay": sec["distill"].get("epochs_decay"),
                     "trained_steps": rec.get("step")},
        "search": {"method": sec["search"].get("method", "evolution"),
                   "population": sec["search"].get("population"),
                   "generations": sec["search"].get("generations"),
                   "budget_macs": search.get("budget_macs",
                                             sec["search"].get("budget_macs"))},
        "finetune": {"steps": card.get("finetune_steps"), "lr": sec["finetune"].get("lr"),
                     "finetuned": card.get("finetuned"),
                     **_known("crop_size", card.get("finetune_crop_size"))},
        "data": data}


def _known(key: str, value) -> dict:
    """``{key: value}``, or {} for a value a card from before it was recorded lacks."""
    return {} if value is None else {key: value}


def teacher_source(run, card: dict, cfg: dict) -> Optional[str]:
    """Where the run's teacher weights came from (``model.teacher_weights`` as resolved
    and recorded by the run), or None: trained by ganc."""
    if not (cfg.get("model") or {}).get("teacher_weights"):
        return None
    for src in (card.get("teacher_source"),
                (_json(run, "best.json").get("teacher") or {}).get("source"),
                _json(run, "pipeline/teacher.json").get("source")):
        if src:
            return str(src)
    return str(cfg["model"]["teacher_weights"])


def attribution(source: Optional[str]) -> tuple[dict, Optional[str]]:
    """(the card's ``licence``, the LICENSE file to copy or None) of a teacher. Released
    weights with a ``LICENSE`` beside them: ``teacher`` (the ``source`` of the model.json
    beside them, else the file name), ``copyright`` (the LICENSE's first line starting
    with "Copyright") and ``file``; a teacher trained by ganc (``source`` None) needs
    none."""
    if source is None:
        return {"teacher": "trained by ganc", "copyright": None, "file": None}, None
    path = source[len("file://"):] if source.startswith("file://") else source
    folder = os.path.dirname(path) if "://" not in path else None
    teacher, lic = os.path.basename(path), None
    if folder and os.path.isfile(os.path.join(folder, "model.json")):
        try:
            with open(os.path.join(folder, "model.json")) as f:
                meta = json.load(f)
            teacher = str(meta.get("source") or teacher) if isinstance(meta, dict) else teacher
        except (OSError, ValueError):
            pass
    if folder and os.path.isfile(os.path.join(folder, "LICENSE")):
        lic = os.path.join(folder, "LICENSE")
    copyright_ = None
    if lic:
        with open(lic, encoding="utf-8", errors="replace") as f:
            copyright_ = next((line.strip() for line in f
                               if line.strip().startswith("Copyright")), None)
    return ({"teacher": teacher, "copyright": copyright_,
             "file": LICENSE_COPY if lic else None}, lic)


# ---------------------------------------------------------------- publish
def publish(run, which: str, out, *, force: bool = False, max_mb: float = MAX_MB) -> dict:
    """Copy the model ``which`` selects into the folder ``out`` (model.pt byte for byte,
    model.json with ``method``, ``seed``, ``recipe``, ``licence``, ``source``, and
    LICENSE.teacher when the teacher has one); returns the card. Refuses in one line a
    model.pt over ``max_mb`` MB and an ``out`` that holds files (unless ``force``)."""
    out = os.path.abspath(os.fspath(out))
    if os.path.lexists(out) and not os.path.isdir(out):
        raise ConfigError(f"--out {out} exists and is not a folder")
    if os.path.isdir(out) and os.listdir(out) and not force:
        raise ConfigError(f"--out {out} exists and is not empty; pass --force to replace it")
    entry = select(run, which)
    manifest = run.read_unit(entry["prefix"])
    size = int(manifest["files"]["model.pt"]["size"])    # checked manifest: size, sha256
    if size > max_mb * 1e6:
        raise ConfigError(f"{run.url(entry['prefix'] + '/model.pt')} is {size / 1e6:.2f} MB, "
                          f"over the zoo's limit of {max_mb:g} MB (--max-mb)")
    weights = run.read_unit_file(entry["prefix"], "model.pt", manifest)
    card = json.loads(run.read_unit_file(entry["prefix"], "model.json", manifest))
    cfg = run_config(run, entry["prefix"])
    licence, lic_file = attribution(teacher_source(run, card, cfg))
    card.update({"method": "prune" if entry["method"] == "prune" else entry["method"],
                 "seed": cfg.get("seed"), "recipe": recipe(run, entry, card, cfg),
                 "licence": licence, "source": run.url(entry["prefix"])})
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.publish-", dir=parent)
    try:
        with open(os.path.join(tmp, "model.pt"), "wb") as f:
            f.write(weights)
        with open(os.path.join(tmp, "model.json"), "w") as f:
            json.dump(card, f, indent=2, sort_keys=True, default=str)
            f.write("\n")
        if lic_file:
            shutil.copyfile(lic_file, os.path.join(tmp, LICENSE_COPY))
        if os.path.isdir(out):
            old = out + ".old-" + os.path.basename(tmp)
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return card


__all__ = ["MAX_MB", "LICENSE_COPY", "open_run", "published", "describe", "select",
           "recipe", "attribution", "teacher_source", "publish"]
