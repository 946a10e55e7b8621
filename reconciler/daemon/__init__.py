"""`lanai run`: the daemon's schedule, its control socket, the push webhook and the
state repo's post-receive hook.
"""
