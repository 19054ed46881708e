"""The cluster an environment deploys to: what it is, the engine to build in, and getting images onto it.

- :mod:`.nodes` (pure): what a cluster is, told from its Node objects (each
  distribution's labels, provider ID, node name, OS image, runtime), whether a
  node is this host, whether the nodes run on the build engine; the context
  name as the fallback;
- :mod:`.detect`: reads the nodes through the API and this host's containerd
  sockets, and joins them with the environment's ``cluster:`` (which wins; the
  allowed values are ``moorage.core.config.CLUSTER_KINDS``);
- :mod:`.target`: :class:`ClusterTarget` and how images reach each kind;
- :mod:`.engines`: the engine to build in (minikube's own Docker daemon for
  its docker runtime, else the host engine), and starting minikube;
- :mod:`.delivery`: a plan (pure) from what the nodes or the registry already
  hold, and its execution (``minikube image load``, ``kind load``, ``k3d image
  import``, ``docker save`` into ``microk8s images import`` / ``nerdctl load``
  / ``ctr import``, or a registry push);
- :mod:`.registry`: what a registry holds under a tag (OCI distribution API),
  its trust and credentials, checked before a push;
- :mod:`.local`: the project's own local cluster (``inv cluster.*``).
"""

from . import registry
from .delivery import DeliveryStep, cluster_images, deliver, delivery_plan, nerdctl_command, push, stream_image
from .detect import (
    adopt_engine,
    cluster_for,
    cluster_kind,
    containerd_sockets,
    current_context,
    detect_cluster,
    docker_nodes,
    engine_facts,
    is_local_address,
    read_nodes,
)
from .engines import Engine, build_engine, ensure_minikube, parse_docker_env
from .nodes import Detection, EngineFacts, NodeFacts, identify, kind_from_context, normalise_ref, shares_engine
from .target import ClusterTarget, delivery_method

__all__ = [
    "ClusterTarget",
    "DeliveryStep",
    "Detection",
    "Engine",
    "EngineFacts",
    "NodeFacts",
    "adopt_engine",
    "build_engine",
    "cluster_for",
    "cluster_images",
    "cluster_kind",
    "containerd_sockets",
    "current_context",
    "deliver",
    "delivery_method",
    "delivery_plan",
    "detect_cluster",
    "docker_nodes",
    "engine_facts",
    "ensure_minikube",
    "identify",
    "is_local_address",
    "kind_from_context",
    "nerdctl_command",
    "normalise_ref",
    "parse_docker_env",
    "push",
    "read_nodes",
    "registry",
    "shares_engine",
    "stream_image",
]
