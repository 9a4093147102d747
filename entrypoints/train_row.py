"""MLproject entry point `train_row`: a thin wrapper around `mixscale train-row`."""

from mixscale.cli import train_row_cmd

if __name__ == "__main__":
    train_row_cmd(prog_name="train_row")
