"""Waiting for a release to be ready: one event-driven engine on the watch API.

Input: the resources to wait for (kind, name, namespace), usually
:func:`resources_in` the release's objects (its rendered manifest), and a
timeout. The modules, bottom up:

* :mod:`.rules`: the waitable kinds and the ``kubectl rollout status`` rules,
  pure (an object in, a state out), pod problems that fail a wait at once.
* :mod:`.watch`: the watcher threads (list, watch, resume, re-list on 410
  Gone) and the informer cache the states are derived from.
* :mod:`.wait`: :func:`wait_for` (decide after every event, say when the API server is unreachable) and
  :func:`snapshot` (one list per kind).
* :mod:`.diagnostics`: :func:`explain_failure` on screen and
  :func:`collect_diagnostics`, a bundle for CI artifacts.
* :mod:`.view`: the :class:`LiveView` and :func:`wait_with_view`, the usual
  sequence of all of the above.
* :mod:`.workloads`: what of a namespace belongs to a release (pods, ReplicaSets,
  claims), found from its manifest, and the workloads a component name picks.
"""

from .diagnostics import collect_diagnostics, explain_failure
from .rules import WAITABLE, PodProblem, Resource, ResourceState, State, Verdict, resources_in
from .view import LiveView, wait_with_view
from .wait import ApiOutage, Result, snapshot, wait_for
from .watch import list_objects
from .workloads import claims_in, components, matching, members, pods_of, release_claims, workloads_in

__all__ = [
    "WAITABLE",
    "ApiOutage",
    "LiveView",
    "PodProblem",
    "Resource",
    "ResourceState",
    "Result",
    "State",
    "Verdict",
    "claims_in",
    "collect_diagnostics",
    "components",
    "explain_failure",
    "list_objects",
    "matching",
    "members",
    "pods_of",
    "release_claims",
    "resources_in",
    "snapshot",
    "wait_for",
    "wait_with_view",
    "workloads_in",
]
