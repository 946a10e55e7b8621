"""Telling the owner: what to say after a reconcile (notices, pure), sending it through
Apprise (send), and the daily drift report.
"""
