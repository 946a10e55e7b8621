"""The `lanai` command line. main registers the commands; base holds what they share;
one module per group of commands; views renders results for people.
"""
