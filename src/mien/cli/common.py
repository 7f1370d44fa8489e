"""What every `mien` command shares: the Typer app, the consoles, exit codes, help texts, choice
checks, the progress bar, and the builder of analysis options (`mien.options`) for the CLI."""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mien.options import AnalyzerOptions, OptionsError, analyzer_options, video_options

# Plain Click help: at 80 columns rich's option tables squeezed the help text into a 13-character column.
# Wide terminals may use up to 120 columns (Click stops at 80 by default).
app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  context_settings={"max_content_width": 120},
                  help="mien: offline facial expression analysis (faces, mesh, pose, blendshapes, AUs, expressions).")
console = Console()
errors = Console(stderr=True)

EXIT_OK, EXIT_FAILED_INPUTS, EXIT_USAGE = 0, 1, 2


def require_extra(extra: str, *modules: str) -> None:
    """Exit (usage) with one line naming the install command when a command's optional extra is missing."""
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        errors.print(f"this command needs the {extra} extra ({', '.join(missing)} missing): "
                     f'pip install "mien[{extra}]"', highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(EXIT_USAGE)

ATTRIBUTES_HELP = ("Also estimate apparent age (with an 80% interval) and gender presentation (columns apparent_age*, "
                   "gender_presentation*); see `mien card age` and `mien card gender` for their errors per group.")
EXPRESSIONS_HELP = ("Custom expressions: a TOML rules file over AU and expression probabilities (README, 'Custom "
                    "expressions') or a built-in set (compound, compound-facs); one custom_<name> column (0-1) per rule.")


def load_rules_or_exit(path):
    """The checked rules of `--expressions` (None without it); a bad file exits (usage) with one line first."""
    if path is None:
        return None
    from mien.expression.rules import RulesError, load_rules

    try:
        return load_rules(path)
    except RulesError as exc:
        errors.print(f"mien: {exc}", highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(EXIT_USAGE)


MODE_HELP = ("Detector: fast (one pass, large faces), auto (one pass for a portrait, else + CenterFace for groups), "
             "thorough (CenterFace at more pixels + BlazeFace tiles: crowds).")
PHOTO_MODE_HELP = MODE_HELP[:-1] + ", or crops (no detector: each image is one face already cropped, e.g. a " \
    "dataset's face chips; one row per image)."
PRIOR_HELP = ("Expression class prior: natural (everyday photos and video: mostly happy and neutral), balanced (every "
              "class equally likely; finds more fear, disgust, contempt, anger), or a dataset's own: ferplus, rafdb.")
SAMPLING_HELP = {
    "every": "Analyse every Nth frame.",
    "fps": "Analyse about this many frames per second instead of every frame.",
    "start": "Start time in seconds.",
    "end": "End time in seconds (default: to the end).",
    "input_fps": "Frame rate of an image sequence, or an override for a file whose frame rate is missing or wrong.",
    "detect_every": "Run the face detector every K analysed frames; in between, faces are followed by the mesh.",
}
# CLI option names of the settings `mien.options` validates (for error messages).
_FLAGS = {"mode": "--mode", "min_score": "--min-score", "min_face_size": "--min-face-size", "max_faces": "--max-faces",
          "expression_prior": "--prior", "prior": "--prior", "detect_every": "--detect-every"}


def check_choice(option: str, value: str, choices: tuple[str, ...]) -> None:
    """Exit with a usage error unless `value` is one of `choices`."""
    if value not in choices:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(choices)}", param_hint=option)


def _usage_error(exc: OptionsError) -> typer.BadParameter:
    name = str(exc).split(" ", 1)[0]
    return typer.BadParameter(str(exc), param_hint=_FLAGS.get(name, name))


def cli_analyzer_options(**settings: Any) -> AnalyzerOptions:
    """`mien.options.analyzer_options`, with a bad value reported as a usage error naming the flag."""
    try:
        return analyzer_options(**settings)
    except OptionsError as exc:
        raise _usage_error(exc) from None


def cli_video_options(**settings: Any):
    """`mien.options.video_options`, with a bad value reported as a usage error naming the flag."""
    try:
        return video_options(**settings)
    except OptionsError as exc:
        raise _usage_error(exc) from None


def progress_bar(total: int) -> Progress:
    """The progress bar of long commands, on stderr; hidden for a single input."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=errors, transient=True, disable=total < 2)
