"""MLproject entry point `train`: a thin wrapper around `mixscale train`."""

from mixscale.cli import train_cmd

if __name__ == "__main__":
    train_cmd(prog_name="train")
