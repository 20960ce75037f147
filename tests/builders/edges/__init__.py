"""The issue-10 edge classes as ``EdgeCase`` lists (``CASES`` in each module); ``build`` holds
the small graph DSL they are written in."""
