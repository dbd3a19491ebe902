"""Command line: ``python -m coreset_core select|export|evaluate ...``.

The only layer of the core that talks to a terminal: it builds configs from
arguments, draws a progress bar from training events, and turns errors into a
message and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from coreset_core.config import SelectionConfig
from coreset_core.selection import STRATEGIES
from coreset_core.training import NonFiniteLoss

# glibc hands large freed buffers back to the system and maps them in again on
# the next step, which costs 1.3-2x on the CPU for these small networks. The
# allocator reads these settings only at process start, hence the re-exec.
ALLOCATOR_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "100000000000"}

FIELD_TYPES: dict[str, Any] = {
    "str": str,
    "int": int,
    "float": float,
    "str | None": str,
    "int | None": int,
    "float | None": float,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.command(args))
    except (ValueError, FileNotFoundError) as exc:
        # Bad input: a config value, a dataset, a fraction, a run folder. Exit 2.
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except NonFiniteLoss as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; continue with --resume RUN_DIR", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m coreset_core", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    commands = parser.add_subparsers(required=True)

    select = commands.add_parser(
        "select", help="train a contrastive model, score the pool, write a coreset"
    )
    for field in dataclasses.fields(SelectionConfig):
        flag = "--" + field.name.replace("_", "-")
        if field.type == "bool":
            select.add_argument(flag, action="store_true", default=field.default)
        else:
            select.add_argument(
                flag,
                type=FIELD_TYPES[str(field.type)],
                default=field.default,
                metavar=field.name.upper(),
            )
    select.add_argument(
        "--out",
        type=Path,
        default=Path("runs"),
        help="folder that run folders are made in (default: runs)",
    )
    select.add_argument(
        "--resume",
        type=Path,
        metavar="RUN_DIR",
        help="continue this run from its last finished epoch",
    )
    select.set_defaults(command=run_select)

    export = commands.add_parser(
        "export", help="write a selection CSV for another size from a finished run"
    )
    export.add_argument("run_dir", type=Path)
    size = export.add_mutually_exclusive_group(required=True)
    size.add_argument("--fraction", type=float)
    size.add_argument("--count", type=int)
    export.add_argument("--strategy", choices=STRATEGIES, default="lowest")
    export.add_argument(
        "--window",
        type=parse_window,
        metavar="START:STOP",
        help="sum similarity over epochs [START, STOP) only",
    )
    export.add_argument(
        "--offset",
        type=int,
        default=0,
        help="for --strategy offset: how many hardest to skip",
    )
    export.add_argument("--seed", type=int, default=0)
    export.set_defaults(command=run_export)

    evaluate = commands.add_parser(
        "evaluate", help="retrain target models on a run's subsets and test them"
    )
    evaluate.add_argument("run_dir", type=Path)
    evaluate.add_argument(
        "--subsets",
        type=parse_list(str),
        default=None,
        help="comma-separated, from coreset,random,forgetting,"
        "non-coreset,full (default: all)",
    )
    evaluate.add_argument(
        "--fractions",
        type=parse_list(float),
        default=None,
        help="comma-separated (default: 0.3,0.4,0.5,0.6,0.7)",
    )
    evaluate.add_argument("--seeds", type=int, default=3, help="how many (default 3)")
    evaluate.add_argument(
        "--cross-test",
        type=parse_list(float),
        default=None,
        metavar="FRACTIONS",
        help="fractions for the coreset cross test (default: 0.5; '' for none)",
    )
    evaluate.add_argument("--backbone", default="resnet18", help="the target model")
    evaluate.add_argument("--schedule", default="paper", choices=("paper", "fast"))
    evaluate.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="target epochs (default: the schedule's own)",
    )
    evaluate.add_argument(
        "--never-learned",
        choices=("max", "zero"),
        default="max",
        help="forgetting count of never-learned examples: the "
        "maximum (Toneva et al.'s convention) or zero",
    )
    evaluate.add_argument("--device", default="auto")
    evaluate.add_argument(
        "--name", default=None, help="evaluation folder name; the same name resumes it"
    )
    evaluate.set_defaults(command=run_evaluate)
    return parser


def parse_window(text: str) -> tuple[int, int]:
    start, _, stop = text.partition(":")
    try:
        return int(start), int(stop)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected START:STOP, got {text!r}") from None


def parse_list(kind: type) -> Any:
    def parse(text: str) -> tuple[Any, ...]:
        try:
            return tuple(kind(item) for item in text.split(",") if item.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad list {text!r}") from None

    return parse


def run_select(args: argparse.Namespace) -> int:
    from coreset_core.training import resume_selection, run_selection

    progress = ProgressBar()
    try:
        if args.resume is not None:
            run_dir = resume_selection(args.resume, on_event=progress)
        else:
            values = {
                f.name: getattr(args, f.name)
                for f in dataclasses.fields(SelectionConfig)
            }
            config = SelectionConfig(**values)
            run_dir = run_selection(config, args.out, on_event=progress)
    finally:
        progress.close()
    print(run_dir)
    return 0


def run_export(args: argparse.Namespace) -> int:
    from coreset_core.runs import export_selection

    path = export_selection(
        args.run_dir,
        args.fraction,
        args.count,
        args.strategy,
        args.window,
        args.offset,
        args.seed,
    )
    print(path)
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from coreset_core.evaluation import EvaluationConfig, run_evaluation
    from coreset_core.supervised import TargetConfig

    target = TargetConfig(
        backbone=args.backbone,
        schedule=args.schedule,
        epochs=args.epochs,
        device=args.device,
    )
    chosen = {
        "subsets": args.subsets,
        "fractions": args.fractions,
        "cross_test_fractions": args.cross_test,
    }
    config = EvaluationConfig(
        seeds=tuple(range(args.seeds)),
        target=target,
        never_learned=args.never_learned,
        **{key: value for key, value in chosen.items() if value is not None},
    )
    progress = ProgressBar()
    try:
        out = run_evaluation(args.run_dir, config, on_event=progress, name=args.name)
    finally:
        progress.close()
    print(out)
    return 0


class ProgressBar:
    """A tqdm bar: over a selection run's steps, or over an evaluation's trainings."""

    def __init__(self) -> None:
        self.bar: Any = None

    def __call__(self, event: Any) -> None:
        from tqdm import tqdm

        if hasattr(event, "training"):
            self.evaluation(event)
            return
        if self.bar is None:
            total = event.epochs * event.steps
            done = (event.epoch - 1) * event.steps + event.step - 1
            self.bar = tqdm(total=total, initial=done, unit="step", file=sys.stderr)
        if event.kind == "batch":
            self.bar.update(1)
        else:
            self.bar.set_postfix(
                epoch=event.epoch,
                loss=f"{event.metrics['loss']:.3f}",
                similarity=f"{event.metrics['similarity_mean']:.3f}",
            )

    def evaluation(self, event: Any) -> None:
        """One tick per target training, named by the training under way."""
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(total=event.trainings, unit="training", file=sys.stderr)
        self.bar.set_description(event.message, refresh=False)
        if event.kind == "result":
            self.bar.update(1)
            self.bar.set_postfix(accuracy=f"{event.metrics['accuracy']:.3f}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def with_allocator_settings() -> None:
    """Re-run this process with the allocator settings when they are missing."""
    if sys.platform != "linux" or all(k in os.environ for k in ALLOCATOR_ENV):
        return
    env = {**os.environ, **ALLOCATOR_ENV}
    os.execve(
        sys.executable, [sys.executable, "-m", "coreset_core", *sys.argv[1:]], env
    )


if __name__ == "__main__":
    with_allocator_settings()
    sys.exit(main())
