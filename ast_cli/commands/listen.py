"""``ast listen``: tag live audio (a microphone, or a stream on standard input) as it arrives."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import typer

from .. import process
from ..errors import UsageError
from ..hub import DEFAULT_MODEL
from ..options import Device, ListenOptions, Precision, RawFormat, SampleFormat, TagOptions
from ..params.common import Debug, Quiet, Threads
from ..params.listen import (
    Channels,
    Events,
    Hold,
    InputDevice,
    ListDevices,
    ListenHop,
    ListenSource,
    Rate,
    Raw,
    SampleFormatOpt,
)
from ..params.model import DeviceOpt, LabelNames, Model, ModelNormStats, PrecisionOpt
from ..params.tagging import (
    ActivationOpt,
    Channel,
    Exclude,
    ExcludeFrom,
    Include,
    IncludeFrom,
    Threshold,
    ThresholdsFile,
    Top,
    Window,
)
from ..spec import ModelSpec
from .common import label_lists, load, thresholds_of

if TYPE_CHECKING:  # the model is loaded only when a command runs: torch stays out of the CLI's import
    from ..inference import Tagger

URL_HINT = "ffmpeg -i URL -f s16le -ac 1 -ar 16000 - | ast listen - --raw --rate 16000 --channels 1"


def listen(
    source: ListenSource = None,
    model: Model = DEFAULT_MODEL,
    labels: LabelNames = None,
    top: Top = 5,
    threshold: Threshold = None,
    thresholds: ThresholdsFile = None,
    window: Window = None,
    hop: ListenHop = 1.0,
    events: Events = False,
    hold: Hold = 2.0,
    activation: ActivationOpt = None,
    include: Include = [],
    exclude: Exclude = [],
    include_from: IncludeFrom = None,
    exclude_from: ExcludeFrom = None,
    channel: Channel = "mean",
    raw: Raw = False,
    rate: Rate = None,
    channels: Channels = None,
    sample_format: SampleFormatOpt = SampleFormat.s16le,
    input_device: InputDevice = None,
    list_devices: ListDevices = False,
    device: DeviceOpt = Device.auto,
    precision: PrecisionOpt = Precision.auto,
    norm_stats: ModelNormStats = None,
    threads: Threads = None,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Tag live audio as it arrives: every --hop seconds, the last --window seconds; JSON Lines off a terminal.

    Examples:

      ffmpeg -i URL -f s16le -ac 1 -ar 16000 - | ast listen - --raw --rate 16000 --channels 1 --events --threshold 0.5

      ast listen --events --threshold 0.6 --include Dog | while read -r event; do notify-send "$event"; done
    """
    from .. import livesources

    if list_devices:
        return typer.echo("\n".join(livesources.list_devices()))
    pcm = raw_format(raw=raw, rate=rate, channels=channels, sample_format=sample_format)
    check_source(source, raw=raw)
    how = ListenOptions(source=source, input_device=input_device, hop=hop, events=events, hold=hold, raw=pcm)
    if source is None:
        livesources.import_sounddevice()  # before the model loads: say at once what to install
    options = TagOptions(
        top=top,
        threshold=threshold,
        thresholds=thresholds_of(thresholds),
        window=window,
        activation=activation,
        **label_lists(include, include_from, exclude, exclude_from),
        channel=channel,
    )
    tagger = load(ModelSpec(source=model, labels=labels, device=device, precision=precision, norm_stats=norm_stats))
    run(tagger, options, how, quiet=quiet)


def run(tagger: Tagger, options: TagOptions, how: ListenOptions, *, quiet: bool) -> None:
    """Tag until the source ends, then the summary on stderr (not with --quiet); at Ctrl-C the summary
    in any case, as what was heard so far."""
    from .. import listen as live

    summary = live.Summary()
    try:
        live.run_listen(tagger, options, how, stream=sys.stdout, summary=summary)
    except KeyboardInterrupt:
        process.status(summary.line())
        raise
    if not quiet:
        process.status(summary.line())


def raw_format(*, raw: bool, rate: int | None, channels: int | None, sample_format: SampleFormat) -> RawFormat | None:
    """What --raw says standard input holds (None without --raw); --raw needs --rate and --channels."""
    if not raw:
        return None
    if rate is None or channels is None:
        hint = "e.g. --raw --rate 16000 --channels 1 --sample-format s16le"
        raise UsageError("--raw needs --rate and --channels", hint=hint)
    return RawFormat(rate=rate, channels=channels, sample_format=sample_format)


def check_source(source: str | None, *, raw: bool) -> None:
    """The source argument: '-' or nothing; --raw describes standard input only."""
    if source not in (None, "-"):
        raise UsageError(
            f"ast listen takes '-' (standard input) or nothing (a microphone), got {source!r}",
            hint=f"for files use ast tag; for a URL: {URL_HINT}",
        )
    if raw and source != "-":
        raise UsageError("--raw describes standard input", hint="give '-' as the source")
