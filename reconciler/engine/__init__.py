"""One reconcile: fetch, prepare, then each part's sync in turn, and record the outcome.

reconcile is the loop (Engine); prepare renders the head; syncer is the Syncer interface
and the models and Open WebUI syncers (the stack's is stack.sync).
"""
