r"""CTC fine-tuning of a pretrained encoder on a tiny labeled set (ML-SUPERB 10 min / 1 h).

  python -m mlasr.train --config experiments/ctc_finetune.py:root=D,split=train_10min,\
init_from=W/hubert_it2 --workdir W/ft_10min
Leave `init_from` empty for the from-scratch baseline with the identical architecture and
budget. HuBERT's fine-tuning recipe (ANCHORS.md): tri-stage LR, front end frozen throughout,
transformer frozen for the first `freeze_steps` updates, time and channel masking.
"""
from mlasr import config_lib

PAPER_SOURCES = ("commonvoice:en+commonvoice:it+commonvoice:ca+commonvoice:ru+commonvoice:hi+"
                 "commonvoice:mr+commonvoice:te+voxpopuli:cs+voxpopuli:fi")


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, root="~/mlasr_data/paper", sources=PAPER_SOURCES,
                             split="train_1h", init_from="", steps=1500, layers=6, lr=1e-3,
                             freeze_steps=150)
  config = config_lib.base_ctc_config()
  config.total_steps = arg.steps
  config.eval_every = 0
  config.checkpoint_every = max(arg.steps // 5, 1)
  config.init_from = arg.init_from
  config.data.root = arg.root
  config.data.sources = tuple(arg.sources.split("+"))
  config.data.train_split = arg.split
  config.data.bucket_seconds = (3.0, 4.5, 7.0, 12.0)
  config.data.batch_seconds = 60.0
  # Same encoder as experiments/hubert_pretrain.py (tiny, pre-LN) so init_from fits.
  config.model.encoder = dict(preset="tiny", num_layers=arg.layers, layer_norm_first=True)
  config.model.finetune_masking = dict(mask_prob=0.3, mask_length=5, mask_channel_prob=0.25,
                                       mask_channel_length=16)
  config.optim.schedule = "tri_stage"
  config.optim.lr = arg.lr
  config.optim.freeze = (("encoder/frontend/.*", -1), ("encoder/.*", arg.freeze_steps)) \
      if arg.init_from else ()
  return config
