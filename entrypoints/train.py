"""MLproject entry point `train`: a thin wrapper around `mixscale train`."""

from mixscale.cli import entry_point, train_cmd

if __name__ == "__main__":
    entry_point(train_cmd, "train")
