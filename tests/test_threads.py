"""The thread policy (threads.py): usable CPUs from affinity and cgroup quota, --threads and
OMP_NUM_THREADS, one thread for per-file work, sleeping OpenMP waits; and --threads on the commands."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from helpers import tone_files

from ast_cli import threads
from ast_cli.cli import main


@pytest.fixture(autouse=True)
def keep_torch_threads():
    before = torch.get_num_threads()
    yield
    threads.configure(None)
    torch.set_num_threads(before)


def test_cgroup_quota_v2_and_v1(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert threads.cgroup_quota(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert threads.cgroup_quota(tmp_path) is None
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("300000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert threads.cgroup_quota(tmp_path) == 3.0
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert threads.cgroup_quota(tmp_path) is None
    assert threads.cgroup_quota(tmp_path / "missing") is None


def test_available_cpus_follow_the_affinity_mask_and_the_quota(monkeypatch):
    code = (
        "import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); from ast_cli import "
        "threads; print(threads.available_cpus())"
    )
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "1"
    )
    if len(os.sched_getaffinity(0)) >= 2:
        monkeypatch.setattr(threads, "cgroup_quota", lambda: 1.2)  # a quota of 1.2 CPUs: 2 threads may run
        assert threads.available_cpus() == 2
        monkeypatch.setattr(threads, "cgroup_quota", lambda: 0.5)
        assert threads.available_cpus() == 1


def test_busy_elsewhere_counts_other_runnable_tasks_but_not_a_passing_one(monkeypatch):
    monkeypatch.setattr(threads, "available_cpus", lambda: 2)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    lines = iter(["7.50 6.00 3.00 4/300 99"] * 5)
    assert threads.busy_elsewhere(read=lambda: next(lines)) == 3.0  # 4 runnable, one of them us
    lines = iter(["0.10 0.20 0.30 3/300 99"] * 5)  # two others at this instant, but a quiet minute
    assert threads.busy_elsewhere(read=lambda: next(lines)) == 0.1
    lines = iter(
        [
            "2.0 2.0 2.0 1/300 99",
            "2.0 2.0 2.0 3/300 99",
            "2.0 2.0 2.0 3/300 99",
            "2.0 2.0 2.0 9/300 99",
            "2.0 2.0 2.0 3/300 99",
        ]
    )
    assert threads.busy_elsewhere(read=lambda: next(lines)) == 2.0  # the median instant
    monkeypatch.setattr(os, "cpu_count", lambda: 64)  # 2 of a 64-CPU machine's CPUs: its share of the others
    lines = iter(["40.0 40.0 40.0 33/900 99"] * 5)
    assert threads.busy_elsewhere(read=lambda: next(lines)) == 1.0
    assert threads.busy_elsewhere(read=lambda: "garbage") == 0.0


@pytest.mark.parametrize("busy,expected", [(0.0, 2), (0.5, 2), (0.8, 1), (1.0, 1), (6.0, 1)])
def test_the_model_leaves_the_cpus_other_work_holds(monkeypatch, busy, expected):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "available_cpus", lambda: 2)
    monkeypatch.setattr(threads, "busy_elsewhere", lambda: busy)
    assert threads.configure(None) == expected


def test_a_long_run_follows_the_load_as_it_comes_and_goes(monkeypatch):
    """refresh: at most every interval, our own workers and load not counted as other work."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "available_cpus", lambda: 4)
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    loadavg = {"line": "0.0 0.0 0.0 1/100 9"}
    real = threads.busy_elsewhere
    monkeypatch.setattr(threads, "busy_elsewhere", lambda **kw: real(read=lambda: loadavg["line"], spacing_s=0, **kw))
    assert threads.configure(None) == 4
    assert threads.refresh(interval_s=30) == 4  # too soon after the start: not looked at
    loadavg["line"] = "6.0 2.0 1.0 4/100 9"  # 3 others runnable, and a busy minute (4 of it ours)
    assert threads.refresh(interval_s=0) == 2 and torch.get_num_threads() == 2
    loadavg["line"] = "2.0 2.0 1.0 1/100 9"  # the others are gone: our own 2 threads made the minute's load
    assert threads.refresh(interval_s=0) == 4
    loadavg["line"] = "7.0 2.0 1.0 3/100 9"  # runnable: this thread, our 1 worker, 1 other; a minute above our 4 + 1
    assert threads.refresh(workers=1, interval_s=0) == 2  # 4 CPUs, 1 busy elsewhere, 1 for the worker
    threads.configure(3)
    loadavg["line"] = "9.0 9.0 9.0 9/100 9"
    assert threads.refresh(interval_s=0) == 3  # the user's choice stays


