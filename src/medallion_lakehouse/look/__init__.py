"""Looking into the lake without writing to it: SQL views, record traces, run plans, verification.

Every module here returns typed results and prints nothing; `cli/look.py` renders them.
"""
