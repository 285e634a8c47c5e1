"""Narrow conv outputs run on blocks of interleaved images: the same codes and outputs.

* ``field_blocks.quantised_block`` gives every image of a block its receptive fields'
  codes and scales bit for bit as ``F.unfold`` + the DAC oracle (``naive.xbar_dac``): short
  last blocks, dilation, padding, row strides, fixed and per-field ranges, no DAC, and the
  exact fallback (a rounding tie, a NaN input) included;
* ``kernels.analog_conv_interleaved`` equals ``analog_conv_positions`` bit for bit, with a
  folded batch-norm, ReLU, max-pool and a digital correction, shared and per-sample inputs;
* ``fastpath.conv_kernel`` runs the narrow layers interleaved and the others as before.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mapping import CrossbarConv2d, field_blocks, field_kernels, kernels
from mapping.fastpath import LayerStatics, PostOps, batchnorm_affine, conv_kernel, sample_weights
from naive import xbar_dac
from test_mapping_correction import _spec as correction_spec
from xbar import ADCConfig, DACConfig, DeviceConfig, TileConfig, XbarConfig

GEOMETRIES = [  # (C, H, W, conv kwargs)
    (6, 14, 14, dict(kernel_size=5)),                                  # LeNet-5 conv2
    (3, 12, 11, dict(kernel_size=3, dilation=2, padding=2)),           # Wo 11, dilated
    (2, 9, 7, dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 0))),  # row stride 2
    (4, 4, 4, dict(kernel_size=3, padding=1)),                         # VGG's 4x4 layers
    (5, 3, 2, dict(kernel_size=1)),                                    # 1x1, Wo 2
]
PERIPHERY = {
    "8-bit": dict(dac=DACConfig(bits=8), adc=ADCConfig(bits=8)),
    "4-bit fixed range": dict(dac=DACConfig(bits=4, input_range=1.5), adc=ADCConfig(bits=6)),
    "ideal": dict(dac=DACConfig(bits=None), adc=ADCConfig(bits=None)),
    "ADC only": dict(dac=DACConfig(bits=None), adc=ADCConfig(bits=6)),
}


def _layer(c, kw, periphery, out_channels=5, seed=0):
    torch.manual_seed(seed)
    cfg = XbarConfig(tile=TileConfig(16, 8), device=DeviceConfig(sigma=0.5), **periphery)
    layer = CrossbarConv2d.from_float(nn.Conv2d(c, out_channels, **kw), cfg)
    layer.program(seed + 1)
    return layer


def _geom(layer, h, w):
    ho, wo = layer.output_size(h, w)
    left, _, top, _ = layer.pad_amounts()
    return np.array([*layer.kernel_size, *layer.stride, *layer.dilation, ho, wo, top, left],
                    dtype=np.int64)


def _inputs(n, c, h, w, seed=0):
    """``n`` images, some zeros (as after a ReLU), image 1 holding a rounding tie of a
    4-bit DAC (7 and 3.5 in every field: 3.5 / 7 * 7 = 3.5), image 2 a NaN."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=g)
    x[:, :, ::3] = torch.relu(x[:, :, ::3])
    x[1] = 3.5
    x[1, 0, ::2, ::2] = 7.0
    x[2, -1, h // 2, w // 2] = float("nan")
    return x


@pytest.mark.parametrize("pname", sorted(PERIPHERY))
@pytest.mark.parametrize("c, h, w, kw", GEOMETRIES)
@pytest.mark.parametrize("nb", [1, 3, 8])
def test_block_codes_equal_im2col_then_the_xbar_dac(c, h, w, kw, pname, nb):
    layer = _layer(c, kw, PERIPHERY[pname])
    st = LayerStatics(layer)
    geom = _geom(layer, h, w)
    n_k, n_l = st.bounds[-1], int(geom[6] * geom[7])
    x = _inputs(7, c, h, w)                               # 7 images: a short last block
    xn = np.ascontiguousarray(x.numpy())[None]
    fields = F.unfold(layer.padded_input(x), layer.kernel_size, dilation=layer.dilation,
                      stride=layer.stride)                 # (B, K, L)
    row = field_blocks.block_row(n_l * nb)
    for b0 in range(0, 7, nb):
        pm = np.full((n_k, row), np.nan, np.float32)
        sc, inv = np.full(row, np.nan), np.empty(row)
        field_blocks.quantised_block(xn, 0, b0, nb, geom, st.periph, pm, sc, inv,
                                     field_blocks.block_scratch(c, n_k, geom, nb),
                                     field_kernels.tap_tables(geom, c))
        for bb in range(min(nb, 7 - b0)):
            got, got_s = pm[:, bb:n_l * nb:nb], sc[bb:n_l * nb:nb]
            one, one_s = _per_image(xn, b0 + bb, geom, st.periph, n_k, n_l)
            np.testing.assert_array_equal(got, one)         # NaN where the image's NaN is
            np.testing.assert_array_equal(got_s, one_s)
            if b0 + bb == 2:
                continue                                    # the NaN image: per image only
            if st.dac_mode == 0:                            # no DAC: the raw fields
                np.testing.assert_array_equal(got.T, fields[b0 + bb].T.numpy())
                np.testing.assert_array_equal(got_s, 1.0)
                continue
            want, s_want = xbar_dac(fields[b0 + bb].T.numpy(), layer.config.dac.bits,
                                    layer.config.dac.input_range)
            np.testing.assert_array_equal(got.T, want.astype(np.float32))  # codes or x / s
            np.testing.assert_array_equal(got_s, s_want)


def _per_image(xn, b, geom, periph, n_k, n_l):
    """``field_kernels._quantised_fields`` of image ``b`` (codes ``(K, L)``, scales)."""
    c = xn.shape[2]
    pm, sc, sd, inv = np.empty((n_k, n_l), np.float32), *(np.empty(n_l) for _ in range(3))
    field_kernels._quantised_fields(xn, 0, b, geom, periph, pm, sc, sd, inv,
                                    field_kernels.field_scratch(c, geom),
                                    field_kernels.tap_tables(geom, c))
    return pm, sc


def _kernels_agree(layer, x, wt, post, nb, geom=None):
    """Outputs of the positions kernel and the interleaved one (``nb``), asserted equal."""
    st = LayerStatics(layer)
    n_sx, n_b, _, h, w = x.shape
    geom = _geom(layer, h, w) if geom is None else geom
    hq, wq = post.out_size(int(geom[6]), int(geom[7]))
    args = (x, wt, st.bounds, st.gain, st.step, st.bias, st.periph, geom, *post.kernel_args())
    outs = [np.full((wt.shape[0], n_b, st.n_out, hq, wq), np.nan, np.float32) for _ in range(2)]
    kernels.analog_conv_positions(*args, outs[0])
    kernels.analog_conv_interleaved(*args, outs[1], nb)
    np.testing.assert_array_equal(outs[1], outs[0])
    return outs[1]


@pytest.mark.parametrize("pname", sorted(PERIPHERY))
@pytest.mark.parametrize("c, h, w, kw", GEOMETRIES[:4])
def test_interleaved_kernel_equals_the_positions_kernel(c, h, w, kw, pname):
    layer = _layer(c, kw, PERIPHERY[pname], out_channels=7, seed=2)
    w1 = sample_weights(layer)
    wt = np.ascontiguousarray(np.stack([w1, 0.9 * w1]))
    x = np.ascontiguousarray(_inputs(9, c, h, w, seed=3).numpy())
    ho, wo = layer.output_size(h, w)
    pool = nn.MaxPool2d(2) if min(ho, wo) >= 2 else None
    bn = nn.BatchNorm2d(7).eval()
    with torch.no_grad():
        bn.running_mean.uniform_(-0.5, 0.5), bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 1.5), bn.bias.uniform_(-0.2, 0.2)
    posts = [PostOps(), PostOps(True, pool, batchnorm_affine(bn))]
    if layer.padding_mode == "zeros" and tuple(layer.dilation) == (1, 1):
        spec = correction_spec(layer, 3, layer.kernel_size, layer.stride, layer.padding)
        posts.append(PostOps(True, pool, correction=spec))      # the pool reads the block
    if (ho, wo) == (h, w):      # a pool window other than the conv's: per image, scattered
        spec = correction_spec(layer, 2, (1, 1), (1, 1), (0, 0))
        posts.append(PostOps(True, pool, correction=spec))
    for post in posts:
        for nb in (2, 4, 16):
            _kernels_agree(layer, x[None], wt, post, nb)                    # shared input
            _kernels_agree(layer, np.ascontiguousarray(np.stack([x, -x])), wt, post, nb)


