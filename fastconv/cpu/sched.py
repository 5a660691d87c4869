"""Dynamic work sharing inside a Numba parallel region: :func:`claim`.

A ``prange`` loop splits its iterations evenly between the threads before they start
(static schedule), so a region lasts as long as its slowest thread. On a shared VM the
two vCPUs often run at different speeds: W3's 16 blocks took 0.37-0.44 ms each on one
thread and 0.42-0.49 ms on the other in the same call, and the faster thread then idled
0.2-0.4 ms of a 3.5 ms call (traced with the cycle counter, EPYC Zen 4, 2026-12-03).

The claiming form gives each thread one ``prange`` iteration, in which it takes the next
unclaimed work item until none is left::

    counter = np.zeros(1, np.int64)
    for _ in prange(scratch.shape[0]):  # one row per thread: scratch_rows(need, dtype)
        i = claim(counter)
        while i < n:
            work(i)  # in scratch[get_thread_id()]
            i = claim(counter)

Which thread runs an item changes from call to call; what an item computes does not (a
fixed sequence of operations on its own inputs and outputs), so results stay
bit-identical for any thread count and any interleaving. (The thread count comes from
the scratch rows: ``numba.get_num_threads()`` called inside a kernel would keep Numba
from caching it.) Claim only inside the loop: a kernel that reads ``counter[0]`` after
it may get the value stored before it (LLVM forwards that store across the region).
"""

from __future__ import annotations

from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


@intrinsic
def claim(typingctx, counter):
    """``counter[0]`` before adding 1 to it, atomically (``counter``: a 1-D int64 array
    shared by the threads of a region): the index of the next unclaimed work item."""
    if not (isinstance(counter, types.Array) and counter.ndim == 1
            and counter.dtype == types.int64):
        return None

    def codegen(context, builder, sig, args):
        aty = sig.args[0]
        ary = context.make_array(aty)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, aty, ary,
                                       [context.get_constant(types.intp, 0)])
        return builder.atomic_rmw("add", ptr, context.get_constant(types.int64, 1),
                                  "monotonic")

    return types.int64(counter), codegen
