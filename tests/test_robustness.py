"""mlasr.evaluators.robustness: the SoX conditions do what their names say."""
import numpy as np
import pytest

from mlasr.evaluators import robustness

SR = robustness.SAMPLE_RATE


def _speechlike(seconds=1.5):
  t = np.arange(int(seconds * SR)) / SR
  x = sum(np.sin(2 * np.pi * f * t) / (k + 1) for k, f in enumerate((220, 1100, 2700, 5500)))
  return (0.2 * x * (1 + np.sin(2 * np.pi * 3 * t)) / 2).astype(np.float32)


def _band_energy(x, lo, hi):
  spec = np.abs(np.fft.rfft(x)) ** 2
  freqs = np.fft.rfftfreq(len(x), 1 / SR)
  return spec[(freqs >= lo) & (freqs < hi)].sum() / spec.sum()


@pytest.mark.parametrize("name", [n for n, f in robustness.CONDITIONS.items() if f])
def test_condition_keeps_length_and_is_deterministic(name):
  x = _speechlike()
  fn = robustness.CONDITIONS[name]
  y = fn(x, np.random.default_rng(3))
  assert y.shape == x.shape and y.dtype == np.float32 and np.isfinite(y).all()
  np.testing.assert_array_equal(y, fn(x, np.random.default_rng(3)))
  assert not np.allclose(y, x, atol=1e-3)  # it changed the audio


def test_phone_codecs_remove_the_upper_band():
  x = _speechlike()
  assert _band_energy(x, 4000, 8000) > 0.03  # the 5.5 kHz partial
  for fn in (robustness.gsm_phone, robustness.amr_nb):
    assert _band_energy(fn(x, None), 4000, 8000) < 0.005


def test_cafe_noise_is_mixed_at_10_db():
  x = _speechlike()
  y = robustness.cafe_10db(x, np.random.default_rng(0))
  snr = 10 * np.log10(np.mean(x ** 2) / np.mean((y - x) ** 2))
  assert abs(snr - 10.0) < 0.1
  other = robustness.cafe_10db(x, np.random.default_rng(1))
  assert not np.array_equal(y, other)  # the seed reaches SoX


def test_transformed_batches_cap_each_language():
  class Fake:
    def batches(self):
      for _ in range(3):
        yield dict(audio=np.ones((4, 100), np.float32),
                   audio_mask=np.ones((4, 100), np.int32),
                   example_mask=np.array([1, 1, 1, 0], np.int32),
                   lang=np.array(["hi", "ru", "hi", ""], dtype=object))

  out = list(robustness._Transformed(Fake(), lambda x, rng: 0 * x, max_per_lang=3).batches())
  kept = [str(l) for b in out for l, m in zip(b["lang"], b["example_mask"]) if m]
  assert sorted(kept) == ["hi"] * 3 + ["ru"] * 3
  assert all((b["audio"][b["example_mask"] > 0] == 0).all() for b in out)
  assert len(out) == 3  # batch 3 still has a Russian row
