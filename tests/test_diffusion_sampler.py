"""The diffusion samplers (csrc/sample/diffusion_sampler.h) against diffusers' schedulers, and the seeded
normal stream they draw from against an independent Python implementation of the same algorithm.

Each sampler/scheduler pair diffusers supports, at several step counts and for eps- and v-prediction, is run
side by side with the diffusers scheduler it is named after (SD's betas, steps_offset 1, otherwise that
class's defaults), both driven by one synthetic model on the same initial latents; the ancestral samplers'
noise reaches diffusers by replacing its randn_tensor with our stream, so both sides add the same numbers.
diffusers is not a test dependency: without it those comparisons skip."""

import math

import numpy as np
import pytest

from quanta import _core

SD_SCHEDULE = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1)
# What diffusers offers Karras sigmas for: EulerDiscrete and DPMSolverMultistep (not EulerAncestral, DDIM, LCM).
PAIRS = [("euler", "discrete"), ("euler", "karras"), ("euler_a", "discrete"), ("ddim", "discrete"),
         ("dpmpp_2m", "discrete"), ("dpmpp_2m", "karras"), ("lcm", "discrete")]
STEPS = [1, 2, 4, 20, 50]
SHAPE = (1, 4, 8, 8)  # a latent batch: the steps are elementwise, so a small one covers them
# Float32 rounding. One step from the same input is bit-exact where diffusers' scalars are (torch's float32
# sqrt, log and exp are within an ulp of ours, not always equal, and which ulp depends on the CPU level torch's
# kernels run at): within 2e-7 of the latents' scale on an AVX-512 machine, but 3.8e-6 for euler_a's first of 2
# v-prediction steps on an AVX2 one, where sigma_down = sqrt(to^2 - up^2) cancels almost entirely. Over a whole
# run the synthetic model amplifies those ulps (its eps has slope up to 1.3, divided by sqrt(alpha) at high
# noise): up to 6e-6 after 20 LCM steps; any real mistake is orders of magnitude above both.
STEP_RTOL = 1e-5
RUN_RTOL = 2e-5


def sd_betas():
    """SD's training betas as diffusers makes them (float32 linspace of sqrt(beta), squared)."""
    import torch
    return (torch.linspace(SD_SCHEDULE["beta_start"] ** 0.5, SD_SCHEDULE["beta_end"] ** 0.5, 1000,
                           dtype=torch.float32) ** 2).numpy()


def diffusers_scheduler(diffusers, sampler, scheduler, prediction):
    karras = scheduler == "karras"
    if sampler == "euler":
        return diffusers.EulerDiscreteScheduler(**SD_SCHEDULE, prediction_type=prediction, use_karras_sigmas=karras)
    if sampler == "euler_a":
        return diffusers.EulerAncestralDiscreteScheduler(**SD_SCHEDULE, prediction_type=prediction)
    if sampler == "ddim":  # as SD's scheduler_config.json sets it (clip_sample would clamp latents to [-1, 1])
        return diffusers.DDIMScheduler(**SD_SCHEDULE, prediction_type=prediction, set_alpha_to_one=False,
                                       clip_sample=False)
    if sampler == "dpmpp_2m":
        return diffusers.DPMSolverMultistepScheduler(**SD_SCHEDULE, prediction_type=prediction,
                                                     algorithm_type="dpmsolver++", solver_order=2,
                                                     lower_order_final=True, use_karras_sigmas=karras)
    return diffusers.LCMScheduler(**SD_SCHEDULE, prediction_type=prediction)


def model(x, t):
    """A smooth deterministic stand-in for the UNet that depends on its input and its timestep."""
    x = x.astype(np.float32)
    return (np.tanh(np.float32(0.3) * x + np.float32(0.001 * t)) + np.sin(x)).astype(np.float32)


