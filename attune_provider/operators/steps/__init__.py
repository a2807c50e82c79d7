"""The steps every Attune task goes through, each in its own module: the routing gate,
publishing and deciding after a success, failing, and settling (skipping at once what
the outcome leaves with no way to run). `AttuneOperator` (operators/base.py) calls them."""
