"""`lanai bench`: measured model speed, its stored runs, comparisons and chart.
"""
