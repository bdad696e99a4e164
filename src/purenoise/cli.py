"""Command line: ``purenoise train | eval | report | predict | data | compare``.

Errors a user can fix (config, data, checkpoints) print one clear message and exit with code 2;
an interrupted run exits with 128 + the signal number after saving a resumable checkpoint.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import torch
from PIL import Image, UnidentifiedImageError

from purenoise.config import load_config, parse_override, saved_value, settings, validate_config
from purenoise.data import create_dataset, create_transform, list_datasets
from purenoise.engine.checkpoint import load_checkpoint, validate_checkpoint
from purenoise.engine.distributed import cleanup, exit_process, peer_failed, report_once, resolve_device
from purenoise.engine.evaluate import Normalizer, evaluate
from purenoise.engine.run_folder import json_safe
from purenoise.engine.setup import build_data, load_for_inference
from purenoise.engine.trainer import Trainer, TrainingDiverged, TrainingInterrupted
from purenoise.engine.trust import check_model_source, checkpoint_settings, safe_config
from purenoise.errors import ConfigError, PureNoiseError
from purenoise.fileio import atomic_write_json
from purenoise.reporting.report import make_report
from purenoise.reporting.runs import load_run
from purenoise.reporting.summary import format_table
from purenoise.run_paths import MODEL_FILE, RunPaths, check_run_name
from purenoise.settings import Settings
from purenoise.shipped import list_configs, resolve_config

__all__ = ["main", "entry", "build_parser"]

EXIT_USER_ERROR = 2
EXIT_DIVERGED = 3
EXIT_PEER_FAILED = 1


def _fail(message: str, code: int = EXIT_USER_ERROR, *, collective: bool = False) -> int:
    """Print ``message`` once per run (see :func:`~purenoise.engine.distributed.report_once`), return ``code``."""
    report_once(f"purenoise: error: {{prefix}}{message}", collective=collective)
    return code


def _default_out(s: Settings) -> Path:
    return Path("runs") / (s.name or "run")


def _check_name(s: Settings, config: Any) -> None:
    """A run's name names a folder under runs/: it must not be a path (see :func:`check_run_name`)."""
    if s.name is not None:
        source = f"config key 'name' (from {config})" if config is not None else "config key 'name'"
        check_run_name(s.name, source)


# ------------------------------------------------------------------------------ train
def cmd_train(args: argparse.Namespace) -> int:
    config = resolve_config(args.config) if args.config is not None else None  # a file, or a shipped name
    base = None
    if config is None:
        if args.resume in (None, "auto") and args.out is None:
            raise PureNoiseError("train needs --config FILE (or --resume with --out RUN_DIR or a checkpoint path)")
        source = RunPaths(args.out).config if args.resume in (None, "auto") else None
        if source is not None and source.exists():
            config = source
        elif args.resume not in (None, "auto"):
            base = _resume_base(args.resume, args.set, args.out)
        else:
            raise PureNoiseError(f"no --config given and no {source} to resume from")
    run_settings = settings(load_config(config, args.set, base=base))
    _check_name(run_settings, config)
    out = Path(args.out) if args.out else _default_out(run_settings)
    trainer = Trainer(run_settings, out, resume=args.resume, init_from=args.init_from, detect_anomaly=args.detect_anomaly,
                      reuse=args.reuse)
    metrics = trainer.fit()
    if metrics is not None and trainer.is_main:
        print(_summary(metrics, out))
        # Skipped unreadable files and converted images, said at set-up, bear repeating at the end.
        for note in trainer.data.info.notes:
            print(f"note: {note}")
    return 0


def _as_set(value: Any) -> str:
    """``value`` as ``--set key=VALUE`` reads it back (YAML)."""
    return json.dumps(value) if not isinstance(value, str) else value


def _resume_base(path: str, overrides: list[str], out: str | None) -> dict[str, Any]:
    """The config of checkpoint ``path``, as the base of ``train --resume PATH`` without ``--config``.

    A checkpoint may come from someone else, so its config does not decide what is downloaded,
    unpickled, fetched or read from where (see :func:`~purenoise.engine.trust.checkpoint_settings`):
    such a setting is refused unless the command line says it again with ``--set``.
    """
    state = load_checkpoint(path)
    validate_checkpoint(state, path, training=True)
    named = {parse_override(item)[0] for item in overrides}
    refused = [(key, value, why) for key, value, why in checkpoint_settings(state["config"])
               if key not in named and key.partition(".")[0] not in named and not (key == "name" and out)]
    if refused:
        asked = "; ".join(f"{key}: {value!r} ({why})" for key, value, why in refused)
        again = " ".join(f"--set {key}={_as_set(value)}" for key, value, _ in refused)
        raise ConfigError(
            f"the config in {path} asks for {asked}. A checkpoint does not decide that, so nothing was "
            f"read or run. If you trust these settings, give them on the command line: {again} (or pass "
            "your own --config FILE)"
        )
    return safe_config(state["config"])


