"""CPU kernels for 2-D convolution (layer: ``numbanet.conv``).

The convolution is lowered to one large matrix product (im2col):

    cols[(c, i, j), (n, oh, ow)] = x_pad[n, c, oh*sh + i, ow*sw + j]      (C*kh*kw, N*Ho*Wo)
    Y[k, (n, oh, ow)]            = W[k, (c, i, j)] @ cols                  (K, N*Ho*Wo)

so the expensive part runs in the BLAS library at full speed.  The backward
pass reuses the same layout: dW = dY @ colsᵀ and dcols = Wᵀ @ dY, followed by
``col2im``, which gathers dcols back onto the padded input *per (n, c) plane*
so that no two parallel iterations ever write the same element.
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
