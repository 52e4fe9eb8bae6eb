"""Seeded generator of Cerbos policy stores and CheckResources requests, and the runner that
sends them to the stock Cerbos PDP and to Vigil and compares the answers (issue 7, item 4).

`store.generate_store(seed)` is deterministic per seed (pure Python, no set iteration order),
`requests.generate_requests(store, n, seed)` likewise; `runner.run_store` compares one store.
`python -m tests.policy.gen.runner --seeds 200` (`make diff-cerbos`) runs a larger sample.
"""
