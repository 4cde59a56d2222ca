from nnrun.cli import app

app(prog_name="nnrun")
