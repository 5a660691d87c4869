"""Dask arrays in, lazy Dask arrays out (issue 8): results equal to the in-memory call
(bit-identical for the direct algorithm) over ranks, chunkings (ragged, 1-pixel wide),
every padding mode, stride, dilation, groups and pooling option; laziness; a
``LocalCluster`` of worker processes; the out-of-core ``.npy`` helpers (atomic output,
failure mid-run, peak RSS far below the file size)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

da = pytest.importorskip("dask.array", reason="Dask not installed (pip install 'fastconv[dask]')")
import dask  # noqa: E402

import fastconv as fc  # noqa: E402
from fastconv import ooc  # noqa: E402
from fastconv._shapes import overlap_chunks  # noqa: E402
from fastconv.conv import convolve2d_nchw  # noqa: E402

CONV = {1: fc.conv1d, 2: fc.conv2d, 3: fc.conv3d}
CONVOLVE = {1: fc.convolve1d, 2: convolve2d_nchw, 3: fc.convolve3d}
MAXP = {1: fc.max_pool1d, 2: fc.max_pool2d, 3: fc.max_pool3d}
AVGP = {1: fc.avg_pool1d, 2: fc.avg_pool2d, 3: fc.avg_pool3d}
MODES = ("zeros", "reflect", "replicate", "circular")
SPATIAL = {1: (23,), 2: (13, 11), 3: (7, 8, 9)}


@pytest.fixture(autouse=True)
def synchronous():
    """One thread per graph: the machine is shared, and failures are easier to read."""
    with dask.config.set(scheduler="synchronous"):
        yield


def rand(rng, shape, dtype=np.float64):
    return rng.standard_normal(shape).astype(dtype)


def computed(y):
    assert isinstance(y, da.Array)
    return y.compute()


# --- the chunk arithmetic ----------------------------------------------------------------


def test_overlap_chunks_hand_cases():
    # 3-tap valid window on 10 elements, wanted chunks of 3: blocks need a 2-element halo
    assert overlap_chunks(10, 8, 1, 0, 2, [3, 6]) == ((3, 3, 4), (3, 3, 2), 2)
    # k=3, stride 2, padding 1 (pooling): block 1 starts where window 3 starts (3*2 - 1)
    assert overlap_chunks(11, 6, 2, 1, 2, [4, 8]) == ((5, 4, 2), (3, 2, 1), 1)
    # 1-element chunks with a 2-element halo are merged to 2; the last one is kept >= 2
    assert overlap_chunks(7, 5, 1, 0, 2, range(1, 7)) == ((2, 2, 3), (2, 2, 1), 2)
    # stride larger than the window: no halo at all
    assert overlap_chunks(12, 4, 3, 0, 1, [3, 6, 9]) == ((3, 3, 3, 3), (1, 1, 1, 1), 0)


@given(n=st.integers(1, 40), k=st.integers(1, 5), s=st.integers(1, 4), d=st.integers(1, 3),
       lead=st.integers(0, 3), cuts=st.lists(st.integers(0, 45), max_size=8))
def test_overlap_chunks_blocks_hold_their_windows(n, k, s, d, lead, cuts):
    """Every output's window lies inside its block plus the halo (or the array's end)."""
    reach = d * (k - 1)
    out = (n + 2 * lead - reach - 1) // s + 1
    if out < 1:
        return
    ins, outs, halo = overlap_chunks(n, out, s, lead, reach, cuts)
    assert sum(ins) == n and sum(outs) == out and len(ins) == len(outs)
    assert min(outs) >= 1 and (len(ins) == 1 or min(ins) >= max(1, halo))
    a0, o0 = np.cumsum((0,) + ins), np.cumsum((0,) + outs)
    for j in range(len(ins)):
        lo, hi = a0[j], min(n, a0[j + 1] + halo)
        first, last = o0[j] * s - lead, (o0[j + 1] - 1) * s - lead + reach
        assert lo == max(0, first) or j == 0
        assert last < hi or hi == n


# --- convolution: equal to the in-memory call --------------------------------------------


@pytest.mark.parametrize("nsp", [1, 2, 3])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_conv_every_rank_and_padding_mode_bit_identical(nsp, mode, dtype):
    rng = np.random.default_rng(nsp * 10 + MODES.index(mode))
    x = rand(rng, (2, 4) + SPATIAL[nsp], dtype)
    w = rand(rng, (6, 2) + (3,) * nsp, dtype)
    b = rand(rng, (6,), dtype)
    args = dict(stride=(2,) + (1,) * (nsp - 1), padding=2, dilation=(1,) * (nsp - 1) + (2,),
                groups=2, padding_mode=mode, algorithm="direct")
    want = CONV[nsp](x, w, b, **args)
    one_pixel = (1,) * min(nsp, 2) + (8,) * (nsp - 2)  # 3-D: two 1-wide axes keep it fast
    for chunks in [(1, 3) + (5,) * nsp, (2, 1) + one_pixel, (1, 4) + (4, 7, 2)[:nsp]]:
        got = computed(CONV[nsp](da.from_array(x, chunks=chunks), w, b, **args))
        assert got.dtype == dtype
        np.testing.assert_array_equal(got, want, err_msg=f"chunks={chunks}")


@pytest.mark.parametrize("padding", [0, "same", "full", "valid", ((0, 3), (2, 1)), (1, 0)])
def test_conv_padding_forms_and_convolve(padding):
    rng = np.random.default_rng(1)
    x = rand(rng, (3, 17, 14))  # unbatched (C, H, W)
    w = rand(rng, (2, 3, 4, 3))
    xd = da.from_array(x, chunks=(3, 4, 5))
    for mode in ("zeros", "reflect"):
        args = dict(padding=padding, padding_mode=mode, algorithm="direct")
        np.testing.assert_array_equal(computed(fc.conv2d(xd, w, **args)),
                                      fc.conv2d(x, w, **args))
        np.testing.assert_array_equal(computed(convolve2d_nchw(xd, w, **args)),
                                      convolve2d_nchw(x, w, **args))


@given(data=st.data())
def test_conv_random_shapes_and_chunkings(data):
    nsp = data.draw(st.sampled_from([1, 2]), "nsp")
    groups = data.draw(st.sampled_from([1, 2]), "groups")
    k = data.draw(st.tuples(*[st.integers(1, 4)] * nsp), "kernel")
    s = data.draw(st.tuples(*[st.integers(1, 3)] * nsp), "stride")
    d = data.draw(st.tuples(*[st.integers(1, 2)] * nsp), "dilation")
    mode = data.draw(st.sampled_from(MODES), "mode")
    pads = data.draw(st.tuples(*[st.integers(0, 2)] * nsp), "padding")
    spatial = tuple(
        data.draw(st.integers(max(dd * (kk - 1) + 1, p + 1), 16), "n")
        for kk, dd, p in zip(k, d, pads, strict=True)
    )
    chunks = tuple(data.draw(st.integers(1, n), "chunk") for n in spatial)
    flip = data.draw(st.booleans(), "flip")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16), "seed"))
    x = rand(rng, (2, 2 * groups) + spatial)
    w = rand(rng, (2 * groups, 2) + k)
    op = (CONVOLVE if flip else CONV)[nsp]
    args = dict(stride=s, padding=pads, dilation=d, groups=groups, padding_mode=mode,
                algorithm="direct")
    got = computed(op(da.from_array(x, chunks=(1, 1) + chunks), w, None, **args))
    np.testing.assert_array_equal(got, op(x, w, None, **args))


def test_conv_other_algorithms_and_dtypes():
    rng = np.random.default_rng(2)
    x = (rng.random((1, 3, 20, 18)) * 255).astype(np.uint8)
    w = rand(rng, (8, 3, 3, 3), np.float32)
    xd = da.from_array(x, chunks=(1, 3, 7, 6))
    for algorithm in ("auto", "gemm", "fft"):
        got = computed(fc.conv2d(xd, w, padding=1, algorithm=algorithm))
        want = fc.conv2d(x, w, padding=1, algorithm=algorithm)
        assert got.dtype == want.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-3)
    # a Dask weight and bias are small: they are computed once, while building the graph
    b = rand(rng, (8,), np.float32)
    got = computed(fc.conv2d(xd, da.from_array(w), da.from_array(b), algorithm="direct"))
    np.testing.assert_array_equal(got, fc.conv2d(x, w, b, algorithm="direct"))


def test_conv_seed_example():
    x = da.from_array(np.arange(9.0).reshape(1, 3, 3), chunks=(1, 2, 1))
    np.testing.assert_array_equal(computed(fc.conv2d(x, [[[[0.0, 1.0], [2.0, 3.0]]]]))[0],
                                  [[19, 25], [37, 43]])


def test_conv_nan_and_inf_stay_where_they_are():
    x = np.zeros((1, 1, 12, 12))
    x[0, 0, 3, 9], x[0, 0, 8, 2] = np.nan, np.inf
    w = np.ones((1, 1, 3, 3))
    got = computed(fc.conv2d(da.from_array(x, chunks=5), w, padding=1))
    np.testing.assert_array_equal(got, fc.conv2d(x, w, padding=1))
    assert np.isnan(got).sum() == 9 and np.isinf(got).sum() == 9


# --- pooling -----------------------------------------------------------------------------


@pytest.mark.parametrize("nsp", [1, 2, 3])
@pytest.mark.parametrize("ceil_mode", [False, True])
def test_max_pool_values_and_indices(nsp, ceil_mode):
    rng = np.random.default_rng(nsp)
    x = rand(rng, (2, 3) + SPATIAL[nsp])
    x[..., 1] = x[..., 2]  # ties: the first maximum wins, as in memory
    args = dict(kernel_size=3, stride=2, padding=1, dilation=(1,) * (nsp - 1) + (2,),
                ceil_mode=ceil_mode, return_indices=True)
    want, want_idx = MAXP[nsp](x, **args)
    for chunks in [(1, 2) + (4,) * nsp, (2, 3) + (1,) * nsp]:
        y, idx = MAXP[nsp](da.from_array(x, chunks=chunks), **args)
        np.testing.assert_array_equal(computed(y), want)
        np.testing.assert_array_equal(computed(idx), want_idx)
        assert idx.dtype == np.int64
    y = MAXP[nsp](da.from_array(x, chunks=3), 2)
    np.testing.assert_array_equal(computed(y), MAXP[nsp](x, 2))


@pytest.mark.parametrize("nsp", [1, 2, 3])
@pytest.mark.parametrize("count_include_pad", [True, False])
def test_avg_pool_divisors_at_the_global_borders(nsp, count_include_pad):
    rng = np.random.default_rng(nsp + 5)
    x = rand(rng, (1, 2) + SPATIAL[nsp], np.float32)
    xd = da.from_array(x, chunks=(1, 1) + (3, 2, 5)[:nsp])
    for args in (dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
                 dict(kernel_size=2, padding=1), dict(kernel_size=3, stride=1, padding=1,
                                                      divisor_override=7)):
        want = AVGP[nsp](x, count_include_pad=count_include_pad, **args)
        got = computed(AVGP[nsp](xd, count_include_pad=count_include_pad, **args))
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, want, err_msg=str(args))


@given(data=st.data())
def test_pool_random_shapes_and_chunkings(data):
    k = data.draw(st.tuples(st.integers(1, 4), st.integers(1, 4)), "kernel")
    s = data.draw(st.tuples(st.integers(1, 3), st.integers(1, 3)), "stride")
    p = tuple(data.draw(st.integers(0, kk // 2), "pad") for kk in k)
    ceil_mode = data.draw(st.booleans(), "ceil")
    spatial = tuple(data.draw(st.integers(kk, 15), "n") for kk in k)
    chunks = tuple(data.draw(st.integers(1, n), "chunk") for n in spatial)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16), "seed"))
    x = rand(rng, (2,) + spatial)  # unbatched (C, H, W)
    xd = da.from_array(x, chunks=(1,) + chunks)
    args = dict(stride=s, padding=p, ceil_mode=ceil_mode)
    y, idx = fc.max_pool2d(xd, k, return_indices=True, **args)
    want, want_idx = fc.max_pool2d(x, k, return_indices=True, **args)
    np.testing.assert_array_equal(computed(y), want)
    np.testing.assert_array_equal(computed(idx), want_idx)
    np.testing.assert_array_equal(computed(fc.avg_pool2d(xd, k, **args)),
                                  fc.avg_pool2d(x, k, **args))


# --- laziness, errors --------------------------------------------------------------------


def test_results_are_lazy_until_compute():
    calls = []

    def source(block):
        calls.append(block.shape)
        return block

    x = np.random.default_rng(3).standard_normal((1, 2, 12, 10))
    xd = da.from_array(x, chunks=(1, 2, 5, 5)).map_blocks(source, meta=x[:0, :0, :0, :0])
    y = fc.conv2d(xd, np.ones((3, 2, 3, 3)), padding=1, padding_mode="reflect")
    p = fc.max_pool2d(xd, 2)
    assert isinstance(y, da.Array) and isinstance(p, da.Array)
    assert y.shape == (1, 3, 12, 10) and y.dtype == np.float64 and p.shape == (1, 2, 6, 5)
    assert calls == []  # nothing computed while the graphs were built
    np.testing.assert_array_equal(y.compute(), fc.conv2d(x, np.ones((3, 2, 3, 3)), padding=1,
                                                         padding_mode="reflect"))
    assert len(calls) > 0


def test_importing_fastconv_does_not_import_dask():
    code = "import sys, fastconv; print(sorted(m for m in sys.modules if m.startswith('dask')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_errors_are_raised_while_building_the_graph():
    xd = da.zeros((1, 3, 8, 8), chunks=4)
    with pytest.raises(ValueError, match=r"conv2d: channel mismatch: x has C=3 but "
                                         r"weight.shape\[1\] \* groups = 2"):
        fc.conv2d(xd, np.ones((4, 2, 3, 3)))
    with pytest.raises(ValueError, match="conv2d: reflect padding"):
        fc.conv2d(xd, np.ones((1, 3, 3, 3)), padding=8, padding_mode="reflect")
    with pytest.raises(ValueError, match="max_pool2d: padding=.* must be at most half"):
        fc.max_pool2d(xd, 2, padding=2)
    with pytest.raises(TypeError, match="conv2d: x has dtype complex128"):
        fc.conv2d(xd.astype(complex), np.ones((1, 3, 3, 3)))
    with pytest.raises(ValueError, match="conv2d: invalid algorithm 'winograd!'"):
        fc.conv2d(xd, np.ones((1, 3, 3, 3)), algorithm="winograd!")
    unknown = xd[xd[:, 0, 0, 0] > 0]  # boolean indexing: unknown batch chunk sizes
    with pytest.raises(ValueError, match="conv2d: x is a Dask array with unknown chunk sizes"):
        fc.conv2d(unknown, np.ones((1, 3, 3, 3)))


# --- a cluster of worker processes -------------------------------------------------------


@pytest.mark.cluster
@pytest.mark.filterwarnings("ignore:Port .* is already in use:UserWarning")
@pytest.mark.filterwarnings("ignore:.*unclosed.*:ResourceWarning")
def test_local_cluster_of_worker_processes():
    distributed = pytest.importorskip("distributed", reason="dask.distributed not installed")
    rng = np.random.default_rng(4)
    x = rand(rng, (4, 2, 40, 36), np.float32)
    w = rand(rng, (3, 2, 5, 5), np.float32)
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                  host="127.0.0.1", dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        xd = da.from_array(x, chunks=(2, 2, 9, 8))
        y = fc.conv2d(xd, w, padding="same", padding_mode="circular", algorithm="direct")
        p = fc.max_pool2d(xd, 3, stride=2, padding=1)
        got_y, got_p = client.compute([y, p], sync=True)
        # kernels are compiled at most once per worker process (one signature), not per task
        sigs = client.run(_compiled_correlate_signatures)
    np.testing.assert_array_equal(got_y, fc.conv2d(x, w, padding="same", padding_mode="circular",
                                                   algorithm="direct"))
    np.testing.assert_array_equal(got_p, fc.max_pool2d(x, 3, stride=2, padding=1))
    # (a worker that happened to run no conv task has compiled nothing; tiny blocks may run
    # the serial core, larger ones the parallel core: each at most one signature)
    assert len(sigs) == 2
    assert all(par <= 1 and ser <= 1 for par, ser in sigs.values())
    assert sum(par + ser for par, ser in sigs.values()) >= 1


def _compiled_correlate_signatures() -> tuple[int, int]:
    from fastconv.cpu import conv

    return len(conv.correlate.signatures), len(conv.correlate_serial.signatures)


# --- out of core: .npy file in, .npy file out --------------------------------------------


def test_convolve_file_equals_in_memory(tmp_path):
    rng = np.random.default_rng(5)
    x = rand(rng, (2, 3, 30, 27), np.float32)
    np.save(tmp_path / "x.npy", x)
    w, b = rand(rng, (4, 3, 3, 5), np.float32), rand(rng, (4,), np.float32)
    seen = []
    out = ooc.convolve_file(tmp_path / "x.npy", tmp_path / "y.npy", w, b, stride=(1, 2),
                            padding=2, padding_mode="replicate", chunks=(8, 11),
                            progress=lambda done, total: seen.append((done, total)),
                            algorithm="direct", scheduler="threads")
    assert out == tmp_path / "y.npy"
    want = fc.conv2d(x, w, b, stride=(1, 2), padding=2, padding_mode="replicate",
                     algorithm="direct")
    np.testing.assert_array_equal(np.load(out), want)
    assert seen[-1][0] == seen[-1][1] and [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy", "y.npy"]  # no temp left


def test_convolve_file_plain_image_and_flip(tmp_path):
    img = np.arange(63.0).reshape(7, 9) ** 1.5
    np.save(tmp_path / "img.npy", img)
    k = np.array([[[[1.0, -2.0], [0.5, 3.0]]]])
    ooc.convolve_file(tmp_path / "img.npy", tmp_path / "e.npy", k, flip=True, chunks=3)
    np.testing.assert_array_equal(np.load(tmp_path / "e.npy"), convolve2d_nchw(img[None], k)[0])


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_pool_file_equals_in_memory(tmp_path, mode):
    x = rand(np.random.default_rng(6), (3, 25, 19))
    np.save(tmp_path / "x.npy", x)
    ooc.pool_file(tmp_path / "x.npy", tmp_path / "p.npy", 3, stride=2, padding=1,
                  mode=mode, ceil_mode=True, chunks=5)
    op = fc.max_pool2d if mode == "max" else fc.avg_pool2d
    np.testing.assert_array_equal(np.load(tmp_path / "p.npy"),
                                  op(x, 3, 2, 1, ceil_mode=True))


@pytest.mark.parametrize("shape", [(7,), (5, 6), (3, 4, 5), (2, 3, 4, 5)])
def test_npy_reader_reads_any_region(tmp_path, shape):
    rng = np.random.default_rng(len(shape))
    a = rand(rng, shape, np.float32)
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "f.npy", np.asfortranarray(a))
    reader, fortran = ooc.NpyReader(tmp_path / "a.npy"), ooc.NpyReader(tmp_path / "f.npy")
    assert (reader.shape, reader.dtype, reader.ndim) == (shape, np.float32, len(shape))
    for _ in range(50):
        lo = [int(rng.integers(0, n)) for n in shape]
        idx = tuple(slice(i, int(rng.integers(i, n + 1))) for i, n in zip(lo, shape, strict=True))
        np.testing.assert_array_equal(reader[idx], a[idx])
        np.testing.assert_array_equal(fortran[idx], a[idx])
    np.testing.assert_array_equal(reader[1], a[1])


def test_failure_mid_run_leaves_no_output(tmp_path):
    np.save(tmp_path / "x.npy", np.ones((1, 1, 40, 40)))
    np.save(tmp_path / "old.npy", np.zeros(3))

    def interrupt(done, total):
        if done >= total // 3:
            raise KeyboardInterrupt("stopped by the test")

    for out in ("new.npy", "old.npy"):
        with pytest.raises(KeyboardInterrupt, match="stopped by the test"):
            ooc.convolve_file(tmp_path / "x.npy", tmp_path / out, np.ones((1, 1, 3, 3)),
                              chunks=5, progress=interrupt)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.npy", "x.npy"]
    np.testing.assert_array_equal(np.load(tmp_path / "old.npy"), np.zeros(3))  # untouched


def test_out_of_core_errors(tmp_path):
    np.save(tmp_path / "x.npy", np.ones((4, 4)))
    with pytest.raises(ValueError, match="convolve_file: output_path .* is the input"):
        ooc.convolve_file(tmp_path / "x.npy", tmp_path / "x.npy", np.ones((1, 1, 2, 2)))
    with pytest.raises(FileNotFoundError, match="pool_file: input_path .* is not a file"):
        ooc.pool_file(tmp_path / "missing.npy", tmp_path / "y.npy", 2)
    with pytest.raises(ValueError, match="pool_file: invalid mode 'min'"):
        ooc.pool_file(tmp_path / "x.npy", tmp_path / "y.npy", 2, mode="min")
    with pytest.raises(ValueError, match=r"convolve_file: chunks must be >= 1, got 0"):
        ooc.convolve_file(tmp_path / "x.npy", tmp_path / "y.npy", np.ones((1, 1, 2, 2)),
                          chunks=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy"]


CHILD = textwrap.dedent("""
    import json, resource, sys
    import numpy as np
    from fastconv.ooc import convolve_file
    src, dst, warm = sys.argv[1:4]
    w = np.full((1, 1, 5, 5), 1 / 25, np.float32)
    convolve_file(warm, dst, w, chunks=256)  # imports and compiled kernels: the baseline
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    convolve_file(src, dst, w, chunks=512)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"before_kib": before, "after_kib": after}))
""")


def test_out_of_core_peak_memory_is_far_below_the_file_size(tmp_path):
    """A 96 MiB .npy with a memory cap of a quarter of it: the run's peak RSS, above the
    process's baseline (Python, NumPy, Numba, Dask, compiled kernels), stays under the cap."""
    shape = (4096, 6144)  # float32: 96 MiB
    src = np.lib.format.open_memmap(tmp_path / "big.npy", mode="w+", dtype=np.float32,
                                    shape=shape)
    rng = np.random.default_rng(7)
    for r in range(0, shape[0], 512):
        src[r:r + 512] = rng.random((512, shape[1]), dtype=np.float32)
    src.flush()
    del src
    np.save(tmp_path / "warm.npy", np.ones((300, 300), np.float32))
    run = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "big.npy"),
                          str(tmp_path / "out.npy"), str(tmp_path / "warm.npy")],
                         capture_output=True, text=True, env={**os.environ})
    assert run.returncode == 0, run.stderr
    rss = json.loads(run.stdout.strip().splitlines()[-1])
    file_kib = (tmp_path / "big.npy").stat().st_size // 1024
    cap_kib = file_kib // 4
    assert rss["after_kib"] - rss["before_kib"] < cap_kib, (rss, file_kib)
    out = np.load(tmp_path / "out.npy", mmap_mode="r")
    assert out.shape == (shape[0] - 4, shape[1] - 4)
    x = np.load(tmp_path / "big.npy", mmap_mode="r")
    for r, c in [(0, 0), (1000, 3000), (shape[0] - 40, shape[1] - 40)]:  # seams included
        want = fc.conv2d(np.array(x[None, r:r + 40, c:c + 40]),
                         np.full((1, 1, 5, 5), 1 / 25, np.float32))[0]
        np.testing.assert_array_equal(out[r:r + 36, c:c + 36], want)

