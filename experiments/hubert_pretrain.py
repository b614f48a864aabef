r"""HuBERT masked-prediction pretraining on unlabeled multilingual audio.

Iteration 1 (MFCC k-means targets, K=100, 100 Hz) on the `paper` benchmark, CPU scale:
  python -m data_prep.extract_features --data_dir D/tfds --datasets commonvoice:en:train,... \
      --features mfcc --fraction 0.1 --out W/feats_mfcc
  python -m data_prep.fit_kmeans --features W/feats_mfcc --out W/km_mfcc --k 100
  python -m data_prep.dump_labels --data_dir D/tfds --datasets ... --kmeans W/km_mfcc --out W/labels_it1
  python -m mlasr.train --config experiments/hubert_pretrain.py:root=D,labels=W/labels_it1,label_rate=100 \
      --workdir W/hubert_it1
Iteration 2: features from layer `layer` of the iteration-1 model (extract_features
--features layer:L --workdir W/hubert_it1), K=500, labels at the encoder frame rate.
BEST-RQ instead of k-means: `targets=bestrq` (no labels, no iterations).
Unlabeled audio mixes in as sources of its own, e.g.
`sources=commonvoice:fi+voxpopuli:fi+voxpopuli_unlabelled:fi+audio_dir:fi` (segments per
config.data.unlabeled; dev metrics from the transcribed sources; docs/real_corpora.md).
papers/hubert_lowres/reproduce.sh runs the whole study.

Deviations from fairseq's HuBERT Base recipe (examples/hubert/config/pretrain/
hubert_base_librispeech.yaml), all for a 2-core CPU: the `tiny` log-mel encoder at 25 Hz,
pre-LN (Base: waveform convs at 50 Hz, post-LN) and therefore mask_length 5 frames (= 200 ms,
as fairseq's 10 frames at 50 Hz); a far smaller batch and step count; lr 1e-3.
`preset=base` restores the Base encoder with fairseq's masking, final_dim and lr.
"""
from mlasr import config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, root="~/mlasr_data/paper", sources=config_lib.BENCHMARK_SOURCES,
                             labels="", label_rate=100.0, targets="labels", steps=3000, preset="tiny",
                             layers=6)
  config = config_lib.base_config("hubert")
  config.total_steps = arg.steps
  config.eval_every = config.checkpoint_every = max(arg.steps // 5, 1)
  config.data.root = arg.root
  config.data.sources = tuple(arg.sources.split("+"))
  config.data.alpha = 0.5             # XLS-R language balance over all unlabeled audio
  config.data.bucket_seconds = (3.0, 4.5, 7.0, 12.0)
  config.data.batch_seconds = 120.0

  config.model.targets = arg.targets  # "labels" (k-means dumps) or "bestrq"
  config.model.labels_dir = arg.labels
  config.model.label_rate = arg.label_rate
  config.model.final_dim = 256
  config.model.logit_temp = 0.1
  config.model.loss.update(pred_masked_weight=1.0, pred_nomask_weight=0.0,
                           feature_pen_weight=10.0)
  if arg.preset == "tiny":
    # Pre-LN, as the demo and the fine-tuning configs: at this scale post-LN (Base) sits
    # on plateaus for hundreds of steps (measured for CTC in experiments/demo_ctc.py).
    config.model.encoder = dict(preset="tiny", num_layers=arg.layers, layer_norm_first=True)
    config.model.masking.update(mask_prob=0.8, mask_length=5, min_masks=2,
                                require_same_masks=True)
    config.optim.lr = 1e-3
    config.optim.warmup_steps = arg.steps // 10
    config.optim.clip_norm = 10.0
  else:  # fairseq hubert_base_librispeech.yaml
    config.model.encoder = dict(preset=arg.preset)
    config.model.masking.update(mask_prob=0.8, mask_length=10, min_masks=2,
                                require_same_masks=True)
    config.optim.lr = 5e-4
    config.optim.warmup_steps = 32000
    config.optim.clip_norm = 10.0
  config.optim.schedule = "warmup_polynomial"
  config.optim.weight_decay = 0.01
  config.optim.b2 = 0.98
  config.optim.eps = 1e-6
  return config
