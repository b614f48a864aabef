r"""CTC fine-tuning with the HuBERT Base (95M parameters) or Large (316M) encoder.

  python -m mlasr.train --config experiments/ctc_hubert.py:preset=base,root=/data/cv,\
sources=commonvoice:sw --workdir runs/base_sw [--config.init_from=runs/hubert_base_it2]
  python -m mlasr.train --config experiments/ctc_hubert.py:preset=large,root=/data/cv,\
sources=commonvoice:sw --workdir runs/large_sw --config.init_from=runs/hubert_large

fairseq's examples/hubert/config/finetune recipes (base_10h, large_ft_10h): tri-stage LR
(10/40/50 %), peak 5e-5 for Base and 3e-5 for Large (2e-5 suits 10 min / 1 h), Adam betas
(0.9, 0.98), conv extractor frozen, final dropout 0.0, layerdrop 0.1. From scratch it is only
a baseline; it needs a pretrained encoder (config.init_from) to be useful on tiny labeled
sets. Sized for accelerators, too slow for a 2-core CPU beyond smoke tests (docs/scaling.md;
`benchmarks/aot_memory.py` gives the per-device memory before a pod is booked).
The fine-tuning knobs of experiments/ctc_finetune.py (head_lr_mult, layer_decay, head_layer,
layer_weights) are arguments here too.
"""
from mlasr import config_lib

PEAK_LR = {"base": 5e-5, "large": 3e-5}


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, preset="base", root="~/mlasr_data/demo",
                             sources="commonvoice:en", steps=20000, lr=0.0, head_lr_mult=1.0,
                             layer_decay=1.0, head_layer=-1, layer_weights=False)
  if arg.preset not in PEAK_LR:
    raise ValueError(f"preset={arg.preset!r}: use one of {sorted(PEAK_LR)}")
  config = config_lib.base_config("ctc")
  config.total_steps = arg.steps
  config.eval_every = config.checkpoint_every = 1000
  config.data.root = arg.root
  config.data.sources = tuple(arg.sources.split("+"))
  config.data.max_seconds = 15.6
  config.data.bucket_seconds = (4.0, 6.0, 9.0, 15.6)
  config.data.batch_seconds = 200.0   # per host; fairseq base_10h: 3.2M samples/GPU x 8
  config.model.encoder = dict(preset=arg.preset, layerdrop=0.1, feature_grad_mult=0.0)
  config.model.final_dropout = 0.0
  config.optim.schedule = "tri_stage"
  config.optim.lr = arg.lr or PEAK_LR[arg.preset]
  config.optim.b2 = 0.98
  config.optim.eps = 1e-8
  config.optim.weight_decay = 0.0
  config.optim.clip_norm = 0.0
  # Fine-tuning knobs, off by default (experiments/ctc_finetune.py lists them).
  config_lib.set_finetune_knobs(config, head_lr_mult=arg.head_lr_mult,
                                layer_decay=arg.layer_decay, head_layer=arg.head_layer,
                                layer_weights=arg.layer_weights)
  return config
