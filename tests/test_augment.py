"""Augmenters against direct references: lengths, SNRs, energies and mask statistics."""
import numpy as np
import pytest
import soundfile as sf
from scipy import signal

import jax
import jax.numpy as jnp

from mlasr.data import augment
from mlasr.models import encoder as encoder_lib, frontends

SR = augment.SAMPLE_RATE


def _sine(freq, seconds=1.0, rate=SR):
  t = np.arange(int(seconds * rate)) / rate
  return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize("factor", [0.9, 1.1, 0.95, 1.2])
def test_speed_perturbation_length_and_pitch(factor):
  x = _sine(440.0, 2.0)
  y = augment.speed_perturb(x, factor)
  assert abs(len(y) - len(x) / factor) <= 1
  # Against scipy's polyphase resampler: reading 16 kHz audio as 16k * factor and resampling.
  up, down = {0.9: (10, 9), 1.1: (10, 11), 0.95: (20, 19), 1.2: (5, 6)}[factor]
  ref = signal.resample_poly(x.astype(np.float64), up, down)
  n = min(len(ref), len(y))
  core = slice(200, n - 200)  # filter edges differ
  np.testing.assert_allclose(y[core], ref[core], atol=2e-3)
  # Speed changes pitch: the tone moves to 440 * factor.
  spec = np.abs(np.fft.rfft(y * np.hanning(len(y))))
  peak = np.argmax(spec) * SR / len(y)
  assert abs(peak - 440 * factor) < 2.0


def test_tempo_perturbation_keeps_pitch():
  x = _sine(440.0, 2.0)
  y = augment.tempo_perturb(x, 1.1)
  assert abs(len(y) - len(x) / 1.1) < 0.01 * len(x)
  spec = np.abs(np.fft.rfft(y * np.hanning(len(y))))
  assert abs(np.argmax(spec) * SR / len(y) - 440) < 3.0


