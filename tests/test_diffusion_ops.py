"""The ops Stable Diffusion needs besides convolution, on the CPU backend at
every kernel level, against torch (the engine never imports it; these tests
use it as the reference Stable Diffusion itself runs on): group and layer
norm, nearest upsampling, the gelu family, GEGLU, the timestep embedding and
concatenation along channels. Images are numpy NCHW, ggml [W, H, C, N]."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from quanta import _core


def run(g, outputs):
    return g.run(outputs, {}, "cpu", 2)


def image(rng, shape, offset=0.0, spread=1.0):
    return (rng.standard_normal(shape) * spread + offset).astype(np.float32)


def group_norm64(x, groups, eps, weight=None, bias=None):
    """torch's group_norm in float64: our error, not torch's float32 rounding, which alone reaches
    several 1e-5 where a group's mean is large next to its spread."""
    as64 = lambda a: None if a is None else torch.from_numpy(a).double()
    return F.group_norm(as64(x), groups, as64(weight), as64(bias), eps=eps).numpy()


def diffusers_timestep_embedding(timesteps, dim, flip_sin_to_cos, downscale_freq_shift, exp=torch.exp):
    """diffusers' get_timestep_embedding (diffusers/models/embeddings.py, max_period 10000), step for step
    in torch float32 (diffusers is not a test dependency): frequencies exp(-ln(10000) * i / (half - shift)),
    sines then cosines, swapped by flip_sin_to_cos, an odd dim padded with a zero."""
    half = dim // 2
    exponent = -math.log(10000) * torch.arange(start=0, end=half, dtype=torch.float32)
    exponent = exponent / (half - downscale_freq_shift)
    emb = timesteps[:, None].float() * exp(exponent)[None, :]
    emb = torch.cat([torch.sin(emb), torch.cos(emb)], dim=-1)
    if flip_sin_to_cos:
        emb = torch.cat([emb[:, half:], emb[:, :half]], dim=-1)
    if dim % 2 == 1:
        emb = F.pad(emb, (0, 1, 0, 0))
    return emb


