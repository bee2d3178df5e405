"""Personalization: "for you" recommendations of the tasks a person can see, learnt online from feedback.

- ``recommend``: visibility (tenant, project membership, open tasks), person x item contexts, the policy's
  scores, an epsilon-greedy slate with logged propensities, the recommendation as an event;
- ``linucb``: disjoint LinUCB (one arm per people segment) and the slate distribution;
- ``state``: the reducers (people, projects, tasks, views, served slates, bandit statistics; exactly once);
- ``factors`` / ``train``: ALS on implicit feedback and k-means segments, exported as ``.npz``;
- ``obd`` (+ ``mesh.ope``): off-policy evaluation on the Open Bandit Dataset;
- ``simulate`` / ``live``: the closed loop in process and against the running service; ``demo``: its summary;
- ``server`` / ``handlers`` / ``online`` / ``__main__``: the service (gRPC ``Recommend`` on port 50055).
"""
