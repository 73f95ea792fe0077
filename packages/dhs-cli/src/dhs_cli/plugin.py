"""dhs-cli registers no components; its commands live in dhs_cli.main."""
