"""CPU kernels for 2-D convolution (layer: ``numbanet.conv``).

Every convolution is lowered to matrix products so that the expensive part runs
in BLAS.  Two lowerings are used.  The operation-level functions at the end
(``conv2d``, ``conv2d_backward_input``, ``conv2d_backward_weight``, those of
``kernels.cuda.conv``) choose the lowering, size the tasks and take the workspace.

**Row-shift (vertical stride 1, the common case).**  Only the kw horizontal taps
are unrolled (``_im2row``), a 3x3 kernel copies the input 3 times instead of 9::

    rows[(c, j), (n, h, ow)] = x_pad[n, c, h, ow*sw + j]                 (C*kw, n*Hp*Wo), h < Hp
    W_i[k, (c, j)]           = W[k, c, i, j]                              (K, C*kw), one per tap i
    y[n, k, (oh, ow)]        = b[k] + Σ_i W_i @ rows[:, (n, oh + i, ow)]  (K, Ho*Wo) per sample

Vertical tap i reads the rows of x_pad shifted down by i: in ``rows`` that is the window of
columns starting i*Wo further on, so each tap is one GEMM on a column window of ``rows``
(BLAS takes the row stride), added straight into the sample's NCHW output (beta = 1, the
bias written first).  No product is computed for the padded rows, and nothing is summed
or rearranged afterwards.  dW uses the same windows: dW_i += dy[n] @ rows[:, (n, i + oh, ow)]ᵀ.

**im2col (vertical stride > 1)**::

    cols[(c, i, j), (n, oh, ow)] = x_pad[n, c, oh*sh + i, ow*sw + j]  (C*kh*kw, n*Ho*Wo)
    Y[k, (n, oh, ow)]            = W[k, (c, i, j)] @ cols              (K, n*Ho*Wo)

and backward dW = dY @ colsᵀ, dcols = Wᵀ @ dY followed by ``_col2im``, which gathers
dcols back onto the input plane by plane (no element is written twice).  Neither lowering
builds a padded copy of the input: x_pad is read from x, with zeros where it is padding.

**One parallel region per convolution.**  The batch is cut into *tasks* of a few
consecutive samples (``per_task``, chosen by ``_per_task`` so that a task's matrices
take about a megabyte).  Parallel iteration s of ``slots`` takes tasks s, s + slots,
...; for each it lowers its samples into its own slice of ``workspace``, multiplies
with one BLAS call (``blas.gemm``: MKL or OpenBLAS, see ``blas.blas_backend``) and writes
its part of the result while the data is still in that core's cache.  The operations keep each
BLAS call on one thread (``numbanet.kernels.cpu.blas.one_thread_per_call``): the parallelism is
across tasks.
Measured on 2 cores against a parallel kernel per step with a 2-thread GEMM in
between: the thread pool starts once per convolution instead of three times per
chunk, and BLAS's own worker threads, which spin for ~0.1 s after every GEMM and
then starve Numba's threads, never run.

Every product's task is a small function (``_row_shift_forward_task``, ...) and one parallel
driver, ``conv_tasks``, runs the tasks of any of them (the 1x1 products, which lower nothing,
have their own, ``pointwise_tasks``).  The task functions are inlined into the driver by Numba
(``inline="always"``) rather than compiled on their own: Numba compiles a parallel function four
times over (its loop body and three wrappers, each with a copy of every helper it calls), so one
driver and no intermediate functions compile ``gemm``, ``_im2row`` and ``_im2col`` far fewer
times.  Measured with ``bench/startup.py`` (ResNet-20's first step, cold cache), on the products
of the time: 16.7 s with a driver per product, 14.2 s with the one driver.

Inner loops index views that start at 0 (``dst[start:stop]``, then ``dst[t]``): with a
runtime offset inside the index (``dst[start + t] = src[offset + t]``) LLVM's vector loop was
measured 3x slower on these copies.

Which samples form a task depends only on ``per_task`` (not on the thread count),
and weight gradients are summed into a fixed number of partial sums (one per slot,
``slots`` = ``WEIGHT_GRAD_GROUPS``) that the caller adds in order, so every result is
the same on 1 or 2 threads.
"""
import numpy as np
from numba import get_num_threads, njit, prange

from ..._workspace import scratch
from .blas import blas_backend, gemm, one_thread_per_call

# Row-shift products come in two forms: per-sample GEMMs, one per vertical tap, on windows of the
# rows (``_row_shift_forward_task``: no padded rows computed, no pass afterwards, but GEMMs with
# only K rows), or one stacked GEMM per task with kh*K rows (``_row_shift_stacked_*``).  Which is
# faster depends on the BLAS and on K, measured with bench/conv_cpu.py and bench/resnet20_convs.py:
# with MKL, per tap from K = 64 on (the 16x16, 128-channel forward 17.3 -> 14.1 ms; ResNet-20's
# 8x8 64-channel layers 5.2 -> 4.3 ms), stacked below (ResNet-20's 16-channel dW 6.1 vs 8.0 ms);
# with OpenBLAS, whose GEMM is slow on few rows, stacked everywhere (32x32 64-channel forward
# 18.8 vs 19.8 ms, dX 18.4 vs 21.9 ms).
PER_TAP_FROM_CHANNELS = 64


def _per_tap(channels_out: int) -> bool:
    """Whether a row-shift product with this many output channels uses the per-tap GEMMs."""
    return blas_backend() == "mkl" and channels_out >= PER_TAP_FROM_CHANNELS


