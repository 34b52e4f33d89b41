"""Input discovery of `ast batch`: sorted lazy walks, hidden and non-audio files, links, globs, shards."""

from __future__ import annotations

import os

import pytest

from ast_cli.errors import UsageError
from ast_cli.inputs import Counts, InputSpec, parse_extensions, parse_shard, shard_of


def touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_walk_is_sorted_lazy_and_skips_hidden_and_other_files(tmp_path):
    for name in ["b.wav", "a.flac", "sub/z.mp3", "sub/.hidden.wav", ".git/x.wav", "notes.txt", "c.WAV"]:
        touch(tmp_path / name)
    counts = Counts()
    items = InputSpec(items=[str(tmp_path)]).iter(counts)
    assert next(items).name == str(tmp_path / "a.flac")  # a generator: nothing listed ahead of need
    names = [i.name for i in items]
    assert names == [str(tmp_path / n) for n in ["b.wav", "c.WAV", "sub/z.mp3"]]
    assert (counts.hidden, counts.not_audio) == (2, 1)


def test_relative_names_and_no_recursion(tmp_path):
    touch(tmp_path / "d" / "a.wav")
    touch(tmp_path / "d" / "s" / "b.wav")
    assert [i.name for i in InputSpec(items=[str(tmp_path / "d")], relative=True).iter()] == [
        "a.wav",
        os.path.join("s", "b.wav"),
    ]
    assert [i.name for i in InputSpec(items=[str(tmp_path / "d")], recursive=False).iter()] == [
        str(tmp_path / "d" / "a.wav")
    ]


def test_linked_folders_are_followed_once(tmp_path):
    touch(tmp_path / "d" / "a.wav")
    os.symlink("..", tmp_path / "d" / "up")  # a loop
    os.symlink("nowhere", tmp_path / "d" / "dead.wav")  # a broken link: tagging it reports why
    os.symlink("self", tmp_path / "d" / "self")  # a link to itself
    names = [i.name for i in InputSpec(items=[str(tmp_path / "d")]).iter()]
    assert names == [str(tmp_path / "d" / "a.wav"), str(tmp_path / "d" / "dead.wav")]


def test_globs_explicit_files_files_from_and_dedup(tmp_path):
    a, b = touch(tmp_path / "x" / "a.wav"), touch(tmp_path / "y" / "b.ogg")
    odd = touch(tmp_path / "odd.bin")
    listing = tmp_path / "list.txt"
    listing.write_text(f"{a}\n\n{odd}\n")
    counts = Counts()
    spec = InputSpec(
        items=[str(tmp_path / "**" / "*.wav"), str(odd), str(tmp_path / "*.none")], files_from=str(listing)
    )
    assert [i.name for i in spec.iter(counts)] == [str(a), str(odd)]  # named files whatever their extension; once each
    assert counts.unmatched == [str(tmp_path / "*.none")]
    assert [i.name for i in InputSpec(items=[], files_from="-").iter(stdin=iter([f"{b}\n"]))] == [str(b)]
    with pytest.raises(UsageError, match="ast tag -"):
        InputSpec(items=["-"])


def test_shards_are_a_stable_partition():
    names = [f"set{i % 7}/clip {i}.wav" for i in range(1000)]
    parts = [[n for n in names if shard_of(n, 4) == k] for k in range(4)]
    assert sorted(sum(parts, [])) == sorted(names) and all(200 < len(p) < 300 for p in parts)
    assert shard_of("recordings/a.wav", 16) == 13  # the same on every machine
    spec = InputSpec(items=[], files_from="-", shard=(1, 4))
    assert [i.name for i in spec.iter(stdin=iter(n + "\n" for n in names))] == parts[1]


def test_option_parsing():
    assert parse_extensions(["wav,.FLAC", "mp3"]) == {".wav", ".flac", ".mp3"}
    assert ".wav" in parse_extensions([])
    assert parse_shard("0/4") == (0, 4) and parse_shard(None) is None
    for bad in ("4/4", "-1/4", "1", "a/b", "1/0"):
        with pytest.raises(UsageError):
            parse_shard(bad)
    with pytest.raises(UsageError, match="no inputs"):
        InputSpec(items=[])
