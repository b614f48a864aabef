"""mlasr: multilingual low-resource speech recognition research in JAX."""
import flax

# Parameters carry logical axis names (("embed", "mlp"), ...). mlasr maps them to a mesh
# itself (mlasr.sharding / train.py), so Flax must not try to shard eagerly at creation time,
# which would require a global mesh even on a laptop.
flax.config.update("flax_always_shard_variable", False)

__version__ = "0.1.0"