# Partial sums of a weight gradient: a fixed count, so that the summation order (and so
# the float result) does not depend on how many threads run the groups.
WEIGHT_GRAD_GROUPS = 8


@njit(parallel=True, cache=True, fastmath={"reassoc"})
def channel_sum(dy, dbias):
    """dbias[k] = Σ_{n,p} dy[n, k, p] for dy (N, K, P), one channel per iteration (sum split into
    vector lanes by ``reassoc``, as in ``kernels.cpu.norm``)."""
    n_batch, channels, positions = dy.shape
    for k in prange(channels):
        total = 0.0
        for n in range(n_batch):
            src = dy[n, k]
            for p in range(positions):
                total += src[p]
        dbias[k] = total


# ---------------------------------------------------------------------------------------
# Serial pieces: each handles the samples n0 <= n < n1 of one task.
# ---------------------------------------------------------------------------------------

@njit(cache=True)
def _copy(dst, src):
    """dst[t] = src[t] for two 1-D views of one length (both indexed from 0: see the module docstring)."""
    for t in range(dst.shape[0]):
        dst[t] = src[t]


@njit(cache=True)
def _zero(dst):
    for t in range(dst.shape[0]):
        dst[t] = 0


@njit(cache=True)
def _fill_row(row, lo, hi, src, sw):
    """row[:lo] = 0, row[lo:hi] = src[0], src[sw], ... (hi - lo numbers), row[hi:] = 0."""
    _zero(row[:lo])
    _zero(row[hi:])
    inside = row[lo:hi]
    for t in range(hi - lo):
        inside[t] = src[t * sw]


@njit(cache=True)
def _inside_columns(j, pw, sw, wo, width):
    """(lo, hi, first): output columns lo <= ow < hi of horizontal tap j read x inside the
    padding, starting at x column ``first`` = lo*sw + j - pw; the others read zeros."""
    lo = 0
    while lo < wo and lo * sw + j < pw:
        lo += 1
    hi = lo
    while hi < wo and hi * sw + j < width + pw:
        hi += 1
    return lo, hi, lo * sw + j - pw


@njit(cache=True)
def _im2row(x, n0, n1, ph, pw, kw, sw, wo, rows):
    """rows[c*kw + j, ((n-n0)*Hp + h)*wo + ow] = x_pad[n, c, h, ow*sw + j], x_pad = x padded by (ph, pw).

    Every padded row h < Hp is copied (not only the output rows), so that the vertical taps
    are plain column offsets i*wo.  The padding is written as zeros on the fly.

    When the output is as wide as the input (stride 1, "same" padding: the common 3x3 layer),
    the H rows of one tap are x's plane shifted by a constant j - pw in flat order: one long
    copy, after which the columns that wrapped around into the neighbouring row are zeroed
    (row-by-row copies pay the loop overhead for every row of 8-32 numbers).  Everything that
    depends only on the tap is computed once per tap, not per sample, and x is viewed as planes
    once: measured against per-sample set-up, one thread, 1.27 -> 0.43 ms for a batch of
    128 x 64 x 8 x 8 and 2.45 -> 1.5-1.9 ms for 64 x 64 x 32 x 32.
    """
    n_all, channels, height, width = x.shape
    hp = height + 2 * ph
    block = hp * wo
    plane_size = height * width
    planes = x.reshape((n_all, channels, plane_size))
    for c in range(channels):
        for j in range(kw):
            lo, hi, first = _inside_columns(j, pw, sw, wo, width)
            dst = rows[c * kw + j]
            if sw == 1 and wo == width:
                # dst[start + d] = plane[d + shift] where that index is inside the plane; the zeros
                # before (top padding rows) and after (bottom ones) are one run each
                shift = j - pw
                lo_flat = max(0, -shift)
                hi_flat = min(plane_size, plane_size - shift)
                for n in range(n0, n1):
                    top = (n - n0) * block
                    start = top + ph * wo
                    _zero(dst[top:start + lo_flat])
                    _zero(dst[start + hi_flat:top + block])
                    _copy(dst[start + lo_flat:start + hi_flat], planes[n, c, lo_flat + shift:])
                    body = dst[start:start + plane_size]
                    for t in range(lo):  # the few columns that wrapped around
                        for h in range(height):
                            body[h * wo + t] = 0
                    for t in range(hi, wo):
                        for h in range(height):
                            body[h * wo + t] = 0
                continue
            for n in range(n0, n1):
                top = (n - n0) * block
                start = top + ph * wo
                _zero(dst[top:start])
                _zero(dst[start + height * wo:top + block])
                for h in range(height):
                    _fill_row(dst[start + h * wo:start + (h + 1) * wo], lo, hi, x[n, c, h, first:], sw)


@njit(cache=True)
def _sum_row_shifts(z, n0, n1, kh, hp, wo, bias, out):
    """out[n, k, oh*wo + ow] = bias[k] + Σ_{i<kh} z[i*K + k, ((n-n0)*hp + oh + i)*wo + ow].

    z (kh*K, (n1-n0)*hp*wo) is a task's row-shift GEMM output, out (N, K, Ho*wo) the NCHW
    result.  The kh terms are added in the fixed order i = 0, 1, ...
    """
    channels, positions = out.shape[1], out.shape[2]
    block = hp * wo
    for n in range(n0, n1):
        offset = (n - n0) * block
        for k in range(channels):
            dst = out[n, k]
            b = bias[k]
            first = z[k, offset:offset + positions]
            for p in range(positions):
                dst[p] = first[p] + b
            for i in range(1, kh):
                src = z[i * channels + k, offset + i * wo:offset + i * wo + positions]
                for p in range(positions):
                    dst[p] += src[p]


