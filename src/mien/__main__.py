from mien.cli import app

app(prog_name="mien")
