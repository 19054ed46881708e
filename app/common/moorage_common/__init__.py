"""Code shared by the reference application's backend and worker images.

Both images copy this package next to their own: the item model, the queue
contract (queue name and job path) and the environment-driven settings live
here so the two services cannot drift apart.
"""