@njit(cache=True)
def _shifted_grad(dy, n0, n1, kh, hp, wo, out):
    """out[i*K + k, ((n-n0)*hp + h)*wo + ow] = dy[n, k, (h - i)*wo + ow] if i <= h < i + Ho, else 0.

    dy (N, K, Ho*wo): the gradient moved down by i rows inside each sample's hp-row block,
    for i = 0..kh-1 stacked, so that dW needs one GEMM with ``_im2row``'s rows.
    """
    channels, positions = dy.shape[1], dy.shape[2]
    block = hp * wo
    for i in range(kh):
        for k in range(channels):
            dst = out[i * channels + k]
            for n in range(n0, n1):
                offset = (n - n0) * block
                start = offset + i * wo
                _zero(dst[offset:start])
                _copy(dst[start:start + positions], dy[n, k])
                _zero(dst[start + positions:offset + block])


@njit(cache=True)
def _phase_split(plane, sh, sw, first_rv, first_rh, kh, kw, phases):
    """phases[rv, rh, a, q] = plane[a*sh + rv, q*sw + rh], or 0 past the plane's edge: the (H, W) plane's
    rows and columns grouped by their remainders mod the strides, so that every tap of a strided
    window reads a contiguous block of one phase.  Only the phases a kh x kw window reads are
    written: the remainders first_rv, first_rv + 1, ... (mod sh) of its kh rows, and likewise for
    the columns (a 1x1 stride-2 window reads one phase of four)."""
    height, width = plane.shape
    for di in range(min(kh, sh)):
        rv = (first_rv + di) % sh
        for dj in range(min(kw, sw)):
            rh = (first_rh + dj) % sw
            inside = (width - rh + sw - 1) // sw  # columns q with q*sw + rh < width
            for a in range(phases.shape[2]):
                dst = phases[rv, rh, a]
                h = a * sh + rv
                if h >= height:
                    _zero(dst)
                    continue
                src = plane[h, rh:]
                for q in range(inside):
                    dst[q] = src[q * sw]
                _zero(dst[inside:])


@njit(cache=True)
def _im2col(x, n0, n1, ph, pw, kh, kw, sh, sw, ho, wo, cols):
    """cols[(c*kh + i)*kw + j, (n-n0)*ho*wo + oh*wo + ow] = x_pad[n, c, oh*sh + i, ow*sw + j].

    x (N, C, H, W) is the unpadded input; x_pad (padded by ph rows and pw columns of zeros)
    is never built: entries that fall in the padding are written as zeros.

    Each plane is first split into its stride phases (``_phase_split``, one pass).  Tap (i, j)
    then reads one phase, P = phases[(i-ph) mod sh, (j-pw) mod sw], shifted by
    (dv, dh) = ((i-ph) // sh, (j-pw) // sw): cols[tap, (oh, ow)] = P[oh + dv, ow + dh].  When a phase
    is exactly as wide as the output (the usual "same"-padded layer: a 3x3 stride-2 window with
    padding 1 on an even width, a 1x1 stride-2 shortcut, a 7x7 stride-2 stem with padding 3), that
    is one shifted copy of the whole phase in flat order, after which the columns that wrapped
    around into a neighbouring row are zeroed: a few long copies per tap instead of one short one
    per output row.  Measured against row-by-row copies: bench/conv_cpu.py's 3x3 stride-2 forward
    11.4 -> 9.5 ms (2 threads), ResNet-20's 1x1 stride-2 shortcuts 1.5 -> 1.2 and 1.3 -> 0.9 ms
    (bench/resnet20_convs.py, 1 thread).
    """
    channels, height, width = x.shape[1], x.shape[2], x.shape[3]
    positions = ho * wo
    rows_q, cols_q = (height + sh - 1) // sh, (width + sw - 1) // sw
    phases = np.empty((sh, sw, rows_q, cols_q), x.dtype)
    flat_phases = phases.reshape((sh, sw, rows_q * cols_q))
    flat = cols_q == wo
    for c in range(channels):
        for n in range(n0, n1):
            _phase_split(x[n, c], sh, sw, (-ph) % sh, (-pw) % sw, kh, kw, phases)
            for i in range(kh):
                dv = (i - ph) // sh
                for j in range(kw):
                    dh = (j - pw) // sw
                    rv, rh = (i - ph) % sh, (j - pw) % sw
                    dst = cols[(c * kh + i) * kw + j, (n - n0) * positions:(n - n0 + 1) * positions]
                    # output columns lo <= ow < hi read inside the phase, the others padding
                    lo, hi = max(0, -dh), min(wo, cols_q - dh)
                    if flat:
                        shift = dv * wo + dh
                        start = max(0, -shift)
                        stop = min(positions, rows_q * wo - shift)
                        if start >= stop:
                            _zero(dst)
                            continue
                        _zero(dst[:start])
                        _zero(dst[stop:])
                        _copy(dst[start:stop], flat_phases[rv, rh, start + shift:])
                        for t in range(lo):  # the few columns that wrapped around
                            for oh in range(ho):
                                dst[oh * wo + t] = 0
                        for t in range(hi, wo):
                            for oh in range(ho):
                                dst[oh * wo + t] = 0
                        continue
                    for oh in range(ho):
                        row = dst[oh * wo:(oh + 1) * wo]
                        a = oh + dv
                        if a < 0 or a >= rows_q or lo >= hi:
                            _zero(row)
                            continue
                        _zero(row[:lo])
                        _zero(row[hi:])
                        _copy(row[lo:hi], phases[rv, rh, a, lo + dh:])


