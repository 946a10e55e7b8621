"""One reconcile: fetch, prepare, then each part's sync in turn, and record the outcome.
"""
