r"""CTC fine-tuning with the HuBERT Large encoder (316M parameters, pre-LN, LayerNorm conv stack).

  python -m mlasr.train --config experiments/ctc_large.py:root=/data/cv,sources=commonvoice:sw \
      --workdir runs/large_sw --config.init_from=runs/hubert_large

Same recipe as ctc_base.py with the Large encoder (fairseq large_ft_10h: peak LR 3e-5).
Sized for accelerators; see `benchmarks/aot_memory.py` for per-device memory before booking.
"""
from mlasr import config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, root="~/mlasr_data/demo", sources="commonvoice:en",
                             steps=20000, lr=3e-5)
  config = config_lib.base_ctc_config()
  config.total_steps = arg.steps
  config.eval_every = config.checkpoint_every = 1000
  config.data.root = arg.root
  config.data.sources = tuple(arg.sources.split("+"))
  config.data.max_seconds = 15.6
  config.data.bucket_seconds = (4.0, 6.0, 9.0, 15.6)
  config.data.batch_seconds = 200.0
  config.model.encoder = dict(preset="large", layerdrop=0.1, feature_grad_mult=0.0)
  config.model.final_dropout = 0.0
  config.optim.schedule = "tri_stage"
  config.optim.lr = arg.lr
  config.optim.eps = 1e-8
  config.optim.weight_decay = 0.0
  config.optim.clip_norm = 0.0
  return config
