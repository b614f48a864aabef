r"""Spoken language identification on a frozen pretrained encoder (mlasr/models/lid.py).

  python -m mlasr.train --config experiments/lid.py:root=D,init_from=W/hubert_it2 --workdir W/lid
  python -m mlasr.evaluate --workdir W/lid --split test          # accuracy + confusion matrix
  python -m mlasr.evaluate --workdir W/adapters_1h --adapter_lang auto --lid_workdir W/lid

A learned weighted sum of every encoder layer (layer_weights=1; or one layer: layer_weights=0,
layer=k) -> mean and standard deviation over frames (pooling=stats; or mean) -> LayerNorm ->
linear, cross-entropy over the languages of `sources`. The encoder gets no gradient
(train_encoder=0), so a step costs about one forward pass, and the probe's defaults (2000 steps
at lr 1e-2) are what it needed on the paper benchmark: at 300 steps and lr 2e-3 it stayed near
chance. train_encoder=1 fine-tunes the encoder too, as MMS's LID models do; give it the
fine-tuning budget instead (e.g. steps=500,lr=2e-3).
"""
from mlasr import config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, root="~/mlasr_data/paper",
                             sources=config_lib.BENCHMARK_SOURCES, split="train_1h",
                             init_from="", steps=2000, layers=6, lr=1e-2, train_encoder=0,
                             layer=-1, layer_weights=1, pooling="stats")
  config = config_lib.finetune_config(
      root=arg.root, sources=arg.sources, split=arg.split, init_from=arg.init_from,
      steps=arg.steps, layers=arg.layers, lr=arg.lr, freeze_steps=0, task="lid")
  config.model.layer = arg.layer
  config.model.layer_weights = bool(arg.layer_weights)
  config.model.pooling = arg.pooling
  config.model.train_encoder = bool(arg.train_encoder)
  config.data.alpha = 0.0  # LID: balanced languages, as a classifier prior should be
  config.optim.freeze = (() if arg.train_encoder else (("encoder/.*", -1),))
  return config
