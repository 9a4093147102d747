"""MLproject entry point `plan`: a thin wrapper around `mixscale plan` (``--verify true``
also trains the planned counts ``--seeds`` times and logs the realised accuracy)."""

from mixscale.cli import plan_cmd

if __name__ == "__main__":
    plan_cmd(prog_name="plan")