def test_narrow_layers_run_interleaved_and_wide_or_strided_ones_per_image():
    cases = [  # (C, H, W, conv kwargs, periphery, out channels, kernel, nb)
        (6, 14, 14, dict(kernel_size=5), PERIPHERY["8-bit"], 16, "interleaved", 8),
        (64, 4, 4, dict(kernel_size=3, padding=1), PERIPHERY["8-bit"], 64, "interleaved",
         14),                                           # 131072 // (576 * 16) codes
        (8, 16, 16, dict(kernel_size=3, padding=1), PERIPHERY["ideal"], 16, "interleaved", 5),
        (1, 28, 28, dict(kernel_size=5, padding=2), PERIPHERY["8-bit"], 6, "positions", 1),
        (64, 8, 8, dict(kernel_size=3, stride=2, padding=1), PERIPHERY["8-bit"], 64,
         "forward", 1),                                 # column stride 2: per image
        (6, 14, 14, dict(kernel_size=5), PERIPHERY["ADC only"], 16, "positions", 1),
    ]
    for c, h, w, kw, periphery, n_out, name, nb in cases:
        layer = _layer(c, kw, periphery, out_channels=n_out)
        kernel, got_nb = conv_kernel(LayerStatics(layer), _geom(layer, h, w))
        assert kernel is getattr(kernels, f"analog_conv_{name}"), (c, h, w, kw)
        assert got_nb == nb, (c, h, w, kw)
