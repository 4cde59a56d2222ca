"""The run folder read back: metrics.csv as a killed or damaged run leaves it."""

import pytest

from nnrun.errors import UserError
from nnrun.runs import read_metrics

HEADER = "epoch,lr,train_loss,val_loss,val_accuracy\n"


def write(tmp_path, text: str):
    path = tmp_path / "metrics.csv"
    path.write_text(text)
    return path


def test_complete_rows_read_as_floats(tmp_path):
    metrics, notes = read_metrics(write(tmp_path, HEADER + "1,0.1,0.5,0.6,0.7\n2,0.1,nan,0.5,0.8\n"))
    assert metrics["epoch"] == [1.0, 2.0] and metrics["val_accuracy"] == [0.7, 0.8] and notes == []


def test_a_torn_last_row_is_left_out_even_when_every_cell_is_there(tmp_path):
    metrics, notes = read_metrics(write(tmp_path, HEADER + "1,0.1,0.5,0.6,0.7\n2,0.1,0.4,0.5,0.8"))  # no newline
    assert metrics["epoch"] == [1.0] and notes == ["left out 1 incomplete row(s) of metrics.csv"]
    metrics, _ = read_metrics(write(tmp_path, HEADER + "1,0.1,0.5,0.6,0.7\n2,0.1,0."))
    assert metrics["epoch"] == [1.0]


def test_a_row_with_an_extra_cell_does_not_shift_the_columns(tmp_path):
    metrics, notes = read_metrics(write(tmp_path, HEADER + "1,0.1,0.5,0.6,0.7,9\n2,0.1,0.4,0.5,0.8\n"))
    assert metrics["epoch"] == [1.0, 2.0] and metrics["lr"] == [0.1, 0.1]
    assert "more cells than its header" in notes[0]


def test_empty_and_unparseable_files(tmp_path):
    assert read_metrics(write(tmp_path, ""))[0] == {}
    with pytest.raises(UserError, match="is damaged"):
        read_metrics(write(tmp_path, HEADER + '1,0.1,"0.5,0.6,0.7\n'))
