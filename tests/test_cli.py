"""The command line end to end on the tiny preset, and its one-line errors (exit code 2)."""

import json

import pytest

from maevae.cli import main

FAST = ["--set", "train.num_threads=1", "--no-progress"]


def _run(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    out, err = capsys.readouterr()
    return e.value.code, out, err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("cli") / "run"
    main(["train", "tiny/test", "--out", str(run), "--compile", "never", *FAST])
    return run


def test_train_eval_sample_reconstruct(trained, capsys):
    files = {p.name for p in trained.iterdir()}
    assert {"config.yaml", "run.json", "metrics.jsonl", "checkpoints", "best"} <= files
    main(["eval", str(trained), "--nll-samples", "4", "--max-images", "6", "--no-progress"])
    ev = json.loads((trained / "eval.json").read_text())
    for key in ("nll", "nll_stderr", "elbo", "recon", "kl", "mpd", "std"):
        assert isinstance(ev[key], float)
    assert ev["nll_samples"] == 4 and ev["nll_images"] == 6 and ev["test_copies"] == 1
    assert ev["compiled"] is False  # eval.compile=auto: 24 samples are far below the threshold
    assert "compile: never" in (trained / "config.yaml").read_text()  # train --compile
    assert ev["elbo"] == pytest.approx(ev["recon"] + ev["kl"])
    main(["sample", str(trained), "-n", "4"])
    main(["reconstruct", str(trained), "-n", "4"])
    assert (trained / "samples.png").stat().st_size > 0
    assert (trained / "reconstructions.png").stat().st_size > 0
    out = capsys.readouterr().out
    assert "samples/s" in out


def test_resume_of_a_finished_run_does_nothing(trained, capsys):
    before = (trained / "best" / "model.safetensors").read_bytes()
    main(["train", "--resume", str(trained), "--no-progress"])
    assert "already finished" in capsys.readouterr().out
    assert (trained / "best" / "model.safetensors").read_bytes() == before


@pytest.mark.parametrize("argv, needle", [
    (["train", "mnist/nope", "--out", "{tmp}/a"], "unknown preset 'mnist/nope'"),
    (["train", "tiny/test", "--out", "{tmp}/a", "--set", "train.lrr=1"],
     "unknown config key train.lrr"),
    (["train", "tiny/test", "--out", "{tmp}/a", "--set", "train.batch_size=many"],
     "train.batch_size: got 'many'"),
    (["train", "mnist/vlae", "--out", "{tmp}/a", "--data-root", "{tmp}/missing"],
     "does not exist"),
    (["train", "tiny/test", "--out", "{run}"], "is not empty"),
    (["eval", "{tmp}", "--nll-samples", "0"], "--nll-samples 0"),
    (["eval", "{tmp}/nothing"], "does not exist"),
    (["train", "tiny/test"], "needs CONFIG and --out"),
    (["train", "--resume", "{run}", "--precision", "bf16"], "keeps the run's seed and precision"),
    (["train", "tiny/test", "--out", "{tmp}/a", "--set", "train.compile=yes"], "train.compile"),
    (["info", "mnist/vlae", "--set", "model.decoder.mode=huge"], "model.decoder.mode"),
    (["info", "mnist/vlae", "--dataset", "nope"], "data.name: unknown value 'nope'"),
    (["info", "--list", "mnist/vlae"], "info --list takes no CONFIG"),
])
def test_bad_input_is_one_line_with_exit_code_2(argv, needle, trained, tmp_path, capsys):
    before = (trained / "config.yaml").read_text()
    argv = [a.format(tmp=tmp_path, run=trained) for a in argv]
    code, _, err = _run(argv, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("maevae: error:"), err
    assert needle in lines[0]
    assert (trained / "config.yaml").read_text() == before
    assert not (tmp_path / "a").exists()


def test_info_prints_the_paper_counts(capsys):
    main(["info", "mnist/mae_eta1.0_gamma0.5", "--json"])
    counts = json.loads(capsys.readouterr().out)
    assert (counts["encoder"], counts["prior"], counts["decoder"], counts["total"]) == (
        703_872, 356_352, 505_346, 1_565_570)


def test_info_set_and_dataset_change_the_counted_model(capsys):
    # the paper's large PixelCNN decoder (SPEC: encoder 703,872 + prior 356,352 + 897,538)
    main(["info", "mnist/vlae", "--set", "model.decoder.mode=large", "--json"])
    counts = json.loads(capsys.readouterr().out)
    assert (counts["decoder"], counts["total"]) == (897_538, 1_957_762)
    main(["info", "mnist/vlae", "--set", "model.decoder.mode=large"])
    assert "total       1,957,762" in capsys.readouterr().out
    # --dataset digits (normalised like train's): 8x8 images; the encoder's last layer shrinks,
    # the prior (on the 64-d code) does not
    main(["info", "mnist/vlae", "--dataset", " Digits", "--json"])
    counts = json.loads(capsys.readouterr().out)
    assert counts["image_shape"] == [1, 8, 8]
    assert counts["encoder"] < 703_872 and counts["prior"] == 356_352


def test_version_and_no_command(capsys):
    from maevae import __version__

    code, out, _ = _run(["--version"], capsys)
    assert (code, out) == (0, f"maevae {__version__}\n")
    code, out, err = _run([], capsys)  # no command: the help, as a usage error
    assert code == 2 and out == "" and err.startswith("usage: maevae")


def test_help_lists_every_command(capsys):
    code, out, _ = _run(["--help"], capsys)
    assert code == 0
    for cmd in ("train", "eval", "sample", "reconstruct", "info", "run", "compare", "sweep"):
        assert cmd in out
    from maevae.cli import COMMANDS

    assert set(COMMANDS) == {"train", "eval", "sample", "reconstruct", "info", "run", "compare",
                             "sweep"}
    code, out, _ = _run(["train", "--help"], capsys)
    assert code == 0 and "examples:" in out and "--resume" in out


@pytest.mark.parametrize("native", [False, True])
def test_bf16_without_native_kernels_warns_once(trained, tmp_path, capsys, monkeypatch,
                                                native):
    """A CPU without native bf16 runs bf16 6-9x slower: train and eval say so, in one line."""
    import shutil

    from maevae import device

    monkeypatch.setattr(device, "_cpu_has_native_bf16", lambda: native)
    copy = shutil.copytree(trained, tmp_path / "copy")  # eval writes eval.json into the run
    main(["eval", str(copy), "--precision", "bf16", "--nll-samples", "2", "--max-images",
          "2", "--no-progress"])
    run = tmp_path / "bf16"
    main(["train", "tiny/test", "--out", str(run), "--compile", "never", "--precision", "bf16",
          "--set", "train.max_steps=1", *FAST])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if "no native bf16" in ln]
    if native:
        assert lines == []
    else:
        assert len(lines) == 2
        assert lines[0].startswith("maevae: warning: eval.precision=bf16 but this CPU (")
        assert lines[0].endswith("; pass --precision fp32")
        assert lines[1].startswith("maevae: warning: train.precision=bf16 but this CPU (")
        assert lines[1].endswith("train with --precision fp32 (a run keeps its precision "
                                 "on --resume)")