def assert_close(got, want, rtol, what):
    """Within rtol of the latents' scale (an element near 0 has no relative error of its own)."""
    want = np.asarray(want, dtype=np.float64)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * max(1.0, float(np.abs(want).max())), err_msg=what)


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("steps", STEPS)
@pytest.mark.parametrize("sampler,scheduler", PAIRS)
def test_matches_diffusers(monkeypatch, sampler, scheduler, steps, prediction):
    diffusers = pytest.importorskip("diffusers")
    torch = pytest.importorskip("torch")
    ref = diffusers_scheduler(diffusers, sampler, scheduler, prediction)
    ref.set_timesteps(steps)
    ours = _core.DiffusionSampler(sd_betas(), 1, prediction, sampler, scheduler, steps, seed=steps)
    np.testing.assert_array_equal(sd_betas(), ref.betas.numpy())

    # The schedule: timesteps (diffusers' ints exactly; euler's fractional ones to rounding), sigmas and the
    # initial noise level.
    want_t = ref.timesteps.numpy()
    if want_t.dtype.kind == "i":
        np.testing.assert_array_equal(ours.timesteps, want_t.astype(np.float32))
    else:
        np.testing.assert_allclose(ours.timesteps, want_t, rtol=1e-6)
    if sampler in ("ddim", "lcm"):  # no sigmas in diffusers: the level of each timestep, then where it ends
        ac = ref.alphas_cumprod
        end = ref.final_alpha_cumprod if sampler == "ddim" else None
        levels = [((1 - ac[int(t)]) / ac[int(t)]) ** 0.5 for t in want_t]
        levels.append(0.0 if end is None else ((1 - end) / end) ** 0.5)
        np.testing.assert_allclose(ours.sigmas, np.array(levels, dtype=np.float64), rtol=1e-6)
    else:
        np.testing.assert_allclose(ours.sigmas, ref.sigmas.numpy(), rtol=1e-6)
    assert ours.init_noise_sigma == pytest.approx(float(ref.init_noise_sigma), rel=1e-6)

    # One stream for both sides: the initial noise, then one draw of the latents' size per randn_tensor call.
    n = math.prod(SHAPE)
    stream = _core.normal_noise(steps, n * (steps + 1)).reshape(steps + 1, *SHAPE)
    draws = iter(stream[1:])
    randn = lambda shape, **_: torch.from_numpy(next(draws).reshape(shape).copy())
    monkeypatch.setattr(diffusers.schedulers.scheduling_euler_ancestral_discrete, "randn_tensor", randn)
    monkeypatch.setattr(diffusers.schedulers.scheduling_lcm, "randn_tensor", randn)

    # ours runs free for the whole trajectory; tracking steps from diffusers' latents each time, which checks
    # each step's arithmetic (and the state it keeps: dpmpp_2m's previous x0, the noise stream) without the
    # run's compounding.
    tracking = _core.DiffusionSampler(sd_betas(), 1, prediction, sampler, scheduler, steps, seed=steps)
    unit = ours.fill_normal(n).reshape(SHAPE)
    np.testing.assert_array_equal(unit, stream[0])  # the sampler's own stream is normal_noise(seed)
    tracking.fill_normal(n)
    x = unit * np.float32(ours.init_noise_sigma)
    y = torch.from_numpy(stream[0].copy()) * ref.init_noise_sigma
    for i, t in enumerate(ref.timesteps):
        what = f"{sampler}/{scheduler}, {steps} steps, {prediction}: step {i}"
        ours.step(i, model(x * np.float32(ours.input_scale(i)), ours.timesteps[i]), x)
        ref_in = ref.scale_model_input(y, t).numpy()
        ref_out = model(ref_in, float(t))
        tracked = y.numpy().copy()
        tracking.step(i, ref_out, tracked)
        y = ref.step(torch.from_numpy(ref_out), t, y).prev_sample
        assert_close(tracked, y.numpy(), STEP_RTOL, what + " (from diffusers' latents)")
        assert_close(x, y.numpy(), RUN_RTOL, what)


# ---- the normal stream: Philox4x32-10 and Box-Muller, written again from the description in normal_rng.h

M32 = 0xFFFFFFFF


def philox4x32_10(ctr, key):
    """Random123's Philox4x32 with 10 rounds, on Python ints."""
    c0, c1, c2, c3 = ctr
    k0, k1 = key
    for r in range(10):
        if r:
            k0, k1 = (k0 + 0x9E3779B9) & M32, (k1 + 0xBB67AE85) & M32
        p0, p1 = 0xD2511F53 * c0, 0xCD9E8D57 * c2
        c0, c1, c2, c3 = (p1 >> 32) ^ c1 ^ k0, p1 & M32, (p0 >> 32) ^ c3 ^ k1, p0 & M32
    return c0, c1, c2, c3


