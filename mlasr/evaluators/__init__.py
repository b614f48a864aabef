"""Evaluators, one module per kind of evaluation, and the report writers.

- `asr`: decoding an eval set (greedy, beam, beam + LM) and CER/WER scoring; the CTC task's dev
  metrics.
- `lid`: language-identification accuracy and confusion matrix; the LID task's dev metrics.
- `masked_prediction`: HuBERT / BEST-RQ dev loss and accuracies.
- `report` (results structure, JSON/Markdown/PNG/trn), `errors` (error analysis), `compare`
  (greedy vs LM table), `robustness` (unseen channel/codec/room/noise conditions).

mlasr.evaluate is the command line that picks the checkpoint, decoder, adapters and test set.
"""
