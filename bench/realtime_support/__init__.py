"""Pieces of bench/realtime.py: a scratch database with commit stamps, the slow payment
provider, payouts kept running during the measurement, and the bare websocket baseline."""
