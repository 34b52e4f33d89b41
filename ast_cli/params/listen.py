"""``ast listen``: where the audio comes from and how often it is tagged."""

from __future__ import annotations

from typing import Annotated

import typer

from ..options import SampleFormat

ListenSource = Annotated[
    str | None,
    typer.Argument(
        show_default=False,
        metavar="[-]",
        help="'-': standard input (a WAV stream, raw PCM with --raw, or what ffmpeg decodes); nothing: the microphone.",
    ),
]
ListenHop = Annotated[float, typer.Option("--hop", metavar="SECONDS", help="Seconds of audio between two results.")]
Events = Annotated[
    bool,
    typer.Option(
        "--events",
        help="Only changes: a label rising to --threshold (start), and staying below it for --hold seconds (end).",
    ),
]
Hold = Annotated[
    float,
    typer.Option(
        "--hold",
        metavar="SECONDS",
        help="With --events: how long a label stays below --threshold before it ends.",
    ),
]
Raw = Annotated[
    bool,
    typer.Option(
        "--raw",
        help="Standard input is raw PCM (as arecord -t raw and ffmpeg -f s16le write): give --rate and --channels.",
    ),
]
Rate = Annotated[int | None, typer.Option("--rate", min=1, metavar="HZ", help="With --raw: the sample rate.")]
Channels = Annotated[
    int | None,
    typer.Option(
        "--channels",
        min=1,
        metavar="N",
        help="With --raw: the number of channels.",
    ),
]
SampleFormatOpt = Annotated[SampleFormat, typer.Option("--sample-format", help="With --raw: the samples' encoding.")]
InputDevice = Annotated[
    str | None,
    typer.Option(
        "--input-device",
        metavar="NAME|INDEX",
        help="The microphone (default: the system's; see --list-devices).",
    ),
]
ListDevices = Annotated[bool, typer.Option("--list-devices", help="List the input devices and exit.")]
