"""CPU kernels for 2-D convolution (layer: ``numbanet.conv``).

Every convolution is lowered to large matrix products so that the expensive part
runs in the BLAS library at full speed.  Two lowerings are used.

**Row-shift (vertical stride 1, the common case).**  Only the kw horizontal taps
are unrolled (``im2row``), a 3x3 kernel copies the input 3 times instead of 9::

    rows[(c, j), (n, h, ow)] = x_pad[n, c, h, ow*sw + j]           (C*kw, N*Hp*Wo), h < Hp
    Z[(i, k), (n, h, ow)]    = W[k, c, i, j] @ rows                  ((kh*K), N*Hp*Wo), one GEMM
    y[n, k, oh, ow]          = b[k] + Σ_i Z[(i, k), (n, oh + i, ow)]  (``sum_row_shifts``)

The vertical taps are a shift by i rows of the GEMM output, summed in one pass that
also adds the bias and writes NCHW.  dW uses the same ``rows`` with the gradient
shifted the other way (``shifted_grad``): dW[:, :, i, :] = dY_shift_i @ rowsᵀ.

**im2col (vertical stride > 1)**::

    cols[(c, i, j), (n, oh, ow)] = x_pad[n, c, oh*sh + i, ow*sw + j]  (C*kh*kw, N*Ho*Wo)
    Y[k, (n, oh, ow)]            = W[k, (c, i, j)] @ cols              (K, N*Ho*Wo)

and backward dW = dY @ colsᵀ, dcols = Wᵀ @ dY followed by ``col2im``, which gathers
dcols back onto the padded input *per (n, c) plane* so that no two parallel
iterations ever write the same element.
"""
from numba import njit, prange


@njit(parallel=True, cache=True)
def pad(x, ph, pw, out):
    """out[n, c] = x[n, c] surrounded by ph rows and pw columns of zeros. Shapes (N,C,H,W) -> (N,C,H+2ph,W+2pw)."""
    n_batch, channels, height, width = x.shape
    for task in prange(n_batch * channels):
        n = task // channels
        c = task - n * channels
        dst = out[n, c]
        dst[:, :] = 0
        src = x[n, c]
        for h in range(height):
            row = dst[h + ph]
            for w in range(width):
                row[w + pw] = src[h, w]


@njit(parallel=True, cache=True)
def crop(xp, ph, pw, out):
    """Inverse of ``pad``: out[n, c] = xp[n, c, ph:ph+H, pw:pw+W]."""
    n_batch, channels, height, width = out.shape
    for task in prange(n_batch * channels):
        n = task // channels
        c = task - n * channels
        for h in range(height):
            src = xp[n, c, h + ph]
            dst = out[n, c, h]
            for w in range(width):
                dst[w] = src[w + pw]


@njit(parallel=True, cache=True)
def im2col(xp, kh, kw, sh, sw, ho, wo, cols):
    """Fill cols (C*kh*kw, N*ho*wo) from the padded input xp (N, C, Hp, Wp)."""
    n_batch, channels = xp.shape[0], xp.shape[1]
    positions = ho * wo
    rows = channels * kh * kw
    for task in prange(rows * n_batch):
        r = task // n_batch
        n = task - r * n_batch
        c = r // (kh * kw)
        ij = r - c * kh * kw
        i = ij // kw
        j = ij - i * kw
        dst = cols[r]
        for oh in range(ho):
            src = xp[n, c, oh * sh + i]
            offset = n * positions + oh * wo
            for ow in range(wo):
                dst[offset + ow] = src[ow * sw + j]


@njit(parallel=True, cache=True)
def col2im(dcols, kh, kw, sh, sw, ho, wo, dxp):
    """Adjoint of ``im2col``: dxp[n, c, h, w] = Σ of every dcols entry that im2col copied from (h, w).

    Parallel over (n, c) planes; each plane is owned by one iteration, so the
    ``+=`` below never races, and the summation order is fixed.
    """
    n_batch, channels = dxp.shape[0], dxp.shape[1]
    positions = ho * wo
    for task in prange(n_batch * channels):
        n = task // channels
        c = task - n * channels
        plane = dxp[n, c]
        plane[:, :] = 0
        for i in range(kh):
            for j in range(kw):
                src = dcols[(c * kh + i) * kw + j]
                for oh in range(ho):
                    dst = plane[oh * sh + i]
                    offset = n * positions + oh * wo
                    for ow in range(wo):
                        dst[ow * sw + j] += src[offset + ow]


@njit(parallel=True, cache=True)
def unfold_output(y_knp, bias, out):
    """out[n, k, p] = y_knp[k, n*P + p] + bias[k]: GEMM result (K, N*P) -> NCHW output (N, K, P)."""
    n_batch, channels, positions = out.shape
    for task in prange(n_batch * channels):
        n = task // channels
        k = task - n * channels
        src = y_knp[k]
        dst = out[n, k]
        b = bias[k]
        offset = n * positions
        for p in range(positions):
            dst[p] = src[offset + p] + b


