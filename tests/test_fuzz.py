"""The differential fuzzer (``tests/fuzz.py``): a few hundred cases of every op, forward
and backward, agree with the NumPy reference (and PyTorch when installed); a wrong answer
in any op is caught and its reproducer names the op; ``--ops`` and ``--case`` work."""

from __future__ import annotations

import fuzz
import numpy as np
import pytest

import fastconv as fc
import fastconv._run
import fastconv.conv


def test_fuzz_every_op_270_cases():
    counts = {}
    assert fuzz.run(270, seed=20240, out=None, counts=counts) == []
    assert set(counts) == set(fuzz.OPS)  # every op drew cases
    assert sum(c[0] for c in counts.values()) == 270


def test_fuzz_harness_detects_a_wrong_answer(monkeypatch):
    real = fastconv._run.correlation_core

    def off_by_a_bit(*args, **kwargs):
        core = real(*args, **kwargs)

        def wrong(xp, w, bias, out, *rest):
            core(xp, w, bias, out, *rest)
            out[..., -1] += 0.1  # beyond the FFT's tolerance too

        return wrong

    monkeypatch.setattr(fastconv._run, "correlation_core", off_by_a_bit)
    failures = fuzz.run(10, seed=1, out=None, use_torch=False, ops="conv")
    assert len(failures) == 10
    assert "repro: python tests/fuzz.py --ops conv --seed 1 --case 0" in failures[0]


def _off_by_a_bit(func):
    """``func`` with 0.5 added to every finite value of its (first) result, and its
    NaN/Inf (e.g. max pooling's all -inf output of windows that miss the input) zeroed."""

    def wrong(*args, **kwargs):
        res = func(*args, **kwargs)
        first = res[0] if isinstance(res, tuple) else res
        first = np.where(np.isfinite(first), first + 0.5, 0.0).astype(first.dtype)
        return (first, *res[1:]) if isinstance(res, tuple) else first

    return wrong


#: op -> (module, names of the public functions its cases call)
PUBLIC = {
    "conv_input": (fc.grad, [f"conv{n}d_input" for n in (1, 2, 3)]),
    "conv_weight": (fc.grad, [f"conv{n}d_weight" for n in (1, 2, 3)]),
    "conv_bias": (fc.grad, ["conv_bias"]),
    "conv_transpose": (fc, [f"conv_transpose{n}d" for n in (1, 2, 3)]),
    "max_pool": (fc, [f"max_pool{n}d" for n in (1, 2, 3)]),
    "avg_pool": (fc, [f"avg_pool{n}d" for n in (1, 2, 3)]),
    "max_pool_grad": (fc.grad, [f"max_pool{n}d" for n in (1, 2, 3)]),
    "avg_pool_grad": (fc.grad, [f"avg_pool{n}d" for n in (1, 2, 3)]),
}


@pytest.mark.parametrize("op", sorted(PUBLIC))
def test_fuzz_detects_a_wrong_answer_in_every_op(monkeypatch, op):
    module, names = PUBLIC[op]
    for name in names:
        monkeypatch.setattr(module, name, _off_by_a_bit(getattr(module, name)))
    failures = fuzz.run(8, seed=3, out=None, use_torch=False, ops=op)
    assert len(failures) == 8
    assert f"MISMATCH {op} (fc." in failures[0]
    assert f"repro: python tests/fuzz.py --ops {op} --seed 3 --case 0" in failures[0]


def test_fuzz_max_pool_indices_are_checked(monkeypatch):
    def shifted(func):
        def wrong(*args, **kwargs):
            res = func(*args, **kwargs)
            return (res[0], res[1] + 1) if isinstance(res, tuple) else res

        return wrong

    for n in (1, 2, 3):
        monkeypatch.setattr(fc, f"max_pool{n}d", shifted(getattr(fc, f"max_pool{n}d")))
    failures = fuzz.run(20, seed=4, out=None, use_torch=False, ops="max_pool")
    with_indices = [i for i in range(20)
                    if fuzz.make_case(4, i, "max_pool")["return_indices"]]
    assert len(failures) == len(with_indices) > 0
    assert all("indices vs reference" in line for line in failures)


def test_parse_ops_groups_and_names():
    assert fuzz.parse_ops(None) == list(fuzz.OPS)
    assert fuzz.parse_ops("grad,max_pool") == ["conv_input", "conv_weight", "conv_bias",
                                               "max_pool"]
    assert fuzz.parse_ops("pool") == ["max_pool", "avg_pool", "max_pool_grad",
                                      "avg_pool_grad"]
    with pytest.raises(ValueError, match="unknown op or group 'bogus'"):
        fuzz.parse_ops("conv,bogus")


def test_case_replays_alone_whatever_ops_ran(monkeypatch):
    # case i has the same op and parameters in a mixed run and in an `--ops OP --case i`
    seen = []
    monkeypatch.setattr(fuzz, "check_case", lambda case, **kw: seen.append(case) or [])
    fuzz.run(30, seed=7, out=None)
    for i, case in enumerate(list(seen)):
        fuzz.run(1, seed=7, out=None, ops=case["op"], cases=[i])
        assert seen[-1] == case


def test_main_replays_one_case(capsys):
    assert fuzz.main(["--ops", "conv_input", "--seed", "0", "--case", "3", "--no-torch"]) == 0
    out = capsys.readouterr().out
    assert "case 3: fc.grad.conv" in out
    assert "fuzz: 1 cases vs NumPy reference, 0 mismatches" in out


def test_main_device_cuda_without_gpu_is_a_usage_error(monkeypatch, capsys):
    monkeypatch.setattr(fc, "devices", lambda: ["cpu"])
    with pytest.raises(SystemExit) as exc:
        fuzz.main(["--device", "cuda", "--n", "1"])
    assert exc.value.code == 2
    assert "--device cuda: no usable CUDA GPU" in capsys.readouterr().err


def test_compare_devices_floats_within_rounding_integers_exactly():
    want = np.array([1.0, -2.0, np.nan, np.inf], np.float32)
    assert fuzz._compare_devices(want + np.float32(1e-6), want) is None
    assert "max error" in fuzz._compare_devices(want + np.float32(1e-3), want)
    assert "NaN positions" in fuzz._compare_devices(np.zeros(4, np.float32), want)
    assert "float64 != (4,) float32" in fuzz._compare_devices(want.astype(np.float64), want)
    idx = np.arange(4)
    assert fuzz._compare_devices(idx, idx.copy()) is None
    assert fuzz._compare_devices(idx + 1, idx) == "4 of 4 values differ"
    assert "not a NumPy array" in fuzz._compare_devices([1, 2], idx)