@njit(cache=True)
def _col2im(dcols, n0, n1, ph, pw, kh, kw, sh, sw, ho, wo, dx):
    """Adjoint of ``_im2col``: dx[n, c, h, w] = Σ of every dcols entry that _im2col copied from x[n, c, h, w].

    Plane by plane, in a fixed order (i, j, oh, ow): no element is shared between tasks.
    Entries that _im2col took from the padding have no input element and are dropped.
    """
    channels, height, width = dx.shape[1], dx.shape[2], dx.shape[3]
    positions = ho * wo
    for n in range(n0, n1):
        for c in range(channels):
            plane = dx[n, c]
            plane[:, :] = 0
            for i in range(kh):
                for j in range(kw):
                    lo, hi, first = _inside_columns(j, pw, sw, wo, width)
                    src = dcols[(c * kh + i) * kw + j]
                    for oh in range(ho):
                        h = oh * sh + i - ph
                        if h < 0 or h >= height:
                            continue
                        offset = (n - n0) * positions + oh * wo
                        row = src[offset + lo:offset + hi]
                        dst = plane[h, first:]
                        for t in range(hi - lo):
                            dst[t * sw] += row[t]


@njit(cache=True)
def _channel_major(a, n0, n1, out):
    """out[k, (n-n0)*P + p] = a[n, k, p]: NCHW (N, K, P) -> a task's GEMM layout (K, n*P)."""
    positions = a.shape[2]
    for k in range(a.shape[1]):
        for n in range(n0, n1):
            offset = (n - n0) * positions
            _copy(out[k, offset:offset + positions], a[n, k])


@njit(cache=True)
def _task_samples(task, per_task, n_batch):
    """(first sample, end sample) of task number ``task``."""
    first = task * per_task
    return first, min(first + per_task, n_batch)


@njit(cache=True)
def _matrix(buffer, rows, cols):
    """A C-contiguous (rows, cols) view of the first rows*cols elements of the 1-D ``buffer``."""
    return buffer[:rows * cols].reshape((rows, cols))


# ---------------------------------------------------------------------------------------
# One task of each convolution product: the samples n0 <= n < n1, lowered into ``ws`` (the
# slot's workspace row), multiplied and written back.  ``conv_tasks`` runs them in parallel.
# ---------------------------------------------------------------------------------------

@njit(inline="always")
def _row_shift_forward_task(x, w_rows, bias, n0, n1, ph, pw, kh, kw, sw, wo, ws, out):
    """out[n] = bias + Σ_i W_i @ rows_n[:, i*wo : i*wo + Ho*wo] for n0 <= n < n1 (vertical stride 1).

    rows (C*kw, (n1-n0)*Hp*wo) = ``_im2row`` of the task's samples, in ``ws``; W_i (K, C*kw) =
    rows i*K..(i+1)*K of w_rows.  Vertical tap i is the column window of rows shifted down by i
    rows, so each tap is one GEMM that adds straight into the NCHW output (beta = 1).
    """
    channels, k = x.shape[1], bias.shape[0]
    hp = x.shape[2] + 2 * ph
    positions = out.shape[2]
    rows = _matrix(ws, channels * kw, (n1 - n0) * hp * wo)
    _im2row(x, n0, n1, ph, pw, kw, sw, wo, rows)
    for n in range(n0, n1):
        dst = out[n]
        for kk in range(k):
            row = dst[kk]
            b = bias[kk]
            for p in range(positions):
                row[p] = b
        first = (n - n0) * hp * wo
        for i in range(kh):
            start = first + i * wo
            gemm(w_rows[i * k:(i + 1) * k], rows[:, start:start + positions], dst, 1.0, np.False_, np.False_)


@njit(inline="always")
def _row_shift_stacked_forward_task(x, w_rows, bias, n0, n1, ph, pw, kh, kw, sw, wo, ws, out):
    """out[n0:n1] = bias + conv(x[n0:n1], W) with one GEMM for the task: z (kh*K, cols) = w_rows @ rows
    over every padded row, then ``_sum_row_shifts`` adds the kh row-shifted blocks of z; ws holds
    rows (C*kw, cols) then z."""
    channels = x.shape[1]
    hp = x.shape[2] + 2 * ph
    columns = (n1 - n0) * hp * wo
    rows = _matrix(ws, channels * kw, columns)
    z = _matrix(ws[channels * kw * columns:], w_rows.shape[0], columns)
    _im2row(x, n0, n1, ph, pw, kw, sw, wo, rows)
    gemm(w_rows, rows, z, 0.0, np.False_, np.False_)
    _sum_row_shifts(z, n0, n1, kh, hp, wo, bias, out)


@njit(inline="always")
def _row_shift_weight_grad_task(dy, x, n0, n1, ph, pw, kh, kw, sw, wo, ws, acc):
    """acc[i*K:(i+1)*K] (K, C*kw) += dy[n] @ rows_n[:, i*wo : i*wo + Ho*wo]ᵀ for every tap i and
    n0 <= n < n1: the adjoint of ``_row_shift_forward_task``, each product accumulated by the GEMM."""
    channels, k = x.shape[1], dy.shape[1]
    hp = x.shape[2] + 2 * ph
    positions = dy.shape[2]
    rows = _matrix(ws, channels * kw, (n1 - n0) * hp * wo)
    _im2row(x, n0, n1, ph, pw, kw, sw, wo, rows)
    for n in range(n0, n1):
        first = (n - n0) * hp * wo
        for i in range(kh):
            start = first + i * wo
            gemm(dy[n], rows[:, start:start + positions], acc[i * k:(i + 1) * k], 1.0, np.False_, np.True_)


