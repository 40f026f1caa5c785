"""Where OUT's bytes live: a folder or gs://BUCKET/PREFIX (docs/ARCHITECTURE.md, "Outputs")."""
