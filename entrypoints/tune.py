"""MLproject entry point `tune`: a thin wrapper around `mixscale tune`."""

from mixscale.cli import entry_point, tune_cmd

if __name__ == "__main__":
    entry_point(tune_cmd, "tune")
