"""`lanai setup`: what bootstrap.sh does once the virtualenv exists (config, secrets,
state repo, daemon, summary), in Python so that pytest covers it."""
