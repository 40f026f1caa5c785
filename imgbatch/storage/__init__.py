"""Where source images are read from: a local folder or gs://BUCKET/PREFIX, behind one small
protocol (`base.Storage`), with the one spelling of gs:// URLs and safe relative paths."""
