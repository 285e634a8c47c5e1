"""Plainly written numpy / torch oracles for every fast kernel.

Each function here is the slow, obviously-correct version of something the
packages compute quickly. Tests compare the two. Keep these simple: loops
and textbook formulas, no cleverness.
"""

from __future__ import annotations

import numpy as np

# ---------------------------------------------------------------- xbar oracles


def xbar_splits(n, block):
    """Balanced contiguous blocks: ceil(n / block) blocks, sizes differ by <= 1, longer first."""
    n_blocks = -(-n // block)
    bounds = [0]
    for i in range(n_blocks):
        size = n // n_blocks + (1 if i < n % n_blocks else 0)
        bounds.append(bounds[-1] + size)
    return bounds


def xbar_dac(x, bits, input_range=None):
    """DAC of each row of x: returns (u, s), u = integer codes (or x/s when bits is None)."""
    x = np.asarray(x, dtype=np.float32)
    u = np.zeros(x.shape, dtype=np.float64)
    s = np.zeros(x.shape[0], dtype=np.float64)
    for b in range(x.shape[0]):
        row = x[b].astype(np.float64)
        s[b] = input_range if input_range is not None else np.max(np.abs(row))
        if s[b] == 0.0:
            continue
        for i in range(x.shape[1]):
            v = min(max(row[i], -s[b]), s[b]) / s[b]
            if bits is not None:
                q = 2 ** (bits - 1) - 1
                v = min(max(np.rint(v * q), -q), q)
            u[b, i] = v
    return u, s


def xbar_matmul(x, w_eff, w_target, n_rows, dac_bits, adc_bits, full_scale=1.0,
                input_range=None):
    """Tiled crossbar MAC with per-tile bit-line ADCs, written as loops (see xbar/README.md).

    w_eff, w_target: (out, in). Returns (batch, out) float32.
    """
    w_eff = np.asarray(w_eff, dtype=np.float32).astype(np.float64)
    w_target = np.asarray(w_target, dtype=np.float32).astype(np.float64)
    n_out, n_in = w_eff.shape
    u, s = xbar_dac(x, dac_bits, input_range)
    in_div = 1.0 if dac_bits is None else 2.0 ** (dac_bits - 1) - 1
    bounds = xbar_splits(n_in, n_rows)
    y = np.zeros((u.shape[0], n_out), dtype=np.float32)
    for b in range(u.shape[0]):
        for c in range(n_out):
            acc = 0.0
            for t in range(len(bounds) - 1):
                r0, r1 = bounds[t], bounds[t + 1]
                p = float(np.float32(np.dot(u[b, r0:r1], w_eff[c, r0:r1])))
                f = full_scale * np.sum(np.abs(w_target[c, r0:r1]))
                if adc_bits is None:
                    acc += p / in_div
                    continue
                qa = 2.0 ** (adc_bits - 1) - 1
                gain = qa / (f * in_div) if f > 0 else 0.0
                acc += min(max(np.rint(p * gain), -qa), qa) * (f / qa)
            y[b, c] = np.float32(acc * s[b])
    return y


def xbar_program_cells(w, z_pos, z_neg, sigma, level, g_min, g_max):
    """Effective weights (G+ - G-)/k of one device sample; z_* are standard normals."""
    w = np.asarray(w, dtype=np.float64)
    w_max = np.max(np.abs(w))
    k = (g_max - g_min) / w_max
    if level == "weight":
        return w * np.exp(sigma * z_pos)
    gp = (g_min + np.maximum(w, 0) * k) * np.exp(sigma * z_pos)
    gn = (g_min + np.maximum(-w, 0) * k) * np.exp(sigma * z_neg)
    return (gp - gn) / k


# ------------------------------------------------------------- mapping oracles


def mapping_lognormal_accuracies(model, x, y, sigma, samples, seed):
    """Paper eq. 1-2 in plain torch: every Linear/Conv2d weight times exp(theta), theta ~
    N(0, sigma^2) per weight and sample; returns the accuracy (fraction) of each sample."""
    import copy

    import torch

    rng = np.random.default_rng(seed)
    accs = []
    for _ in range(samples):
        m = copy.deepcopy(model).eval()
        with torch.no_grad():
            for mod in m.modules():
                if isinstance(mod, (torch.nn.Linear, torch.nn.Conv2d)):
                    theta = rng.normal(0.0, sigma, size=tuple(mod.weight.shape))
                    mod.weight.mul_(torch.from_numpy(np.exp(theta)).float())
            pred = m(x).argmax(dim=1)
        accs.append(float((pred == y).float().mean()))
    return np.array(accs)


def mapping_conv_as_matmul(x, w, b, stride, padding, dilation):
    """Convolution by explicit loops over output positions: each receptive field (c, i, j
    order) dotted with w.flatten(1) -- the im2col lowering, written out (numpy, NCHW)."""
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding[0], padding[0]), (padding[1], padding[1])))
    ho = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (wd + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    wm = w.reshape(o, -1)
    out = np.zeros((n, o, ho, wo))
    for bi in range(n):
        for r in range(ho):
            for s in range(wo):
                field = [xp[bi, ci, r * stride[0] + i * dilation[0],
                            s * stride[1] + j * dilation[1]]
                         for ci in range(c) for i in range(kh) for j in range(kw)]
                out[bi, :, r, s] = wm @ np.array(field) + (0 if b is None else b)
    return out


def mapping_conv_correction(x, y, kernel, stride, padding, wg, bg, wc, bc):
    """A digital 1x1 correction of a conv output ``y`` from its input ``x`` (numpy, float64).

    ``p`` = mean of each output position's window of the zero-padded ``x`` (padding counted);
    ``g = relu(bg + Wg @ [p; y])``, ``z = bc + Wc @ [y; g]`` per position. Returns ``z``.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n, c, _, _ = x.shape
    ho, wo = y.shape[2], y.shape[3]
    xp = np.pad(x, ((0, 0), (0, 0), (padding[0], padding[0]), (padding[1], padding[1])))
    z = np.zeros(y.shape)
    for bi in range(n):
        for r in range(ho):
            for s in range(wo):
                r0, s0 = r * stride[0], s * stride[1]
                p = xp[bi, :, r0:r0 + kernel[0], s0:s0 + kernel[1]].reshape(c, -1).mean(1)
                g = np.maximum(np.asarray(wg, np.float64) @ np.concatenate([p, y[bi, :, r, s]])
                               + bg, 0.0)
                z[bi, :, r, s] = (np.asarray(wc, np.float64) @ np.concatenate([y[bi, :, r, s], g])
                                  + bc)
    return z


def mapping_correction_float32(y, t, wg_y, wc, bc):
    """The per-sample part of a 1x1 correction in float32, one rounding per product and add.

    ``y`` ``(N, L)``, ``t`` ``(M, L)`` (bias + input part), ``wg_y`` ``(M, N)``, ``wc``
    ``(N, N + M)``, ``bc`` ``(N,)``. Each sum starts at +0 and adds its products in ascending
    channel order: ``g = max(t + sum_c wg_y[:, c] y[c], 0)`` (NaN kept),
    ``z = (bc + sum_c wc[:, c] y[c]) + sum_m wc[:, N + m] g[m]``. Returns ``z``.
    """
    f = np.float32
    y, t = np.asarray(y, f), np.asarray(t, f)
    wg_y, wc, bc = np.asarray(wg_y, f), np.asarray(wc, f), np.asarray(bc, f)
    n, m = y.shape[0], t.shape[0]

    def part(w, a):
        out = np.zeros((w.shape[0], a.shape[1]), f)
        for c in range(a.shape[0]):
            out = out + w[:, c:c + 1] * a[c]
        return out

    with np.errstate(invalid="ignore"):         # inf * 0, inf - inf: NaN, as in the kernel
        v = t + part(wg_y, y)
        g = np.where(v < 0, f(0), v)
        return (bc[:, None] + part(wc[:, :n], y)) + part(wc[:, n:n + m], g)


# ---------------------------------------------------------- correctnet oracles


def lipschitz_lambda(sigma, k=1.0):
    """CorrectNet eq. 10: k / (mean + 3 std of exp(theta)), theta ~ N(0, sigma^2)."""
    mean = np.exp(sigma**2 / 2)
    std = np.sqrt((np.exp(sigma**2) - 1) * np.exp(sigma**2))
    return k / (mean + 3 * std)


def orthogonality_term(w, lam):
    """||W^T W - lam^2 I||_F^2 for one (out, in) matrix, with plain loops over the Gram."""
    w = np.asarray(w, dtype=np.float64)
    n_in = w.shape[1]
    total = 0.0
    for i in range(n_in):
        for j in range(n_in):
            g = float(np.dot(w[:, i], w[:, j]))
            total += (g - (lam**2 if i == j else 0.0)) ** 2
    return total


def normalized_orthogonality_term(w, lam):
    """||G / lam^2 - I||_F^2 / min(out, in) with G the smaller Gram of W, by plain loops."""
    w = np.asarray(w, dtype=np.float64)
    if w.shape[0] > w.shape[1]:
        w = w.T
    n = w.shape[0]
    total = 0.0
    for i in range(n):
        for j in range(n):
            g = float(np.dot(w[i], w[j])) / lam**2
            total += (g - (1.0 if i == j else 0.0)) ** 2
    return total / n


def conv_dense_matrix(w, in_shape, stride=(1, 1), padding=(0, 0), dilation=(1, 1)):
    """The convolution (no bias) on inputs of shape in_shape = (C, H, W) as a dense matrix of
    shape (out*Ho*Wo, C*H*W): column k is the loop convolution of the k-th unit image."""
    size = int(np.prod(in_shape))
    basis = np.eye(size).reshape(size, *in_shape)
    out = mapping_conv_as_matmul(basis, np.asarray(w, dtype=np.float64), None, stride, padding,
                                 dilation)
    return out.reshape(size, -1).T


def spectral_norm(w):
    """Largest singular value of a matrix via the eigenvalues of W^T W."""
    w = np.asarray(w, dtype=np.float64)
    return float(np.sqrt(np.max(np.linalg.eigvalsh(w.T @ w))))


def irdrop_currents(g, volts, r_word, r_bit=None):
    """Dense nodal analysis of a passive crossbar (see xbar/irdrop.py for the topology).

    Unknowns: word-line nodes u[i, j] (index i*n + j) then bit-line nodes v[i, j]
    (m*n + i*n + j). Builds the full conductance matrix and calls np.linalg.solve.
    g: (m, n) siemens; volts: (batch, m) volt. Returns (batch, n) output currents, ampere.
    """
    r_bit = r_word if r_bit is None else r_bit
    g = np.asarray(g, dtype=np.float64)
    volts = np.atleast_2d(np.asarray(volts, dtype=np.float64))
    m, n = g.shape
    a, b = 1.0 / r_word, 1.0 / r_bit
    size = 2 * m * n
    mat = np.zeros((size, size))
    rhs = np.zeros((size, volts.shape[0]))

    def uu(i, j):
        return i * n + j

    def vv(i, j):
        return m * n + i * n + j

    def link(p, q, cond):
        mat[p, p] += cond
        mat[q, q] += cond
        mat[p, q] -= cond
        mat[q, p] -= cond

    for i in range(m):
        mat[uu(i, 0), uu(i, 0)] += a            # driver segment
        rhs[uu(i, 0)] += a * volts[:, i]
        for j in range(n - 1):
            link(uu(i, j), uu(i, j + 1), a)
    for j in range(n):
        for i in range(m - 1):
            link(vv(i, j), vv(i + 1, j), b)
        mat[vv(m - 1, j), vv(m - 1, j)] += b    # segment into virtual ground
    for i in range(m):
        for j in range(n):
            link(uu(i, j), vv(i, j), g[i, j])
    x = np.linalg.solve(mat, rhs)
    return (x[[vv(m - 1, j) for j in range(n)]] * b).T


def digital_layer_sets(costs, total, budget):
    """Maximal sets of layers (tuples in network order) whose summed cost fits budget*total.

    Brute force over all 2^L subsets, for the digital-layer baseline.
    """
    import itertools

    names = list(costs)
    fits = [s for r in range(len(names) + 1) for s in itertools.combinations(names, r)
            if sum(costs[n] for n in s) <= budget * total]
    return sorted(s for s in fits if not any(set(s) < set(t) for t in fits))


def paired_t_interval(d):
    """Mean, standard error and 95 % Student-t interval of paired differences ``d`` (len >= 2)."""
    import math

    from scipy import stats

    n = len(d)
    mean = sum(d) / n
    var = sum((x - mean) ** 2 for x in d) / (n - 1)
    sem = math.sqrt(var / n)
    half = stats.t.ppf(0.975, n - 1) * sem
    return mean, sem, (mean - half, mean + half)


# ---------------------------------------------------------------- correctnet batch-norm


def batchnorm_cumulative_stats(batches):
    """Running statistics of a batch-norm layer after a cumulative-average recalibration.

    Args:
        batches: List of numpy arrays ``(N, C, H, W)``: the layer's input in each batch.

    Returns:
        ``(mean, var)`` per channel: the mean over batches of each batch's channel mean, and
        of each batch's unbiased channel variance (what torch's ``momentum=None`` gives).
    """
    means, variances = [], []
    for a in batches:
        a = np.asarray(a, dtype=np.float64)
        c = a.shape[1]
        flat = np.transpose(a, (1, 0, 2, 3)).reshape(c, -1)
        n = flat.shape[1]
        mu = flat.sum(axis=1) / n
        means.append(mu)
        variances.append(((flat - mu[:, None]) ** 2).sum(axis=1) / (n - 1))
    return np.mean(means, axis=0), np.mean(variances, axis=0)


def adc_tile_sum(p, gain, step, adc_levels, scales, bias):
    """Per-tile ADC of bit-line sums, summed over tiles, rescaled: (N, O) float32.

    p: (n_row_tiles, N, O) sums; gain, step: (n_row_tiles, O); adc_levels 0 = ideal.
    ``out[n, o] = float32(s_n * sum_t step * clip(rint(p * gain), -L, L) + b_o)``, t ascending.
    """
    n_t, n_n, n_o = p.shape
    out = np.empty((n_n, n_o), dtype=np.float32)
    for n in range(n_n):
        for o in range(n_o):
            acc = 0.0
            for t in range(n_t):
                v = float(p[t, n, o])
                if adc_levels > 0:
                    v = min(max(np.rint(v * gain[t, o]), -adc_levels), adc_levels)
                acc += v * step[t, o]
            out[n, o] = np.float32(acc * scales[n] + float(bias[o]))
    return out
