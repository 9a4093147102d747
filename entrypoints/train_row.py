"""MLproject entry point `train_row`: a thin wrapper around `mixscale train-row`."""

from mixscale.cli import entry_point, train_row_cmd

if __name__ == "__main__":
    entry_point(train_row_cmd, "train_row")