@njit(inline="always")
def _row_shift_stacked_weight_grad_task(dy, x, n0, n1, ph, pw, kh, kw, sw, wo, ws, acc):
    """acc (kh*K, C*kw) += dy_shift @ rowsᵀ over the samples n0..n1, one GEMM for the task: the
    kh shifted copies of dy (``_shifted_grad``) stacked, so that the product has kh*K rows (the
    per-sample products of ``_row_shift_weight_grad_task`` have only K, slow for few channels)."""
    channels = x.shape[1]
    hp = x.shape[2] + 2 * ph
    columns = (n1 - n0) * hp * wo
    rows = _matrix(ws, channels * kw, columns)
    shifted = _matrix(ws[channels * kw * columns:], acc.shape[0], columns)
    _im2row(x, n0, n1, ph, pw, kw, sw, wo, rows)
    _shifted_grad(dy, n0, n1, kh, hp, wo, shifted)
    gemm(shifted, rows, acc, 1.0, np.False_, np.True_)


@njit(inline="always")
def _im2col_forward_task(x, w2, bias, n0, n1, ph, pw, kh, kw, sh, sw, ho, wo, ws, out):
    """out[n0:n1] = bias + W (K, C*kh*kw) @ im2col(x[n0:n1]); ws holds cols then y (K, cols)."""
    columns = (n1 - n0) * ho * wo
    depth = w2.shape[1]
    cols = _matrix(ws, depth, columns)
    y = _matrix(ws[depth * columns:], w2.shape[0], columns)
    _im2col(x, n0, n1, ph, pw, kh, kw, sh, sw, ho, wo, cols)
    gemm(w2, cols, y, 0.0, np.False_, np.False_)
    _sum_row_shifts(y, n0, n1, 1, ho, wo, bias, out)  # one "shift": y (K, cols) -> NCHW plus bias


@njit(inline="always")
def _im2col_weight_grad_task(dy, x, n0, n1, ph, pw, kh, kw, sh, sw, ho, wo, ws, acc):
    """acc (K, C*kh*kw) += dy (K, cols) @ im2col(x[n0:n1])ᵀ (the GEMM accumulates, beta = 1)."""
    columns = (n1 - n0) * ho * wo
    grad = _matrix(ws, acc.shape[0], columns)
    cols = _matrix(ws[acc.shape[0] * columns:], acc.shape[1], columns)
    _channel_major(dy, n0, n1, grad)
    _im2col(x, n0, n1, ph, pw, kh, kw, sh, sw, ho, wo, cols)
    gemm(grad, cols, acc, 1.0, np.False_, np.True_)


@njit(inline="always")
def _col2im_input_grad_task(dy, w2t, n0, n1, ph, pw, kh, kw, sh, sw, ho, wo, ws, dx):
    """dx[n0:n1] = col2im(Wᵀ (C*kh*kw, K) @ dy[n0:n1]); ws holds grad (K, cols) then dcols."""
    columns = (n1 - n0) * ho * wo
    grad = _matrix(ws, w2t.shape[1], columns)
    dcols = _matrix(ws[w2t.shape[1] * columns:], w2t.shape[0], columns)
    _channel_major(dy, n0, n1, grad)
    gemm(w2t, grad, dcols, 0.0, np.False_, np.False_)
    _col2im(dcols, n0, n1, ph, pw, kh, kw, sh, sw, ho, wo, dx)


@njit(inline="always")
def _pointwise_forward_task(x, w2, bias, n0, n1, out):
    """out[n] = w2 (K, C) @ x[n] (C, P) + bias for n0 <= n < n1: a 1x1 stride-1 convolution, no copies."""
    for n in range(n0, n1):
        dst = out[n]
        gemm(w2, x[n], dst, 0.0, np.False_, np.False_)
        for k in range(dst.shape[0]):
            b = bias[k]
            row = dst[k]
            for p in range(row.shape[0]):
                row[p] += b


# The products ``pointwise_tasks`` runs.
POINTWISE_FORWARD, POINTWISE_INPUT_GRAD, POINTWISE_WEIGHT_GRAD = 0, 1, 2


@njit(parallel=True, cache=True)
def pointwise_tasks(product, x, dy, w, bias, per_task, slots, out):
    """The 1x1 stride-1 products, which need no lowering, on (N, C, P) arrays: ``conv_tasks``'s
    scheme (tasks of ``per_task`` samples, taken in turn by ``out.shape[0]`` slots for a weight
    gradient, by ``slots`` otherwise) with one GEMM per sample.

    ==========================  ==================  =====================  ==================
    product                     x (N, C, P)         dy (N, K, P), w, bias  out
    ==========================  ==================  =====================  ==================
    POINTWISE_FORWARD           input               w = W (K, C), bias     y (N, K, P)
    POINTWISE_INPUT_GRAD        dx (written)        dy, w = Wᵀ (C, K)      -
    POINTWISE_WEIGHT_GRAD       input               dy                     partials (G, K, C)
    ==========================  ==================  =====================  ==================

    A driver of its own, not a product of ``conv_tasks``: a network without 1x1 convolutions does
    not compile it (ResNet-20's cold start is 1.3 s shorter).
    """
    n_batch = x.shape[0]
    tasks = (n_batch + per_task - 1) // per_task
    if product == POINTWISE_WEIGHT_GRAD:
        slots = out.shape[0]
    for slot in prange(slots):
        if product == POINTWISE_WEIGHT_GRAD:
            acc = out[slot]
            acc[:, :] = 0
        for task in range(slot, tasks, slots):
            n0, n1 = _task_samples(task, per_task, n_batch)
            if product == POINTWISE_FORWARD:
                _pointwise_forward_task(x, w, bias, n0, n1, out)
            else:
                for n in range(n0, n1):
                    if product == POINTWISE_INPUT_GRAD:
                        gemm(w, dy[n], x[n], 0.0, np.False_, np.False_)
                    else:
                        gemm(dy[n], x[n], out[slot], 1.0, np.False_, np.True_)