def reference_normals(seed, n):
    out = []
    for b in range((n + 1) // 2):
        w0, w1, w2, w3 = philox4x32_10((b & M32, b >> 32, 0, 0), (seed & M32, seed >> 32))
        u1 = ((((w1 << 32) | w0) >> 11) + 1) * 2.0 ** -53
        u2 = (((w3 << 32) | w2) >> 11) * 2.0 ** -53
        r = math.sqrt(-2.0 * math.log(u1))
        out += [r * math.cos(math.tau * u2), r * math.sin(math.tau * u2)]
    return np.array(out[:n], dtype=np.float32)


def test_reference_philox_is_random123():
    """The reference itself against Random123's published known answers (kat_vectors, philox4x32 10 rounds)."""
    assert philox4x32_10((0, 0, 0, 0), (0, 0)) == (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)
    assert philox4x32_10((M32,) * 4, (M32, M32)) == (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)
    assert philox4x32_10((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0)) == (
        0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)


@pytest.mark.parametrize("seed", [0, 1, 42, 2**32 + 7, 2**64 - 1])
def test_normal_noise_matches_reference(seed):
    np.testing.assert_array_equal(_core.normal_noise(seed, 1001), reference_normals(seed, 1001))


def test_normal_stream_is_one_sequence_however_drawn():
    """Draws of any sizes, odd ones included, continue one stream: the same seed, the same numbers."""
    s = _core.DiffusionSampler(sd_betas(), 1, "epsilon", "euler_a", "discrete", 4, seed=9)
    pieces = np.concatenate([s.fill_normal(k) for k in (3, 1, 0, 6, 5)])
    np.testing.assert_array_equal(pieces, _core.normal_noise(9, 15))
    np.testing.assert_array_equal(_core.normal_noise(9, 15), _core.normal_noise(9, 15))
    assert not np.array_equal(_core.normal_noise(9, 15), _core.normal_noise(10, 15))


def test_normal_noise_statistics():
    n = 1_000_000
    z = _core.normal_noise(123, n).astype(np.float64)
    tol = 5 / math.sqrt(n)  # five standard errors
    assert abs(z.mean()) < tol
    assert abs(z.std() - 1) < tol
    assert abs(np.mean(np.abs(z) < 1) - math.erf(1 / math.sqrt(2))) < tol     # 68.3% within one sigma
    assert abs(np.mean(z > 3) - 0.5 * math.erfc(3 / math.sqrt(2))) < tol / 10  # the tail is there, not clipped
    assert abs(np.corrcoef(z[:-1], z[1:])[0, 1]) < tol  # a block's cosine and sine are uncorrelated
    assert abs(np.corrcoef(z[::2] ** 2, z[1::2] ** 2)[0, 1]) < 2 * tol  # and independent, not just uncorrelated


def test_ancestral_samplers_are_deterministic():
    def run(seed):
        s = _core.DiffusionSampler(sd_betas(), 1, "epsilon", "euler_a", "discrete", 8, seed=seed)
        x = s.fill_normal(64) * np.float32(s.init_noise_sigma)
        for i in range(s.steps):
            s.step(i, model(x * np.float32(s.input_scale(i)), s.timesteps[i]), x)
        return x

    np.testing.assert_array_equal(run(5), run(5))
    assert not np.array_equal(run(5), run(6))


# ---- bad input

@pytest.mark.parametrize("kwargs,message", [
    (dict(sampler="heun"), r'unknown sampler "heun" \(expected one of euler, euler_a, ddim, dpmpp_2m, lcm\)'),
    (dict(scheduler="exponential"), r'unknown scheduler "exponential" \(expected one of discrete, karras\)'),
    (dict(prediction="sample"), r'unknown prediction type "sample"'),
    (dict(steps=0), r"euler with the discrete scheduler: steps must be in \[1, 1000\].*got 0"),
    (dict(steps=1001), r"steps must be in \[1, 1000\].*got 1001"),
    (dict(sampler="ddim", scheduler="karras"), r"ddim with the karras scheduler is not supported"),
    (dict(sampler="lcm", scheduler="karras"), r"lcm with the karras scheduler is not supported"),
    (dict(sampler="euler_a", scheduler="karras"), r"euler_a with the karras scheduler is not supported"),
    (dict(sampler="lcm", steps=51), r"lcm takes at most 50 steps"),
    # "leading" spacing with steps_offset 1 puts 1000 steps' first timestep at 1000 (diffusers: an IndexError)
    (dict(sampler="ddim", steps=1000), r"would start at timestep 1000, outside the 1000 training timesteps"),
    (dict(betas=np.array([0.5], dtype=np.float32)), r"at least 2 betas"),
    (dict(betas=np.array([0.1, 1.0], dtype=np.float32)), r"beta 1 is 1\.0+, not in \(0, 1\)"),
    (dict(steps_offset=-1), r"steps_offset -1 is outside"),
])
def test_bad_arguments(kwargs, message):
    args = dict(betas=sd_betas(), steps_offset=1, prediction="epsilon", sampler="euler", scheduler="discrete",
                steps=20, seed=0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        _core.DiffusionSampler(**args)


def test_bad_steps():
    s = _core.DiffusionSampler(sd_betas(), 1, "epsilon", "dpmpp_2m", "discrete", 2, seed=0)
    x = np.zeros(16, dtype=np.float32)
    with pytest.raises(ValueError, match="expected step 0, got 1"):
        s.step(1, x, x)
    readonly = np.zeros(16, dtype=np.float32)
    readonly.flags.writeable = False
    for bad in (x.astype(np.float64), np.zeros(32, dtype=np.float32)[::2], readonly):  # x is stepped in place
        with pytest.raises(ValueError, match="x must be a C-contiguous, writeable float32 array"):
            s.step(0, x, bad)
    with pytest.raises(ValueError, match="model_output has 15 values, x 16"):
        s.step(0, x[:15], x)
    s.step(0, x, x)
    with pytest.raises(ValueError, match="step 1 has 8 values, the earlier steps 16"):
        s.step(1, x[:8], x[:8].copy())
    s.step(1, x, x)
    with pytest.raises(ValueError, match="all 2 steps have run"):
        s.step(2, x, x)
    with pytest.raises(ValueError, match=r"step 2 is outside \[0, 2\)"):
        s.input_scale(2)
