"""The edgescribe web dashboard (record, upload, live transcripts, nodes, history).

Not built yet: this package holds its place in the layout until its own issue.
"""
