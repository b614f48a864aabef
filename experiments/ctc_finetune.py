r"""CTC fine-tuning of a pretrained encoder on a tiny labeled set (ML-SUPERB 10 min / 1 h).

  python -m mlasr.train --config experiments/ctc_finetune.py:root=D,split=train_10min,\
init_from=W/hubert_it2 --workdir W/ft_10min
Leave `init_from` empty for the from-scratch baseline with the identical architecture and
budget. HuBERT's fine-tuning recipe (fairseq examples/hubert/config/finetune;
mlasr.config_lib.finetune_config): tri-stage LR, front end frozen throughout, transformer frozen
for the first `freeze_steps` updates, time masking (channel masking off, measured in
config_lib).

Fine-tuning knobs, one override each, all off by default (papers/hubert_lowres/README.md,
"Fine-tuning knobs"):
  head_lr_mult=10    the head (every parameter outside encoder/) at 10x the encoder's lr
  layer_decay=0.75   layer-wise lr decay: block i of L at lr * 0.75^(L - i), front end lowest
  freeze_steps=0     no frozen period for the transformer (the front end stays frozen)
  layer_weights=1    the CTC head on a learned softmax-weighted sum of every encoder layer
  head_layer=3       the CTC head on block 3's output (0 = transformer input, -1 = the last)
"""
from mlasr import config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, root="~/mlasr_data/paper",
                             sources=config_lib.BENCHMARK_SOURCES, split="train_1h",
                             init_from="", steps=1500, layers=6, lr=1e-3, freeze_steps=150,
                             head_lr_mult=1.0, layer_decay=1.0, head_layer=-1,
                             layer_weights=False)
  return config_lib.finetune_config(**arg)
