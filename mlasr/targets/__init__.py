"""Self-supervised pretraining targets: MFCC / layer-feature k-means labels and BEST-RQ.

- `mfcc`: 39-d MFCC (+Δ+ΔΔ) at 100 Hz in JAX (HuBERT iteration 1 features).
- `kmeans`: k-means++ / Lloyd / mini-batch k-means in JAX, streaming and data-parallel.
- `align`: label-rate ↔ encoder-frame arithmetic (fairseq's `floor(i * label_rate / frame_rate)`).
- `labels`: `LabelStore`, the array_record label dumps read by the input pipeline.
- `bestrq`: frozen random-projection quantizer targets computed inside the jitted step.
"""
