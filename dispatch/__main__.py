from dispatch.cli import app

app(prog_name="gasdispatch")
