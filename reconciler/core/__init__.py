"""Plain building blocks with no knowledge of lanai's domain.

errors (LanaiError: one sentence and an exit code), sizes and durations written by
people, files (atomic writes), nofollow (file operations inside a directory a container
can write).
"""