@njit(parallel=True, cache=True)
def to_channel_major(a, out):
    """out[k, n*P + p] = a[n, k, p]: NCHW (N, K, P) -> the GEMM layout (K, N*P)."""
    n_batch, channels, positions = a.shape
    for task in prange(channels * n_batch):
        k = task // n_batch
        n = task - k * n_batch
        src = a[n, k]
        dst = out[k]
        offset = n * positions
        for p in range(positions):
            dst[offset + p] = src[p]


@njit(parallel=True, cache=True)
def channel_sum(dy, dbias):
    """dbias[k] = Σ_{n,p} dy[n, k, p] for dy (N, K, P), one channel per iteration."""
    n_batch, channels, positions = dy.shape
    for k in prange(channels):
        total = 0.0
        for n in range(n_batch):
            src = dy[n, k]
            for p in range(positions):
                total += src[p]
        dbias[k] = total


@njit(parallel=True, cache=True)
def add_channel_bias(y, bias):
    """y[n, k, p] += bias[k] in place, for y (N, K, P)."""
    n_batch, channels, positions = y.shape
    for task in prange(n_batch * channels):
        n = task // channels
        k = task - n * channels
        dst = y[n, k]
        b = bias[k]
        for p in range(positions):
            dst[p] += b


@njit(parallel=True, cache=True)
def im2row(x, ph, pw, kw, sw, wo, rows):
    """Fill rows (C*kw, N*Hp*wo): rows[c*kw + j, (n*Hp + h)*wo + ow] = x_pad[n, c, h, ow*sw + j].

    x (N, C, H, W) is the unpadded input; x_pad is x with ph rows and pw columns of zeros
    on each side (Hp = H + 2*ph), produced on the fly.  Every padded row h is copied (not
    only the output rows), so that the vertical taps are plain column offsets i*wo.
    """
    n_batch, channels, height, width = x.shape
    hp = height + 2 * ph
    block = hp * wo
    for task in prange(channels * kw * n_batch):
        r = task // n_batch
        n = task - r * n_batch
        c = r // kw
        j = r - c * kw
        # output columns [lo, hi) read inside x; the others read padding
        lo = 0
        while lo < wo and lo * sw + j < pw:
            lo += 1
        hi = lo
        while hi < wo and hi * sw + j < width + pw:
            hi += 1
        first = lo * sw + j - pw
        dst = rows[r]
        for h in range(hp):
            row = dst[n * block + h * wo:n * block + h * wo + wo]
            if h < ph or h >= height + ph:
                for t in range(wo):
                    row[t] = 0
                continue
            for t in range(lo):
                row[t] = 0
            for t in range(hi, wo):
                row[t] = 0
            inside = row[lo:hi]
            src = x[n, c, h - ph, first:]
            if sw == 1:  # index from 0 in both views: a plain vectorisable copy
                for t in range(hi - lo):
                    inside[t] = src[t]
            else:
                for t in range(hi - lo):
                    inside[t] = src[t * sw]


@njit(parallel=True, cache=True)
def sum_row_shifts(z, kh, hp, wo, bias, out):
    """out[n, k, oh*wo + ow] = bias[k] + Σ_{i<kh} z[i*K + k, (n*hp + oh + i)*wo + ow].

    z (kh*K, N*hp*wo) is the row-shift GEMM output, out (N, K, Ho*wo) the NCHW result.
    The kh terms are added in the fixed order i = 0, 1, ... (thread-count independent).
    """
    n_batch, channels, positions = out.shape
    block = hp * wo
    for task in prange(n_batch * channels):
        n = task // channels
        k = task - n * channels
        dst = out[n, k]
        b = bias[k]
        first = z[k]
        offset = n * block
        for p in range(positions):
            dst[p] = first[offset + p] + b
        for i in range(1, kh):
            src = z[i * channels + k]
            shifted = offset + i * wo
            for p in range(positions):
                dst[p] += src[shifted + p]


@njit(parallel=True, cache=True)
def shifted_grad(dy, kh, hp, wo, out):
    """out[i*K + k, (n*hp + h)*wo + ow] = dy[n, k, (h - i)*wo + ow] if i <= h < i + Ho, else 0.

    dy (N, K, Ho*wo) -> out (kh*K, N*hp*wo): the gradient moved down by i rows inside each
    sample's hp-row block, for i = 0..kh-1 stacked, so that dW needs one GEMM with ``im2row``.
    """
    n_batch, channels, positions = dy.shape
    block = hp * wo
    for task in prange(kh * channels):
        i = task // channels
        k = task - i * channels
        dst = out[task]
        for n in range(n_batch):
            src = dy[n, k]
            offset = n * block
            for q in range(offset, offset + i * wo):
                dst[q] = 0
            offset += i * wo
            for p in range(positions):
                dst[offset + p] = src[p]
            for q in range(offset + positions, n * block + block):
                dst[q] = 0