def _summary(m: dict[str, Any], out: Path) -> str:
    """The one-line result of ``train`` / ``eval``: fixed-width fields, so lines of runs align in a log."""
    def pct(v):
        return "  n/a" if v is None else f"{100 * v:5.2f}"

    return (f"{m.get('run') or out.name}: top-1 {pct(m['top1'])}%  balanced {pct(m['balanced_acc'])}%  "
            f"many {pct(m['many'])}  medium {pct(m['medium'])}  few {pct(m['few'])}  -> {RunPaths(out).eval}")


# ------------------------------------------------------------------------------ eval / predict
def cmd_eval(args: argparse.Namespace) -> int:
    """Evaluate a checkpoint on a test set.

    The test set is the one named by ``--dataset`` / ``--data-root``, else the checkpoint's own
    dataset, read from the default data folder. The checkpoint's config does not decide what is
    read, downloaded or unpickled: its ``data_root`` is used only inside the default data folder,
    its dataset options only as far as they pick images (see
    :func:`~purenoise.engine.trust.safe_config`); what it asked for beyond that is noted.
    """

    state = load_checkpoint(args.checkpoint)
    validate_checkpoint(state, args.checkpoint)
    exported = state.get("kind") == "model"
    received = state["config"]
    if exported:
        check_model_source(state.get("model_name"), state.get("model_options"), args.checkpoint)
    else:
        check_model_source(saved_value(received, "model"), saved_value(received, "model_options"), args.checkpoint)
    for key, value, why in checkpoint_settings(received):
        if key == "data_root" and not args.data_root:
            print(f"note: {args.checkpoint} was trained on data in {value}, which is not read unless you "
                  f"name it: --data-root {value}", file=sys.stderr)
        elif key not in ("data_root", "name", "model") and not key.startswith("model_options."):
            print(f"note: the checkpoint's setting {key}: {value!r} is not used: it {why}, which only "
                  "you decide", file=sys.stderr)
    # The checkpoint's config as far as it may decide, with what the command line says instead.
    given: dict[str, Any] = {"download": False}
    if args.dataset:
        trained_on = saved_value(received, "dataset")
        same = args.dataset.strip().lower().replace("-", "_") == str(trained_on).lower().replace("-", "_")
        if not exported and not same:
            raise PureNoiseError(
                f"{args.checkpoint} is a training checkpoint: its input normalization is that of "
                f"{trained_on}'s training set. To evaluate on {args.dataset}, use the run's "
                f"exported {MODEL_FILE}, which records it"
            )
        given["dataset"] = args.dataset
    if args.data_root:
        given["data_root"] = args.data_root
    eval_settings = settings(validate_config({**safe_config(received), **given}))
    data = build_data(eval_settings)
    device = resolve_device(args.device)
    model, meta = load_for_inference(args.checkpoint, device, data, state)
    if data.test is None:
        raise PureNoiseError(f"dataset {eval_settings.dataset} has no test split to evaluate on")
    if data.info.num_classes != meta["num_classes"]:
        raise PureNoiseError(f"the model has {meta['num_classes']} classes but {eval_settings.dataset} has "
                             f"{data.info.num_classes}")
    metrics = evaluate(model, data.test, class_counts=meta["class_counts"], device=device,
                       normalize=Normalizer(meta["mean"], meta["std"], device), batch_size=args.batch_size,
                       workers=args.workers, class_names=meta["class_names"])
    if args.out:
        atomic_write_json(args.out, json_safe(metrics))
    print(_summary({**metrics, "run": Path(args.checkpoint).name}, Path(args.out or "-")))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    model, meta = load_for_inference(args.checkpoint, device)
    preset = "imagenet_test" if max(meta["image_size"]) > 64 else "test"
    tf = create_transform(preset, image_size=meta["image_size"], channels=meta["in_chans"], train=False)
    normalize = Normalizer(meta["mean"], meta["std"], device)
    results = []
    for path in args.images:
        try:
            with warnings.catch_warnings():
                # Above PIL's pixel limit an image could exhaust memory when decoded: refused.
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(path) as im:
                    im = im.convert("L" if meta["in_chans"] == 1 else "RGB")
                    x = tf(im)
        except FileNotFoundError:
            raise PureNoiseError(f"image {path} does not exist") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise PureNoiseError(f"image {path} is too large to classify safely ({e}); resize it first") from None
        except (UnidentifiedImageError, OSError) as e:
            raise PureNoiseError(f"cannot read image {path}: {e}") from None
        with torch.no_grad():
            probs = torch.softmax(model(normalize(x.unsqueeze(0).to(device))).float(), 1)[0].cpu()
        top = torch.topk(probs, min(args.top, probs.numel()))
        preds = [{"class": meta["class_names"][i], "index": int(i), "prob": float(p)}
                 for p, i in zip(top.values, top.indices)]
        results.append({"image": str(path), "predictions": preds})
        if not args.json:
            print(f"{path}: " + ", ".join(f"{p['class']} {100 * p['prob']:.1f}%" for p in preds))
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