# The products ``conv_tasks`` runs (its ``product`` argument).
ROW_SHIFT_FORWARD, ROW_SHIFT_WEIGHT_GRAD, ROW_SHIFT_STACKED_FORWARD, ROW_SHIFT_STACKED_WEIGHT_GRAD = 0, 1, 2, 3
IM2COL_FORWARD, IM2COL_WEIGHT_GRAD, COL2IM_INPUT_GRAD = 4, 5, 6


@njit(parallel=True, cache=True)
def conv_tasks(product, x, dy, w, bias, ph, pw, kh, kw, sh, sw, ho, wo, per_task, workspace, out):
    """Run every task of one convolution ``product`` in parallel: the single parallel region of a
    convolution (the module docstring says how the batch is split).

    Parallel iteration ``slot`` of ``workspace.shape[0]`` takes tasks slot, slot + slots, ... of
    ``per_task`` samples each and runs the product's task function in its workspace row.  The
    arrays each product reads and writes (the others are empty placeholders of the same dtype):

    =============================  ==============  =========================  ========================
    product                        x (N, C, H, W)  dy (N, K, Ho*Wo), w, bias  out
    =============================  ==============  =========================  ========================
    ROW_SHIFT_FORWARD              input           w = w_rows, bias           y (N, K, Ho*Wo)
    ROW_SHIFT_STACKED_FORWARD      input           w = w_rows, bias           y (N, K, Ho*Wo)
    IM2COL_FORWARD                 input           w = W (K, C*kh*kw), bias   y (N, K, Ho*Wo)
    ROW_SHIFT_WEIGHT_GRAD          input           dy                         partials (G, kh*K, C*kw)
    ROW_SHIFT_STACKED_WEIGHT_GRAD  input           dy                         partials (G, kh*K, C*kw)
    IM2COL_WEIGHT_GRAD             input           dy                         partials (G, K, C*kh*kw)
    COL2IM_INPUT_GRAD              dx (written)    dy, w = Wᵀ (C*kh*kw, K)    -
    =============================  ==============  =========================  ========================

    A weight gradient's slot g zeroes its partial sum out[g] and accumulates its tasks into it
    (G = slots = ``WEIGHT_GRAD_GROUPS``); the caller adds the partial sums in order.

    One driver for all these products, with the task functions inlined, because of compile time
    (the module docstring has the measurement).
    """
    n_batch = x.shape[0]
    tasks = (n_batch + per_task - 1) // per_task
    slots = workspace.shape[0]
    weight_grad = product == ROW_SHIFT_WEIGHT_GRAD or product == ROW_SHIFT_STACKED_WEIGHT_GRAD \
        or product == IM2COL_WEIGHT_GRAD
    for slot in prange(slots):
        ws = workspace[slot]
        if weight_grad:
            acc = out[slot]
            acc[:, :] = 0
        for task in range(slot, tasks, slots):
            n0, n1 = _task_samples(task, per_task, n_batch)
            if product == ROW_SHIFT_FORWARD:
                _row_shift_forward_task(x, w, bias, n0, n1, ph, pw, kh, kw, sw, wo, ws, out)
            elif product == ROW_SHIFT_STACKED_FORWARD:
                _row_shift_stacked_forward_task(x, w, bias, n0, n1, ph, pw, kh, kw, sw, wo, ws, out)
            elif product == ROW_SHIFT_WEIGHT_GRAD:
                _row_shift_weight_grad_task(dy, x, n0, n1, ph, pw, kh, kw, sw, wo, ws, out[slot])
            elif product == ROW_SHIFT_STACKED_WEIGHT_GRAD:
                _row_shift_stacked_weight_grad_task(dy, x, n0, n1, ph, pw, kh, kw, sw, wo, ws, out[slot])
            elif product == IM2COL_FORWARD:
                _im2col_forward_task(x, w, bias, n0, n1, ph, pw, kh, kw, sh, sw, ho, wo, ws, out)
            elif product == IM2COL_WEIGHT_GRAD:
                _im2col_weight_grad_task(dy, x, n0, n1, ph, pw, kh, kw, sh, sw, ho, wo, ws, out[slot])
            else:
                _col2im_input_grad_task(dy, w, n0, n1, ph, pw, kh, kw, sh, sw, ho, wo, ws, x)


# -- the operations (same names and arguments as kernels.cuda.conv) --------------------------------

# A task (see the module docstring: a few samples lowered, multiplied and written back by one
# thread) holds about this many bytes of matrices, so that they stay in the core's cache.
# Measured on ResNet-20 and the bench/conv_cpu.py shapes: 1 MiB beat 256 KiB and 2 MiB.
_TASK_BYTES = 1 << 20


