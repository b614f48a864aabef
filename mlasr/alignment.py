"""CTC forced alignment: the single best frame-level path of a known label sequence, and the
word timings and confidences read off it (mlasr.transcribe's timestamps).

The path is the Viterbi path through the CTC topology of the labels y_1..y_N: the extended
sequence blank, y_1, blank, y_2, ..., y_N, blank (2N + 1 states); each frame stays in its
state, moves one state on, or skips a blank between two *different* labels (a repeated label
needs the blank between, or the two would collapse into one). The path starts in the first
blank or y_1 and ends in y_N or the last blank. Its score is the sum of the frames' log-
posteriors along it (the max over alignments, where the CTC loss takes the log-sum-exp).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

BLANK_ID = 0
NEG_INF = -np.inf


@dataclasses.dataclass(frozen=True)
class Alignment:
  token_of_frame: np.ndarray  # [T] int: index into the label sequence, -1 on blank frames
  labels: np.ndarray          # [T] int: the vocabulary id emitted per frame (blank = 0)
  score: float                # sum of log_probs along the path


def feasible(tokens: Sequence[int], num_frames: int) -> bool:
  """Whether any CTC path of `tokens` fits in `num_frames` (labels + repeats <= frames)."""
  repeats = sum(a == b for a, b in zip(tokens[:-1], tokens[1:]))
  return len(tokens) + repeats <= num_frames


def forced_align(log_probs: np.ndarray, tokens: Sequence[int], blank: int = BLANK_ID
                 ) -> Alignment:
  """The best CTC path of `tokens` through `log_probs` [T, V] (real frames only).

  Raises ValueError when no path exists (too few frames for the labels and their repeats).
  """
  log_probs = np.asarray(log_probs, np.float64)
  tokens = np.asarray(tokens, np.int64)
  t_frames = log_probs.shape[0]
  if not feasible(tokens.tolist(), t_frames):
    raise ValueError(f"no CTC path: {len(tokens)} labels (with repeats) in {t_frames} frames")
  ext = np.full(2 * len(tokens) + 1, blank, np.int64)
  ext[1::2] = tokens
  n_states = len(ext)
  # A skip into state s (from s - 2) is allowed for labels that differ from the label before.
  skip = np.zeros(n_states, bool)
  skip[3::2] = tokens[1:] != tokens[:-1]
  emit = log_probs[:, ext]  # [T, S]
  delta = np.full(n_states, NEG_INF)
  delta[0] = emit[0, 0]
  if n_states > 1:
    delta[1] = emit[0, 1]
  back = np.zeros((t_frames, n_states), np.int8)  # 0 stay, 1 from s-1, 2 from s-2
  for t in range(1, t_frames):
    stay = delta
    step = np.concatenate([[NEG_INF], delta[:-1]])
    jump = np.where(skip, np.concatenate([[NEG_INF, NEG_INF], delta[:-2]]), NEG_INF)
    cands = np.stack([stay, step, jump])
    choice = np.argmax(cands, axis=0)
    back[t] = choice
    delta = cands[choice, np.arange(n_states)] + emit[t]
  ends = [n_states - 1] + ([n_states - 2] if n_states > 1 else [])
  state = max(ends, key=lambda s: delta[s])
  score = float(delta[state])
  states = np.empty(t_frames, np.int64)
  for t in range(t_frames - 1, -1, -1):
    states[t] = state
    state -= int(back[t, state])  # a Python int: numpy int8 arithmetic would wrap
  token_of_frame = np.where(states % 2 == 1, (states - 1) // 2, -1)
  return Alignment(token_of_frame=token_of_frame, labels=ext[states], score=score)


def token_spans(alignment: Alignment, num_tokens: int) -> list[tuple[int, int]]:
  """[first frame, last frame + 1) of each label of the sequence along the path."""
  spans = []
  for k in range(num_tokens):
    frames = np.flatnonzero(alignment.token_of_frame == k)
    spans.append((int(frames[0]), int(frames[-1]) + 1))
  return spans


def word_timings(tokens: Sequence[int], id_strings: Sequence[str], alignment: Alignment,
                 log_probs: np.ndarray, frame_seconds: float, offset: float = 0.0
                 ) -> list[dict]:
  """Words of the aligned hypothesis with start/end seconds and a confidence.

  A word is a maximal run of non-space characters in the tokens' strings (a character
  vocabulary's `|` token, or a word piece's leading space, separates words). Its time span
  runs from the first frame of its first token to the end of its last token's last frame;
  its confidence is the mean posterior of the frames where its tokens are emitted (blank
  frames around it are not evidence for or against the word).
  """
  spans = token_spans(alignment, len(tokens))
  frame_posterior = np.exp(np.asarray(log_probs, np.float64)[
      np.arange(len(alignment.labels)), alignment.labels])
  words, current, owners = [], "", []

  def close():
    nonlocal current, owners
    if current:
      frames = np.concatenate([np.flatnonzero(alignment.token_of_frame == k) for k in owners])
      start, end = spans[owners[0]][0], spans[owners[-1]][1]
      words.append(dict(word=current, start=round(offset + start * frame_seconds, 3),
                        end=round(offset + end * frame_seconds, 3),
                        confidence=round(float(frame_posterior[frames].mean()), 4)))
    current, owners = "", []

  for k, token in enumerate(tokens):
    for ch in id_strings[token]:
      if ch == " ":
        close()
      else:
        current += ch
        if not owners or owners[-1] != k:
          owners.append(k)
  close()
  return words
