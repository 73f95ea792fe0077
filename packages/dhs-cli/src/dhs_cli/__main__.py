from dhs_cli.main import entry

entry()
