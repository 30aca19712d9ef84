"""fedledger's digits-mlp task on Flower 1.42, for bench/round_overhead.py and bench/scale.py."""
