"""The command lines as a user runs them: --help and bad flags answer before TensorFlow loads, and
no command prints TensorFlow's C++ start-up lines."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from asgm.backend import without_startup_lines
from conftest import write_toy_dataset

CLIS = ("train", "predict", "monitor", "labels")
#: Anything TensorFlow's C++ logging prints at start-up.
TF_LOG = re.compile(r"absl::InitializeLog|oneDNN custom operations|cpu_feature_guard|This TensorFlow binary is optimized|^[IWEF]\d{4} ", re.M)


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True)


def imported_tensorflow(importtime_stderr: str) -> bool:
    """Whether ``python -X importtime``'s report lists TensorFlow or Keras."""
    return any(re.search(r"\|\s+(tensorflow|keras)(\.|$)", line) for line in importtime_stderr.splitlines())


@pytest.mark.parametrize("cli", CLIS)
def test_help_answers_without_loading_tensorflow(cli):
    result = run("-X", "importtime", "-m", f"asgm.{cli}", "--help")
    assert result.returncode == 0 and result.stdout.startswith(f"usage: python -m asgm.{cli}")
    assert not imported_tensorflow(result.stderr)
    assert not TF_LOG.search(result.stderr)


def test_the_importtime_check_sees_tensorflow():
    """The check above can fail: importing the library's training module does load TensorFlow."""
    assert imported_tensorflow(run("-X", "importtime", "-c", "import asgm.train").stderr)


@pytest.mark.parametrize("cli, args, named", [
    ("train", ["--input_directory", "d", "--output_directory", "o", "--experiment_name", "x", "--epochs", "0"], "--epochs"),
    ("train", ["--input_directory", "d", "--output_directory", "o", "--experiment_name", "x", "--seed", "one"], "--seed"),
    ("predict", ["--model_directory", "m", "--input_directory", "d", "--output", "p.csv", "--operating_point", "best"], "--operating_point"),
    ("labels", ["--input_directory", "d", "--reference", "r", "--output_directory", "o", "--negative_max_cover", "nan"], "--negative_max_cover"),
])
def test_a_bad_flag_is_refused_before_tensorflow_loads(cli, args, named):
    result = run("-X", "importtime", "-m", f"asgm.{cli}", *args)
    assert result.returncode == 2 and named in result.stderr and "Traceback" not in result.stderr
    assert not imported_tensorflow(result.stderr)


def test_only_the_startup_lines_are_dropped():
    text = ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
            "I0000 00:00:1796626932.405953   14020 port.cc:153] oneDNN custom operations are on. You may see …\n"
            "I0000 00:00:1796626932.435376   14020 cpu_feature_guard.cc:227] This TensorFlow binary is optimized …\n"
            "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow …\n"
            "E0000 00:00:1796626932.5   14020 cuda_dnn.cc:8310] Unable to register cuDNN factory\n"
            "ImportError: libfoo.so: cannot open shared object file\n")
    assert without_startup_lines(text) == ("E0000 00:00:1796626932.5   14020 cuda_dnn.cc:8310] Unable to register cuDNN factory\n"
                                           "ImportError: libfoo.so: cannot open shared object file\n")


@pytest.mark.slow
def test_training_and_prediction_print_no_tensorflow_startup_lines(tmp_path):
    data = write_toy_dataset(tmp_path / "toy", n=60)
    config = tmp_path / "quick.yaml"
    config.write_text("architecture: thesis_cnn\nepochs: 1\nensemble: 1\nbootstrap: 10\nsplit: [0.6, 0.2, 0.2]\n")
    trained = run("-m", "asgm.train", "--input_directory", str(data), "--output_directory", str(tmp_path / "models"),
                  "--experiment_name", "m", "--config", str(config))
    assert trained.returncode == 0, trained.stderr
    assert "test roc_auc" in trained.stdout and not TF_LOG.search(trained.stderr), trained.stderr
    predicted = run("-m", "asgm.predict", "--model_directory", str(tmp_path / "models" / "m"), "--input_directory", str(data),
                    "--output", str(tmp_path / "p.csv"))
    assert predicted.returncode == 0 and "predicted mines" in predicted.stdout
    assert not TF_LOG.search(predicted.stderr), predicted.stderr
