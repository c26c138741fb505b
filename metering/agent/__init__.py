"""gridx-agent: meters GPU time on a seller's host and reports it, signed, to Gridx.

Nothing in this package imports Django (STYLE rule 10): it runs on GPU hosts with only the Python
standard library, cryptography and nvidia-ml-py installed.
"""

AGENT_VERSION = "0.1.0"
