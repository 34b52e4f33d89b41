"""``ast embed``: the model's pooled vector of each file (and window), into .npy, .npz or JSON Lines."""

from __future__ import annotations

from .. import process
from ..hub import DEFAULT_MODEL
from ..options import Device, FeatureFrontend, Precision, TagOptions
from ..params.common import Debug, Force, Quiet, Threads
from ..params.model import (
    DeviceOpt,
    FStride,
    InputTdim,
    KeepTokens,
    LabelNames,
    Model,
    ModelNormStats,
    PrecisionOpt,
    TStride,
    WindowsPerPass,
)
from ..params.tagging import AudioFiles, Channel, EmbedOutput, EmbedTimeline, FrontendOpt, Hop, Window
from ..spec import ModelSpec
from .common import exit_with, load, stdin_once


def embed(
    files: AudioFiles,
    out: EmbedOutput,
    model: Model = DEFAULT_MODEL,
    window: Window = None,
    hop: Hop = None,
    timeline: EmbedTimeline = False,
    channel: Channel = "mean",
    device: DeviceOpt = Device.auto,
    precision: PrecisionOpt = Precision.auto,
    keep_tokens: KeepTokens = None,
    batch_size: WindowsPerPass = None,
    force: Force = False,
    frontend: FrontendOpt = FeatureFrontend.transformers,
    labels: LabelNames = None,
    norm_stats: ModelNormStats = None,
    fstride: FStride = None,
    tstride: TStride = None,
    input_tdim: InputTdim = None,
    threads: Threads = None,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Embeddings of audio files: the model's pooled vector before the classifier, per file and per window.

    Pooled: (cls + distillation) / 2 after the last LayerNorm (transformers' pooler_output), averaged over the
    windows 'ast tag' cuts. .npy: one row per file, in order (NaN for a file that failed); .npz: also paths,
    durations and windows; .jsonl: one record a line. OUT is written when complete, never overwritten without
    --force.

    Examples: ast embed *.wav -o embeddings.npy      ast embed long.flac -o long.jsonl --timeline
    """
    from ..embedding import check_output, embed_files, write_embeddings
    from ..inputs import with_folders
    from ..targets import model_files

    paths = with_folders(files)
    stdin_once(paths)
    check_output(out, timeline, force, reads=[*paths, *model_files(model, labels)])
    options = TagOptions(window=window, hop=hop, channel=channel, batch_size=batch_size)
    spec = ModelSpec(
        source=model,
        labels=labels,
        device=device,
        precision=precision,
        keep_tokens=keep_tokens,
        norm_stats=norm_stats,
        fstride=fstride,
        tstride=tstride,
        input_tdim=input_tdim,
        frontend=frontend,
    )
    tagger = load(spec)
    dims = tagger.config.hidden_size
    failed = write_embeddings(
        embed_files(tagger, paths, options), out, timeline, len(paths), dims, on_error=process.error
    )
    if not quiet and out != "-":
        process.status(f"{len(paths) - failed} of {len(paths)} file(s) embedded ({dims} dimensions) in {out}")
    exit_with(failed)
