"""rauta's HTTP observer: eBPF capture (XDP + tracepoints) and pure analysis.

See ``rauta.observe.events`` for the types every part shares.
"""