# (N, C, H, W), groups: SD's 32 groups at its latent size (C = 1280: 40 channels, 163840 values a
# group, the largest SD's UNet normalizes), and an odd little image.
@pytest.mark.parametrize("shape, groups", [((1, 1280, 64, 64), 32), ((2, 12, 5, 7), 3)])
def test_group_norm_matches_torch(cpu_level, rng, shape, groups):
    x = image(rng, shape, offset=5.0, spread=2.0)  # an offset mean: cancellation would show
    g = _core.Graph()
    (y,) = run(g, [g.group_norm(g.constant(x), groups, 1e-5)])
    np.testing.assert_allclose(y, F.group_norm(torch.from_numpy(x), groups, eps=1e-5).numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(y, group_norm64(x, groups, 1e-5), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("eps", [1e-5, 1e-6])
def test_group_norm_eps_and_affine(cpu_level, rng, eps):
    # A small spread about a far mean: the variance is near eps, so the wrong eps would show,
    # and the mean is 300 standard deviations out, so would cancellation.
    x = image(rng, (2, 64, 9, 11), offset=-1.0, spread=3e-3)
    weight, bias = image(rng, (64,)), image(rng, (64,))
    g = _core.Graph()
    per_channel = lambda v: g.constant(v.reshape(1, 64, 1, 1))  # ggml [1, 1, C, 1], broadcast over the image
    norm = g.group_norm(g.constant(x), 32, eps)
    (y,) = run(g, [g.add(g.mul(norm, per_channel(weight)), per_channel(bias))])
    ref = group_norm64(x, 32, eps, weight, bias)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6)
    other_eps = group_norm64(x, 32, 1e-5 if eps == 1e-6 else 1e-6, weight, bias)
    assert np.abs(other_eps - ref).max() > 1e-2


def test_group_moments_of_a_window_match_numpy(cpu_level, rng):
    # A 2-image, 12-channel image in 3 groups; the window x in [1, 4), y in [2, 5) of 2-pixel units.
    x = image(rng, (2, 12, 11, 9), offset=4.0, spread=2.0)
    window = np.array([1, 2, 4, 5], dtype=np.int32)
    g = _core.Graph()
    (m,) = run(g, [g.group_moments(g.constant(x), g.constant(window), 3, 2)])
    assert m.shape == (2, 3, 3)  # numpy order: [N, groups, (count, mean, m2)]
    part = x[:, :, 4:10, 2:8].reshape(2, 3, -1).astype(np.float64)  # y 4..10 clamps to the 11 rows, x 2..8
    np.testing.assert_array_equal(m[..., 0], part.shape[-1])
    np.testing.assert_allclose(m[..., 1], part.mean(-1), rtol=1e-6)
    np.testing.assert_allclose(m[..., 2], ((part - part.mean(-1, keepdims=True)) ** 2).sum(-1), rtol=1e-5)
    # A window past the image is clamped to it: nothing is read outside.
    (m,) = run(g := _core.Graph(), [g.group_moments(g.constant(x), g.constant(np.array([3, 0, 99, 99], np.int32)),
                                                    3, 2)])
    np.testing.assert_array_equal(m[..., 0], 4 * 3 * 11)  # x 6..9, every row, 4 channels a group


def test_group_norm_by_given_moments(cpu_level, rng):
    """Normalizing by the moments of the whole image, given, is what a tiled VAE decode does with one tile."""
    whole = image(rng, (1, 8, 10, 12), offset=1.0, spread=2.0)
    tile = whole[:, :, :, 4:]
    groups = whole.reshape(1, 2, -1).astype(np.float64)
    moments = np.stack([groups.mean(-1), groups.var(-1)], axis=-1).astype(np.float32)  # [N, groups, 2]
    g = _core.Graph()
    (y,) = run(g, [g.group_norm(g.constant(np.ascontiguousarray(tile)), 2, 1e-5, g.constant(moments))])
    np.testing.assert_allclose(y, group_norm64(whole, 2, 1e-5)[:, :, :, 4:], rtol=1e-5, atol=1e-5)
    g = _core.Graph()
    with pytest.raises(ValueError, match="moments"):
        g.group_norm(g.constant(tile.copy()), 2, 1e-5, g.constant(moments[:, :1]))


def test_group_norm_of_a_strided_view(cpu_level, rng):
    # Stored (N, H, C, W); permuted to [W, H, C, N] its rows are contiguous but its channel planes are not.
    stored = image(rng, (2, 5, 8, 7), offset=2.0)
    g = _core.Graph()
    view = g.permute(g.constant(stored), 0, 2, 1, 3)
    assert tuple(view.shape) == (2, 8, 5, 7) and not view.contiguous
    (y,) = run(g, [g.group_norm(view, 4, 1e-6)])
    np.testing.assert_allclose(y, group_norm64(stored.transpose(0, 2, 1, 3), 4, 1e-6), rtol=1e-5, atol=1e-6)


def test_group_norm_rejects_groups_that_do_not_split_channels(rng):
    g = _core.Graph()
    with pytest.raises(ValueError, match="5 groups do not split the 12 channels"):
        g.group_norm(g.constant(image(rng, (1, 12, 4, 4))), 5, 1e-5)


@pytest.mark.parametrize("width", [37, 320, 768, 1280])
def test_layer_norm_matches_torch(cpu_level, rng, width):
    x = image(rng, (3, 7, width), offset=4.0)
    weight, bias = image(rng, (width,)), image(rng, (width,))
    g = _core.Graph()
    norm = g.layer_norm(g.constant(x), 1e-5)
    plain, affine = run(g, [norm, g.add(g.mul(norm, g.constant(weight)), g.constant(bias))])
    t = torch.from_numpy(x)
    np.testing.assert_allclose(plain, F.layer_norm(t, (width,), eps=1e-5).numpy(), rtol=1e-5, atol=1e-5)
    ref = F.layer_norm(t, (width,), torch.from_numpy(weight), torch.from_numpy(bias), eps=1e-5).numpy()
    np.testing.assert_allclose(affine, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("factor", [2, 3])
def test_upsample_matches_interpolate_nearest(cpu_level, rng, factor):
    x = image(rng, (2, 12, 5, 7))
    g = _core.Graph()
    (y,) = run(g, [g.upsample(g.constant(x), factor)])
    ref = F.interpolate(torch.from_numpy(x), scale_factor=factor, mode="nearest").numpy()
    assert y.shape == (2, 12, 5 * factor, 7 * factor)
    np.testing.assert_array_equal(y, ref)


def activation_inputs(rng):
    """Every region of the gelus: deep negative tails, the bend, the linear side; 1027: an odd tail."""
    return np.concatenate([np.linspace(-12, 12, 1027, dtype=np.float32), image(rng, (4096,), spread=3.0)])


def test_gelus_match_torch(cpu_level, rng):
    x = activation_inputs(rng)
    g = _core.Graph()
    t = g.constant(x)
    exact, tanh, quick = run(g, [g.gelu_erf(t), g.gelu(t), g.quick_gelu(t)])
    x64 = torch.from_numpy(x).double()  # float64 references: the kernels' own error, not torch's
    np.testing.assert_allclose(exact, F.gelu(x64).numpy(), rtol=1e-6, atol=3e-7)
    np.testing.assert_allclose(tanh, F.gelu(x64, approximate="tanh").numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(quick, (x64 * torch.sigmoid(1.702 * x64)).numpy(), rtol=1e-6, atol=3e-7)
    assert np.abs(exact - tanh).max() > 1e-4  # the two gelus are different ops
    xt = torch.from_numpy(x)
    np.testing.assert_allclose(exact, F.gelu(xt).numpy(), rtol=1e-5, atol=1e-6)


def test_geglu_matches_diffusers(cpu_level, rng):
    x = image(rng, (2, 9, 2 * 37), spread=2.0)
    g = _core.Graph()
    (y,) = run(g, [g.geglu(g.constant(x))])
    hidden, gate = torch.from_numpy(x).double().chunk(2, dim=-1)  # diffusers' GEGLU.forward, after its proj
    np.testing.assert_allclose(y, (hidden * F.gelu(gate)).numpy(), rtol=1e-6, atol=3e-7)
    g = _core.Graph()
    with pytest.raises(ValueError, match="two halves"):
        g.geglu(g.constant(image(rng, (3, 5))))


@pytest.mark.parametrize("dim, flip, shift", [(320, True, 0.0), (1280, True, 0.0), (33, False, 1.0)])
def test_timestep_embedding_matches_diffusers(cpu_level, dim, flip, shift):
    timesteps = np.array([0, 1, 10.5, 250, 999], dtype=np.float32)
    g = _core.Graph()
    (y,) = run(g, [g.timestep_embedding(g.constant(timesteps), dim, flip, shift)])
    t = torch.from_numpy(timesteps)
    assert y.shape == (5, dim)
    # Each float32 step as diffusers takes it, with exp correctly rounded: equal to float rounding.
    rounded_exp = lambda e: torch.exp(e.double()).float()
    np.testing.assert_allclose(y, diffusers_timestep_embedding(t, dim, flip, shift, rounded_exp), rtol=0, atol=1e-6)
    # torch's own float32 exp is an ulp off for a few frequencies (2^-24 near 1), which t = 999
    # turns into angles an ulp or two of 999 (2^-14) apart.
    ref = diffusers_timestep_embedding(t, dim, flip, shift).numpy()
    np.testing.assert_allclose(y, ref, rtol=0, atol=2 * 2.0**-14)
    if flip:
        np.testing.assert_array_equal(y[0, : dim // 2], 1.0)  # t = 0: cos first


def test_concat_along_channels(cpu_level, rng):
    a, b = image(rng, (2, 5, 6, 7)), image(rng, (2, 3, 6, 7))
    g = _core.Graph()
    (y,) = run(g, [g.concat(g.constant(a), g.constant(b), 2)])  # ggml dim 2 is C
    np.testing.assert_array_equal(y, torch.cat([torch.from_numpy(a), torch.from_numpy(b)], dim=1).numpy())