@pytest.mark.parametrize("value,expected", [("4", 4), ("4,2", 4), ("", None), ("x", None), ("0", None)])
def test_user_threads_read_omp_num_threads(value, expected):
    assert threads.user_threads({"OMP_NUM_THREADS": value}) == expected
    assert threads.user_threads({}) is None


def test_threads_given_win_then_omp_num_threads_then_the_cpus_less_the_workers(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "available_cpus", lambda: 8)
    monkeypatch.setattr(threads, "busy_elsewhere", lambda: 0.0)
    assert threads.configure(None) == 8 and torch.get_num_threads() == 8
    assert threads.for_model(workers=3) == 5 and torch.get_num_threads() == 5
    assert threads.for_model(workers=20) == 1
    assert threads.for_model(workers=1, processes=2) == 3  # torchrun: 2 processes share the 8 CPUs
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.configure(None) == 3 and threads.explicit()
    assert threads.for_model(workers=2) == 3  # the user's number is kept whatever the workers
    assert threads.configure(2) == 2 and torch.get_num_threads() == 2


def test_per_file_work_runs_on_one_thread_and_gives_the_threads_back():
    torch.set_num_threads(2)
    with threads.per_file():
        assert torch.get_num_threads() == 1
        with threads.per_file():
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    with pytest.raises(RuntimeError), threads.per_file():
        raise RuntimeError
    assert torch.get_num_threads() == 2


def test_fbank_and_resampling_run_on_one_thread(monkeypatch):
    """The per-file steps ask for one thread whatever the model has."""
    import numpy as np

    from ast_cli import audio, features

    seen = []
    original = torch.set_num_threads
    monkeypatch.setattr(torch, "set_num_threads", lambda n: (seen.append(n), original(n)))
    original(2)
    features.fbank(np.zeros(16000, dtype=np.float32))
    assert seen == [1, 2]
    seen.clear()
    audio.StreamResampler(44100).flush(np.zeros(44100, dtype=np.float32))
    assert seen == [1, 2]


def test_openmp_threads_sleep_unless_the_user_chose():
    env: dict[str, str] = {}
    threads.openmp_environment(env)
    assert env == {"OMP_WAIT_POLICY": "PASSIVE"}
    for mine in ({"OMP_WAIT_POLICY": "ACTIVE"}, {"GOMP_SPINCOUNT": "100000"}, {"KMP_BLOCKTIME": "200"}):
        env = dict(mine)
        threads.openmp_environment(env)
        assert env == mine


def test_the_ast_process_sets_the_wait_policy_before_torch_loads(tiny_model_dir, tmp_path):
    """Seen from inside the process: the variable is set when torch's OpenMP runtime reads it."""
    path = tone_files(tmp_path, 1, 1.0)[0]
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME", "OMP_NUM_THREADS")
    }
    proc = subprocess.run(
        [sys.executable, "-m", "ast_cli", "tag", str(path), "-m", str(tiny_model_dir), "--threads", "1", "--debug"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert "model threads: 1 (--threads or OMP_NUM_THREADS); OpenMP wait policy PASSIVE" in proc.stderr


@pytest.mark.parametrize("command", ["tag", "batch", "stats", "export", "finetune", "eval", "embed", "listen"])
def test_every_command_that_reads_audio_or_runs_a_model_takes_threads(command, capsys):
    assert main([command, "--help"]) == 0
    assert "--threads" in capsys.readouterr().out


def test_threads_must_be_positive(capsys, tiny_model_dir, tmp_path):
    assert main(["tag", str(tmp_path / "x.wav"), "-m", str(tiny_model_dir), "--threads", "0"]) == 2
    assert "--threads" in capsys.readouterr().err


def test_threads_reach_the_model(capsys, tiny_model_dir, tmp_path):
    path = tone_files(tmp_path, 1, 1.0)[0]
    assert main(["tag", str(path), "-m", str(tiny_model_dir), "--threads", "3", "--format", "json"]) == 0
    assert torch.get_num_threads() == 3


def test_batch_looks_at_the_load_as_it_goes(monkeypatch, tiny_model_dir, tmp_path):
    calls = []
    monkeypatch.setattr(threads, "refresh", lambda workers=0, interval_s=30.0: calls.append(workers))
    tone_files(tmp_path / "in", 3, 0.5)
    assert (
        main(
            [
                "batch",
                str(tmp_path / "in"),
                "-o",
                str(tmp_path / "out.csv"),
                "-m",
                str(tiny_model_dir),
                "--workers",
                "0",
                "-q",
            ]
        )
        == 0
    )
    assert calls == [0, 0, 0]  # once a record; refresh itself looks at most every 30 s
