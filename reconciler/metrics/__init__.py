"""lanai's Prometheus metrics (`/metrics`): the reconciles the daemon observes, the
records and live readings collected at each scrape, and the HTTP server for them."""
