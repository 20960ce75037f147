"""Synthetic latency samples shaped like the machines bench runs on (no onnxruntime).

One simulated run of a setting: ``pairs`` session pairs, each timed for ``rounds`` interleaved
rounds. What makes a benchmark lie is modelled explicitly:

- **session offsets**: every session (each side of each pair) runs at its own speed,
  ``exp(N(0, session_sd))`` (memory placement, allocator state, thread scheduling);
- **drift**: the machine speeds up and slows down over the run (a slow trend plus a
  sinusoid of amplitude ``drift``), shared by both models of a round but not by two pairs;
- **per-call noise**: ``exp(N(0, noise_sd))``, and with probability ``outlier_rate`` a call
  that takes 5x as long (preemption);
- **preempted sessions**: with probability ``preempted_rate`` a session runs 20x slower for
  its whole pair (its thread pool kept losing the CPU on a busy machine).

The candidate's true latency is ``base / effect``: ``effect = 1.1`` is a 10% speedup.
"""

from __future__ import annotations

import numpy as np

BASE_MS = 0.03  # a ~30 µs model


def simulate_run(
    rng: np.random.Generator,
    *,
    effect: float = 1.0,
    pairs: int = 20,
    rounds: int = 100,
    session_sd: float = 0.04,
    drift: float = 0.15,
    noise_sd: float = 0.05,
    outlier_rate: float = 0.01,
    preempted_rate: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Latencies ``(original, candidate)``, each of shape ``[pairs, rounds]`` in ms."""
    total = pairs * rounds
    t = (np.arange(pairs)[:, None] * rounds + np.arange(rounds)[None, :]) / total
    machine = 1.0 + drift * t + drift * np.sin(2 * np.pi * 3.3 * t)
    offsets = np.exp(rng.normal(0.0, session_sd, size=(2, pairs, 1)))
    offsets *= np.where(rng.random((2, pairs, 1)) < preempted_rate, 20.0, 1.0)

    def calls(true_ms: float, offset: np.ndarray) -> np.ndarray:
        noise = np.exp(rng.normal(0.0, noise_sd, size=(pairs, rounds)))
        outliers = np.where(rng.random((pairs, rounds)) < outlier_rate, 5.0, 1.0)
        return true_ms * machine * offset * noise * outliers

    return calls(BASE_MS, offsets[0]), calls(BASE_MS / effect, offsets[1])
