r"""CTC fine-tuning of a pretrained encoder on a tiny labeled set (ML-SUPERB 10 min / 1 h).

  python -m mlasr.train --config experiments/ctc_finetune.py:root=D,split=train_10min,\
init_from=W/hubert_it2 --workdir W/ft_10min
Leave `init_from` empty for the from-scratch baseline with the identical architecture and
budget. HuBERT's fine-tuning recipe (fairseq examples/hubert/config/finetune;
mlasr.config_lib.finetune_config): tri-stage LR, front end frozen throughout, transformer frozen
for the first `freeze_steps` updates, time masking (channel masking off, measured in
config_lib).
"""
from mlasr import config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, root="~/mlasr_data/paper",
                             sources=config_lib.BENCHMARK_SOURCES, split="train_1h",
                             init_from="", steps=1500, layers=6, lr=1e-3, freeze_steps=150)
  return config_lib.finetune_config(**arg)
