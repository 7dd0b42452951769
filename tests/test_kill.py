"""Killed at any point, kres recovers: training, ``--qat`` and export, each SIGKILLed at points
the harness (tests/kill_harness.py) numbers, then resumed (or exported again) as a fresh process.

CI tries a sample of the points, different each run: the seed is printed (and named in every
failure); ``KRES_KILL_SEED=N`` repeats a sample, ``KRES_KILL_SAMPLE=N`` changes its size, and
``python tests/kill_harness.py --full`` tries every point and prints the table.
"""

import os
import random
import time

import pytest

import kill_harness

# One worker makes the uninterrupted runs and tries the whole sample.
pytestmark = pytest.mark.xdist_group("kill")

SAMPLE = int(os.environ.get("KRES_KILL_SAMPLE", "10"))
SEED = int(os.environ.get("KRES_KILL_SEED", str(int(time.time()))))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return kill_harness.make_reference(str(tmp_path_factory.mktemp("kill-reference")))


@pytest.fixture(scope="module")
def points(reference):
    chosen = kill_harness.sample(reference.points, SAMPLE, random.Random(SEED))
    print(f"\nkill harness: {len(reference.points)} points, sample of {len(chosen)} with "
          f"KRES_KILL_SEED={SEED}")
    return chosen


def test_every_phase_has_points_at_each_kind_of_write_and_step(reference):
    names = {(p.phase, p.name.split(":")[0]) for p in reference.points}
    for phase in ("train", "qat"):
        for write in ("config.json", "history.csv", "best.keras", "state.json", "final.keras",
                      "metrics.json", "curves.png"):
            assert (phase, f"write {write}") in names, (phase, write)
        assert any(p.phase == phase and p.name.startswith("batch ") for p in reference.points)
    for step in ("export conversion", "export int8 try", "export verification load",
                 "export deployment report", "export card", "write manifest.json",
                 "export rename"):
        assert ("export", step) in names, step
    assert any(p.torn for p in reference.points)


@pytest.mark.parametrize("slot", range(SAMPLE))
def test_killed_at_a_point_it_recovers_as_if_never_killed(slot, points, reference, tmp_path):
    point = points[slot]
    outcome = kill_harness.try_point(point, reference, str(tmp_path))
    print(f"{point}: killed {outcome.kill_rc}, recovered {outcome.recovery_rc} in "
          f"{outcome.seconds:.0f} s")
    assert outcome.problems == [], f"{point} (KRES_KILL_SEED={SEED}): {outcome.problems}"