def _per_task(n: int, sample_bytes: int) -> int:
    """Samples per task: about _TASK_BYTES each, spread evenly (a function of n and the shape only,
    never of the thread count, so that results do not depend on it)."""
    per = max(1, min(n, _TASK_BYTES // max(sample_bytes, 1)))
    tasks = -(-n // per)
    return -(-n // tasks)


def _tasks(n: int, sample_elements: int, dtype, slots: int, other_elements: int = 0) -> tuple[int, np.ndarray]:
    """(samples per task, workspace): a task holds ``sample_elements`` numbers per sample (its
    lowered matrices), the workspace (slots, per_task*sample_elements) one row per slot; it also
    touches ``other_elements`` numbers per sample outside the workspace (the output it writes)."""
    per_task = _per_task(n, (sample_elements + other_elements) * np.dtype(dtype).itemsize)
    return per_task, scratch("conv.workspace", (slots, per_task * sample_elements), dtype)


def _slots() -> int:
    return get_num_threads()


def _placeholder(array, ndim: int, dtype) -> np.ndarray:
    """``array``, or for None an empty array of ``ndim`` dimensions: what a driver gets for an argument
    the product does not use (one compiled signature serves every product)."""
    return np.empty((0,) * ndim, dtype) if array is None else array


def _run(product: int, x: np.ndarray, *, per_task: int, workspace: np.ndarray, dy=None, w=None, bias=None,
         out=None, geometry=(0, 0, 0, 0, 0, 0, 0, 0)) -> None:
    """``conv_tasks`` for one product, BLAS kept to one thread per call; geometry = (ph, pw, kh, kw, sh,
    sw, ho, wo)."""
    with one_thread_per_call():
        conv_tasks(product, x, _placeholder(dy, 3, x.dtype), _placeholder(w, 2, x.dtype),
                   _placeholder(bias, 1, x.dtype), *(int(g) for g in geometry), per_task, workspace,
                   _placeholder(out, 3, x.dtype))


def _pointwise(product: int, x: np.ndarray, *, dy=None, w=None, bias=None, out=None) -> None:
    """``pointwise_tasks`` for one product on (N, C, P) arrays: for the forward pass and dX each slot
    takes one contiguous block of samples, for dW slot g the samples g, g + G, ... (G = out.shape[0])."""
    slots = _slots()
    per_task = 1 if product == POINTWISE_WEIGHT_GRAD else -(-x.shape[0] // slots)
    with one_thread_per_call():
        pointwise_tasks(product, x, _placeholder(dy, 3, x.dtype), _placeholder(w, 2, x.dtype),
                        _placeholder(bias, 1, x.dtype), per_task, slots, _placeholder(out, 3, x.dtype))


def _is_pointwise(kernel_hw, stride, padding) -> bool:
    return tuple(kernel_hw) == (1, 1) and stride == (1, 1) and padding == (0, 0)


def _row_shift_weights(weight: np.ndarray) -> np.ndarray:
    """W (K, C, kh, kw) -> (kh*K, C*kw) with row i*K + k = W[k, :, i, :].ravel() (matches ``im2row``)."""
    k, c, kh, kw = weight.shape
    return np.ascontiguousarray(weight.transpose(2, 0, 1, 3)).reshape(kh * k, c * kw)


def _row_shift_tasks(n: int, c: int, k: int, kh: int, kw: int, block: int, positions: int, dtype,
                     slots: int) -> tuple[bool, int, np.ndarray]:
    """(per tap?, samples per task, workspace) of a row-shift product with k output channels (``_per_tap``):
    per tap, the workspace holds the rows and the task writes its K x positions output in place;
    stacked, it holds the rows and the kh*K product rows."""
    if _per_tap(k):
        return True, *_tasks(n, c * kw * block, dtype, slots, k * positions)
    return False, *_tasks(n, (c * kw + kh * k) * block, dtype, slots)


def _conv_row_shift(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, padding, sw: int, wo: int,
                    out: np.ndarray) -> None:
    """out (N, K, Ho*wo) = bias + conv(x, weight) for vertical stride 1; x (N, C, H, W) C-contiguous."""
    n, c, h, _ = x.shape
    k, _, kh, kw = weight.shape
    block = (h + 2 * padding[0]) * wo
    per_tap, per_task, workspace = _row_shift_tasks(n, c, k, kh, kw, block, out.shape[2], x.dtype, _slots())
    _run(ROW_SHIFT_FORWARD if per_tap else ROW_SHIFT_STACKED_FORWARD, x, w=_row_shift_weights(weight),
         bias=bias, out=out, per_task=per_task, workspace=workspace,
         geometry=(padding[0], padding[1], kh, kw, 1, sw, 0, wo))


def conv2d(x, weight, bias=None, stride=(1, 1), padding=(0, 0)):
    """y (N, K, Ho, Wo) = conv2d(x, w) + b for validated x (N, C, H, W), weight (K, C, kh, kw), bias (K,)
    or None; stride and padding are pairs.  The lowering: 1x1 -> one product per sample, vertical
    stride 1 -> row-shift, else im2col."""
    x = np.ascontiguousarray(x)
    weight = np.ascontiguousarray(weight)
    n, c, h, w = x.shape
    k, _, kh, kw = weight.shape
    ho, wo = (h + 2 * padding[0] - kh) // stride[0] + 1, (w + 2 * padding[1] - kw) // stride[1] + 1
    w2 = weight.reshape(k, -1)
    bias = np.zeros(k, x.dtype) if bias is None else np.ascontiguousarray(bias, dtype=x.dtype)
    positions = ho * wo
    y = np.empty((n, k, positions), x.dtype)
    if _is_pointwise((kh, kw), stride, padding):
        _pointwise(POINTWISE_FORWARD, x.reshape(n, c, -1), w=w2, bias=bias, out=y)
    elif stride[0] == 1:
        _conv_row_shift(x, weight, bias, padding, stride[1], wo, y)
    else:
        per_task, workspace = _tasks(n, (c * kh * kw + k) * positions, x.dtype, _slots())
        _run(IM2COL_FORWARD, x, w=w2, bias=bias, out=y, per_task=per_task, workspace=workspace,
             geometry=(padding[0], padding[1], kh, kw, stride[0], stride[1], ho, wo))
    return y.reshape(n, k, ho, wo)


def conv2d_backward_input(dy, weight, input_shape, stride=(1, 1), padding=(0, 0)):
    """dx = ∂L/∂x, shape ``input_shape`` (N, C, H, W), from dy (N, K, Ho, Wo) and weight (K, C, kh, kw)."""
    weight = np.ascontiguousarray(weight)
    dy = np.ascontiguousarray(dy, dtype=weight.dtype)
    n, c, h, w = input_shape
    k, _, kh, kw = weight.shape
    ho, wo = dy.shape[2:]
    w2t = np.ascontiguousarray(weight.reshape(k, -1).T)
    dx = np.empty((n, c, h, w), dy.dtype)
    if _is_pointwise((kh, kw), stride, padding):
        _pointwise(POINTWISE_INPUT_GRAD, dx.reshape(n, c, -1), dy=dy.reshape(n, k, -1), w=w2t)
        return dx
    ph, pw = padding
    if stride == (1, 1) and ph < kh and pw < kw:
        # dx = conv2d(dy, flipped kernel with in/out swapped, padding k−1−p): a forward pass.
        flipped = weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)
        _conv_row_shift(dy, flipped, np.zeros(c, dy.dtype), (kh - 1 - ph, kw - 1 - pw), 1, w, dx.reshape(n, c, -1))
        return dx
    positions = ho * wo
    per_task, workspace = _tasks(n, (k + c * kh * kw) * positions, dy.dtype, _slots())
    _run(COL2IM_INPUT_GRAD, dx, dy=dy.reshape(n, k, -1), w=w2t, per_task=per_task, workspace=workspace,
         geometry=(ph, pw, kh, kw, stride[0], stride[1], ho, wo))
    return dx


def conv2d_backward_weight(dy, x, weight_shape, stride=(1, 1), padding=(0, 0), bias: bool = True):
    """(dw, db) = (∂L/∂w of shape ``weight_shape``, ∂L/∂b of shape (K,)) from dy and the forward input x;
    db is None when not ``bias``.

    The weight gradient is summed into ``WEIGHT_GRAD_GROUPS`` partial sums (one per slot of
    ``conv_tasks``), added here in order.  For vertical stride 1 (row-shift) the partial sums are
    (kh*K, C*kw), row i*K + k holding dW[k, :, i, :], rearranged to (K, C, kh, kw) at the end: either
    Σ_n dy[n] @ (rows_n shifted by i rows)ᵀ per tap, or one product dy_shift @ rowsᵀ per task with
    dy_shift = ``_shifted_grad(dy)`` (dy moved down by i rows, the kh shifts stacked).
    """
    x = np.ascontiguousarray(x)
    dy = np.ascontiguousarray(dy, dtype=x.dtype)
    k, c, kh, kw = weight_shape
    n, _, h, _ = x.shape
    ho, wo = dy.shape[2:]
    positions = ho * wo
    dy3 = dy.reshape(n, k, -1)
    db = None
    if bias:
        db = np.empty(k, x.dtype)
        channel_sum(dy3, db)
    groups = WEIGHT_GRAD_GROUPS
    geometry = (padding[0], padding[1], kh, kw, stride[0], stride[1], ho, wo)
    if _is_pointwise((kh, kw), stride, padding):
        partials = np.empty((groups, k, c), x.dtype)
        _pointwise(POINTWISE_WEIGHT_GRAD, x.reshape(n, c, -1), dy=dy3, out=partials)
        return partials.sum(axis=0).reshape(weight_shape), db
    if stride[0] == 1:
        block = (h + 2 * padding[0]) * wo
        per_tap, per_task, workspace = _row_shift_tasks(n, c, k, kh, kw, block, positions, x.dtype, groups)
        partials = np.empty((groups, kh * k, c * kw), x.dtype)
        _run(ROW_SHIFT_WEIGHT_GRAD if per_tap else ROW_SHIFT_STACKED_WEIGHT_GRAD, x, dy=dy3, out=partials,
             per_task=per_task, workspace=workspace, geometry=geometry)
        dw_rows = partials.sum(axis=0)
        return np.ascontiguousarray(dw_rows.reshape(kh, k, c, kw).transpose(1, 2, 0, 3)), db
    per_task, workspace = _tasks(n, (k + c * kh * kw) * positions, x.dtype, groups)
    partials = np.empty((groups, k, c * kh * kw), x.dtype)
    _run(IM2COL_WEIGHT_GRAD, x, dy=dy3, out=partials, per_task=per_task, workspace=workspace, geometry=geometry)
    return partials.sum(axis=0).reshape(weight_shape), db