@pytest.mark.parametrize("snr", [-5.0, 0.0, 7.5, 20.0])
@pytest.mark.parametrize("kind", ["white", "pink", "brown"])
def test_noise_mixed_at_the_target_snr(snr, kind):
  rng = np.random.default_rng(0)
  speech = _sine(300.0, 1.5) * np.hanning(int(1.5 * SR)).astype(np.float32)
  noise = augment.generated_noise(kind, len(speech) // 3, rng)  # shorter: tiled
  mixed = augment.mix_at_snr(speech, noise, snr)
  added = mixed.astype(np.float64) - speech
  measured = 10 * np.log10(np.mean(speech.astype(np.float64) ** 2) / np.mean(added ** 2))
  assert abs(measured - snr) < 0.1


def test_colored_noise_spectral_slopes():
  rng = np.random.default_rng(1)
  for kind, slope in (("white", 0.0), ("pink", -1.0), ("brown", -2.0)):
    x = augment.generated_noise(kind, 2 ** 16, rng)
    f, p = signal.welch(x, SR, nperseg=4096)
    band = (f > 100) & (f < 4000)
    fitted = np.polyfit(np.log10(f[band]), np.log10(p[band]), 1)[0]
    assert abs(fitted - slope) < 0.15, (kind, fitted)


def test_reverberation_energy_and_alignment():
  rng = np.random.default_rng(2)
  for rir in augment.simulate_rirs(4, (0.3, 0.8), seed=0) + [augment.exponential_rir(0.5, rng)]:
    white = rng.standard_normal(SR * 4).astype(np.float32)
    y = augment.reverberate(white, rir)
    assert len(y) == len(white)
    # Unit-energy RIR: the power of a white input is kept.
    assert abs(augment.power(y[SR:]) / augment.power(white[SR:]) - 1) < 0.08
    # Aligned on the direct path: an impulse comes out where it went in.
    impulse = np.zeros(SR, np.float32)
    impulse[4000] = 1.0
    assert int(np.argmax(np.abs(augment.reverberate(impulse, rir)))) == 4000


def test_simulated_rooms_reach_their_rt60():
  """Schroeder backward integration of each simulated RIR gives an RT60 near the target."""
  for rt60, rir in zip(np.linspace(0.3, 0.9, 3),
                       [augment.simulate_rirs(1, (t, t), seed=3)[0] for t in (0.3, 0.6, 0.9)]):
    energy = np.cumsum(rir[::-1] ** 2)[::-1]
    edc = 10 * np.log10(energy / energy[0] + 1e-12)
    t5, t25 = np.argmax(edc < -5), np.argmax(edc < -25)  # T20 fit, extrapolated to 60 dB
    measured = 3 * (t25 - t5) / SR
    assert 0.5 * rt60 < measured < 1.6 * rt60, (rt60, measured)


def test_band_limit_and_lower_rate_remove_high_frequencies():
  x = _sine(1000.0) + _sine(6000.0)
  for y in (augment.band_limit(x, 300, 3400), augment.through_rate(x, 8000)):
    assert len(y) == len(x)
    spec = np.abs(np.fft.rfft(y))
    hz = np.fft.rfftfreq(len(y), 1 / SR)
    keep, cut = spec[np.argmin(abs(hz - 1000))], spec[np.argmin(abs(hz - 6000))]
    assert keep > 0.7 * np.abs(np.fft.rfft(x))[np.argmin(abs(hz - 1000))]
    assert cut < 0.01 * keep


def test_noise_directory_in_musan_layout(tmp_path):
  noise_dir = tmp_path / "musan" / "noise" / "free-sound"
  noise_dir.mkdir(parents=True)
  tone = _sine(2500.0, 0.5, rate=8000)  # another rate: resampled on load
  sf.write(noise_dir / "noise-free-sound-0000.wav", tone, 8000)
  cfg = augment.AugmentConfig(noise_prob=1.0, noise_dirs=(str(tmp_path / "musan"),),
                              noise_kinds=(), noise_snr_db=(10.0, 10.0))
  aug = augment.Augmenter(cfg, seed=0)
  assert aug.noise_files == [str(noise_dir / "noise-free-sound-0000.wav")]
  speech = _sine(200.0, 1.0)
  y, applied = aug(speech, aug.rng(0, 0, 0))
  assert applied["noise"] == ("noise-free-sound-0000.wav", 10.0)
  spec = np.abs(np.fft.rfft(y - speech))
  assert abs(np.argmax(spec) * SR / len(y) - 2500) < 3


def test_babble_comes_from_the_other_rows():
  cfg = augment.AugmentConfig(babble_prob=1.0, babble_talkers=(2, 2), babble_snr_db=(0.0, 0.0))
  aug = augment.Augmenter(cfg, seed=0)
  speech = _sine(200.0)
  others = [_sine(1500.0), _sine(2500.0), np.zeros(SR, np.float32)]
  y, applied = aug(speech, aug.rng(3, 0, 1), others=others)
  assert applied["babble"] == (2, 0.0)
  added = y - speech
  assert abs(10 * np.log10(augment.power(speech) / augment.power(added))) < 0.1


def test_augmentation_is_a_function_of_seed_step_row():
  cfg = augment.AugmentConfig(speed_factors=(0.9, 1.0, 1.1), noise_prob=0.5, babble_prob=0.5,
                              reverb_prob=0.5, channel_prob=0.5, simulated_rirs=8)
  a, b = augment.Augmenter(cfg, seed=7), augment.Augmenter(cfg, seed=7)
  x = np.random.default_rng(0).standard_normal(SR).astype(np.float32) * 0.1
  others = [x[::-1].copy(), np.roll(x, 100)]
  ya, aa = a(x, a.rng(5, 0, 2), others)
  yb, ab = b(x, b.rng(5, 0, 2), others)
  np.testing.assert_array_equal(ya, yb)
  assert aa == ab
  yc, _ = a(x, a.rng(6, 0, 2), others)
  assert not np.array_equal(ya, yc)


def test_config_errors_name_the_field(tmp_path):
  with pytest.raises(ValueError, match="unknown fields.*'nosie_prob'"):
    augment.AugmentConfig.from_dict({"nosie_prob": 0.5})
  with pytest.raises(ValueError, match="does not exist"):
    augment.AugmentConfig.from_dict({"noise_dirs": [str(tmp_path / "missing")]})
  with pytest.raises(ValueError, match="no audio files"):
    augment.Augmenter(augment.AugmentConfig(noise_prob=1.0, noise_dirs=(str(tmp_path),)), 0)


def _brute_force_masks(rng, cfg: frontends.SpecAugment, length, t, f):
  """The SpecAugment policy written out with numpy, one mask at a time."""
  freq = np.zeros(f, bool)
  for _ in range(cfg.freq_masks):
    w = rng.integers(0, min(cfg.freq_width, f) + 1)
    s = rng.integers(0, f - w + 1)
    freq[s:s + w] = True
  time = np.zeros(t, bool)
  for _ in range(min(int(cfg.time_mask_rate * length), cfg.max_time_masks)):
    w = rng.integers(0, int(cfg.time_width_ratio * length) + 1)
    s = rng.integers(0, length - w + 1)
    time[s:s + w] = True
  return freq, time


def test_specaugment_masked_fraction_statistics():
  spec = frontends.SpecAugment(freq_masks=2, freq_width=27, time_mask_rate=0.04,
                               time_width_ratio=0.05, max_time_masks=20)
  b, t, f = 512, 400, 80
  lengths = jnp.asarray(np.random.default_rng(0).integers(100, t + 1, b))
  freq, time = jax.jit(spec.masks, static_argnums=1)(jax.random.key(0), (b, t, f), lengths)
  freq, time, lengths = np.asarray(freq), np.asarray(time), np.asarray(lengths)
  assert not any(time[i, lengths[i]:].any() for i in range(b))  # padding never masked
  rng = np.random.default_rng(1)
  ref = [_brute_force_masks(rng, spec, int(n), t, f) for n in lengths for _ in range(4)]
  ref_freq = np.mean([fm.mean() for fm, _ in ref])
  ref_time = np.mean([tm[:n].mean() for (_, tm), n in zip(ref, np.repeat(lengths, 4))])
  got_time = np.mean([time[i, :n].mean() for i, n in enumerate(lengths)])
  assert abs(freq.mean() - ref_freq) < 0.02, (freq.mean(), ref_freq)
  assert abs(got_time - ref_time) < 0.02, (got_time, ref_time)
  # Sanity against the closed form for one mask: E[width] / F.
  one = frontends.SpecAugment(1, 27, 0.0, 0.05, 20)
  single, _ = one.masks(jax.random.key(1), (4096, 10, f), jnp.full((4096,), 10))
  assert abs(float(np.asarray(single).mean()) - 13.5 / f) < 0.01


def test_specaugment_only_in_training():
  cfg = encoder_lib.get_config("tiny", specaug_freq_masks=2, specaug_time_mask_rate=0.05)
  from flax import nnx
  enc = encoder_lib.Encoder(cfg, rngs=nnx.Rngs(params=0, dropout=1))
  plain = encoder_lib.Encoder(encoder_lib.get_config("tiny"), rngs=nnx.Rngs(params=0, dropout=1))
  audio = jnp.asarray(np.random.default_rng(0).standard_normal((2, 24000)), jnp.float32)
  mask = jnp.ones_like(audio, bool)
  feats_eval, _ = enc.frontend(audio, mask, deterministic=True)
  feats_plain, _ = plain.frontend(audio, mask, deterministic=True)
  np.testing.assert_array_equal(np.asarray(feats_eval), np.asarray(feats_plain))
  feats_train, _ = enc.frontend(audio, mask, deterministic=False)
  zeroed = np.asarray(feats_train) == 0
  assert zeroed.mean() > 0.05 and not (np.asarray(feats_plain) == 0).any()
