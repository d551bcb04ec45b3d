from medinpaint.cli import app

app(prog_name="medinpaint")
