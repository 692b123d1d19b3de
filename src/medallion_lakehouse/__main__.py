from medallion_lakehouse.cli.main import app

app(prog_name="medallion")