# ------------------------------------------------------------------------------ report / data
def cmd_report(args: argparse.Namespace) -> int:
    runs = [load_run(d) for d in args.run_dirs]
    path = make_report(args.run_dirs, out_dir=args.out, title=args.title)
    print(format_table(runs))
    print(f"report: {path}")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    if args.action == "list":
        for name in list_datasets():
            print(name)
        return 0
    if not args.name:
        raise PureNoiseError("purenoise data info NAME: give a dataset name (purenoise data list)")

    options = dict(parse_override(s) for s in args.set)
    for key, flag in (("root", "--root"), ("download", "--download")):
        if key in options:
            raise ConfigError(f"purenoise data info: --set {key}=... is not a dataset option here; use {flag}")
    bundle = create_dataset(args.name, args.root, download=args.download, **options)
    info = bundle.info
    print(f"{info.name}: {info.num_classes} classes, {sum(bundle.class_counts)} training images, "
          f"{len(bundle.test) if bundle.test is not None else 0} test images, "
          f"{info.channels}x{info.image_size[0]}x{info.image_size[1]}")
    print(f"pixel mean {tuple(round(v, 4) for v in info.mean)}, std {tuple(round(v, 4) for v in info.std)}")
    width = max(len(n) for n in info.class_names)
    for name, n in zip(info.class_names, bundle.class_counts):
        print(f"  {name:<{width}} {n:6d}")
    for note in info.notes:
        print(f"note: {note}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """Train ERM/RS/DRS/OPeN over seeds on a config or an image folder; print the verdict in words."""
    from purenoise.compare import compare

    return compare(config=args.config, data=args.data, methods=args.methods, seeds=args.seeds, epochs=args.epochs,
                   out=args.out, sets=args.set)


# ------------------------------------------------------------------------------ parser
def _at_least(minimum: int):
    """An argparse type: an integer >= ``minimum`` (argparse reports anything else, exit code 2)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value
    parse.__name__ = f"integer >= {minimum}"
    return parse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="purenoise", description="OPeN and DAR-BN for long-tailed classification")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train (and evaluate) one run",
                       epilog="Config keys: `purenoise config keys` lists every key with its type, default and "
                              "meaning; `purenoise configs` lists the shipped configs, usable by name.")
    t.add_argument("--config", "-c", help="YAML config file, or a shipped config's name (fmnist_lt_r100/open)")
    t.add_argument("--set", "-s", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (repeatable); model_options.x=1 sets one option")
    t.add_argument("--out", "-o", help="run folder (default: runs/<name>)")
    t.add_argument("--reuse", action="store_true",
                   help="write into --out even if it holds files a run does not write (its run files are replaced)")
    t.add_argument("--resume", metavar="PATH|auto", help="continue from a checkpoint, or the run folder's last one")
    t.add_argument("--init-from", metavar="RUN_DIR|CHECKPOINT",
                   help="start from another run's checkpoint at this config's defer_epoch (shared first phase)")
    t.add_argument("--detect-anomaly", action="store_true", help="autograd anomaly detection (slow)")
    t.set_defaults(fn=cmd_train)

    e = sub.add_parser("eval", help="evaluate a checkpoint on a test set")
    e.add_argument("--checkpoint", required=True, help="model.pt or a training checkpoint")
    e.add_argument("--dataset", help="dataset name (default: the one it was trained on)")
    e.add_argument("--data-root", help="data folder (default: the default data folder, $PURENOISE_DATA or ./data)")
    e.add_argument("--out", help="write the metrics to this JSON file")
    e.add_argument("--device", default="auto")
    e.add_argument("--batch-size", type=_at_least(1), default=256)
    e.add_argument("--workers", type=_at_least(0), default=2)
    e.set_defaults(fn=cmd_eval)

    r = sub.add_parser("report", help="Markdown report with plots from run folders")
    r.add_argument("run_dirs", nargs="+")
    r.add_argument("--out", help="report folder")
    r.add_argument("--title")
    r.set_defaults(fn=cmd_report)

    pr = sub.add_parser("predict", help="classify image files")
    pr.add_argument("--checkpoint", required=True, help="a run's exported model.pt")
    pr.add_argument("images", nargs="+")
    pr.add_argument("--top", type=_at_least(1), default=3, help="how many classes to show per image")
    pr.add_argument("--device", default="auto")
    pr.add_argument("--json", action="store_true")
    pr.set_defaults(fn=cmd_predict)

    sub.add_parser("configs", help="list the shipped configs (train --config NAME)").set_defaults(fn=cmd_configs)
    c = sub.add_parser("config", help="describe the config keys")
    c.add_argument("action", choices=("keys",), help="keys: every key with its type, default and meaning")
    c.set_defaults(fn=cmd_config)
    d = sub.add_parser("data", help="list datasets or show one's classes and statistics")
    d.add_argument("action", choices=("list", "info"))
    d.add_argument("name", nargs="?")
    d.add_argument("--root")
    d.add_argument("--download", action="store_true")
    d.add_argument("--set", "-s", action="append", default=[], metavar="KEY=VALUE", help="dataset option")
    d.set_defaults(fn=cmd_data)

    c = sub.add_parser("compare", help="train erm, rs, drs and open over seeds on your data; a verdict in words")
    source = c.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", "-c", help="a purenoise YAML config")
    source.add_argument("--data", help="an image folder (train/<class>/..., optionally test/<class>/...)")
    c.add_argument("--methods", default="erm,rs,drs,open",
                   help="comma list of erm, rs, drs, open; a variant: open:KEY=VALUE (default: %(default)s)")
    c.add_argument("--seeds", type=_at_least(1), default=3, help="seeds per method (default: %(default)s)")
    c.add_argument("--epochs", type=_at_least(1), help="epochs per run; the schedule scales with it")
    c.add_argument("--out", "-o", default="runs/compare", help="folder of the runs and the verdict (default: %(default)s)")
    c.add_argument("--set", "-s", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key of every run (repeatable)")
    c.set_defaults(fn=cmd_compare)
    return p


def cmd_configs(args: argparse.Namespace) -> int:
    """``purenoise configs``: the shipped configs, usable by name with ``train --config``."""
    for name in list_configs():
        print(name)
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    """``purenoise config keys``: every config key with its type, default and meaning."""
    from purenoise.config import SCHEMA

    for key, f in SCHEMA.items():
        types = " or ".join(t.__name__ for t in f.types) + (" or null" if f.nullable else "")
        choices = f" (one of {', '.join(map(str, f.choices))})" if f.choices else ""
        print(f"{key}: {types}, default {f.default!r}{choices}\n    {f.help}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    try:
        return args.fn(args)
    except TrainingInterrupted as e:
        _fail(str(e), 0, collective=True)
        return 128 + int(e.signum)
    except TrainingDiverged as e:
        return _fail(str(e), EXIT_DIVERGED, collective=True)
    except PureNoiseError as e:
        return _fail(str(e))
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except BrokenPipeError:
        # The reader of the output went away (``purenoise configs | head``): nothing left to say.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as e:
        if not peer_failed(e):
            raise
        # Another process failed first and said why; this one only lost contact with it.
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return _fail(f"lost contact with another process ({first_line}); it failed first: see its "
                     f"error above or torchrun's summary", EXIT_PEER_FAILED)
    finally:
        cleanup()


def entry() -> None:
    """The ``purenoise`` command and ``python -m purenoise``: run :func:`main` and exit with its code.

    Under torchrun the process ends through :func:`~purenoise.engine.distributed.exit_process`,
    which skips the interpreter's finalization (see there why).
    """
    exit_process(main())


if __name__ == "__main__":  # pragma: no cover
    entry()
