"""Trial logs on disk: offsets over the whole output, resends, the last MiB kept, reused ids."""

from __future__ import annotations

from pathlib import Path

from hpsearch.trial_logs import TrialLogs


def test_pieces_append_once_and_a_reader_follows_by_offset(tmp_path: Path) -> None:
    logs = TrialLogs(tmp_path)
    assert logs.read(7).attempt is None and logs.read(7).text == ""
    assert logs.append(7, 1, 0, "épsilon\n") == 9  # bytes, not characters
    assert logs.append(7, 1, 0, "épsilon\n") == 9  # a resend after a lost reply
    assert logs.append(7, 1, 9, "two\n") == 13
    assert logs.append(7, 1, 5, "lon\ntwo\nthree\n") == 19  # overlaps what is there
    first = logs.read(7)
    assert (first.attempt, first.text, first.next_offset) == (1, "épsilon\ntwo\nthree\n", 19)
    assert logs.read(7, offset=13).text == "three\n"
    logs.append(7, 2, 0, "retry\n")
    assert logs.read(7).attempts == [1, 2] and logs.read(7).text == "retry\n"
    assert logs.read(7, attempt=1).text.startswith("épsilon")


def test_only_the_last_mib_of_an_attempt_is_kept_from_a_line_start(tmp_path: Path) -> None:
    logs = TrialLogs(tmp_path, max_bytes=1000)
    offset = 0
    for i in range(100):
        offset = logs.append(3, 1, offset, f"line {i:03d} ✓\n")  # 13 bytes a line
    whole = logs.read(3)
    assert whole.next_offset == 1300
    assert whole.offset > 0 and len(whole.text.encode()) <= 1000 + 250
    assert whole.text.startswith("line ") and whole.text.endswith("line 099 ✓\n")
    behind = logs.read(3, offset=10)
    assert behind.truncated and behind.offset == whole.offset


def test_a_first_attempt_starting_again_clears_what_an_old_trial_left(tmp_path: Path) -> None:
    """SQLite may give a deleted trial's id to a new trial: its logs are not the new one's."""
    logs = TrialLogs(tmp_path)
    logs.append(5, 1, 0, "old trial\n")
    logs.append(5, 2, 0, "old trial, retried\n")
    logs.append(5, 1, 0, "new trial\n")
    assert logs.read(5).attempts == [1]
    assert logs.read(5).text == "new trial\n"
