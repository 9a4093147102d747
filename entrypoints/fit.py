"""MLproject entry point `fit`: a thin wrapper around `mixscale fit`."""

from mixscale.cli import entry_point, fit_cmd

if __name__ == "__main__":
    entry_point(fit_cmd, "fit")
