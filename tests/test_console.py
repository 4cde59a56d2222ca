"""The run log: every epoch line in train.log, a rate-limited few on the console."""

from nnrun import console as console_module
from nnrun.console import EPOCH_LINES_PER_SECOND, RunLog


def test_every_epoch_reaches_train_log_and_the_console_shows_a_few_and_the_last(tmp_path, capsys):
    log = RunLog(tmp_path / "train.log")
    console_module.console.file = None  # rich writes to the (captured) sys.stdout
    for epoch in range(1, 2001):
        log.epoch(f"epoch {epoch}/2000")
    log.print("completed")
    log.close()
    lines = (tmp_path / "train.log").read_text().splitlines()
    assert lines[:2000] == [f"epoch {e}/2000" for e in range(1, 2001)] and lines[-1] == "completed"
    shown = capsys.readouterr().out.splitlines()
    assert shown[0] == "epoch 1/2000" and shown[-2:] == ["epoch 2000/2000", "completed"]
    assert len(shown) <= 2 + 10 * EPOCH_LINES_PER_SECOND  # 2,000 epochs take well under ten seconds


def test_a_progress_bar_replaces_the_epoch_lines(tmp_path, capsys):
    log = RunLog(tmp_path / "train.log", quiet_console=True)
    log.epoch("epoch 1/1")
    log.close()
    assert capsys.readouterr().out == "" and (tmp_path / "train.log").read_text() == "epoch 1/1\n"
