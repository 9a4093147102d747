"""MLproject entry point `plan`: a thin wrapper around `mixscale plan`."""

from mixscale.cli import plan_cmd

if __name__ == "__main__":
    plan_cmd(prog_name="plan")
