"""The built-in kinds the local API server serves, with a minimal but correct OpenAPI schema.

Minimal: each schema declares the fields this project, its chart and its users write
(with their types, list merge keys and descriptions); parts it does not describe are
marked `x-kubernetes-preserve-unknown-fields` so a valid object is never refused. Correct:
what is declared matches the real API (names, types, merge keys), so `kubectl explain`
and `kubectl apply`'s strategic merge patch read the truth.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

Schema = dict[str, Any]
PRESERVE = "x-kubernetes-preserve-unknown-fields"


@dataclass(frozen=True)
class BuiltinKind:
    resource: str  # "group/version/plural" ("v1/pods" for the core group)
    kind: str
    namespaced: bool
    schema: Schema
    subresources: tuple[str, ...] = ()
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()

    @property
    def group_version(self) -> tuple[str, str]:
        parts = self.resource.split("/")
        return ("", parts[0]) if len(parts) == 2 else (parts[0], parts[1])


# -- schema constructors ----------------------------------------------------------------------


def string(description: str, **extra: Any) -> Schema:
    return {"type": "string", "description": description, **extra}


def integer(description: str, **extra: Any) -> Schema:
    return {"type": "integer", "format": "int32", "description": description, **extra}


def boolean(description: str) -> Schema:
    return {"type": "boolean", "description": description}


def timestamp(description: str) -> Schema:
    return {"type": "string", "format": "date-time", "description": description}


def int_or_string(description: str) -> Schema:
    return {"x-kubernetes-int-or-string": True, "description": description}


def string_map(description: str) -> Schema:
    return {
        "type": "object",
        "additionalProperties": {"type": "string"},
        "description": description,
    }


def open_object(description: str) -> Schema:
    """An object whose fields this server does not describe (any are accepted)."""
    return {"type": "object", "description": description, PRESERVE: True}


def obj(
    description: str,
    properties: Mapping[str, Schema],
    *,
    required: Iterable[str] = (),
    open_: bool = False,
) -> Schema:
    schema: Schema = {"type": "object", "description": description, "properties": dict(properties)}
    if required:
        schema["required"] = list(required)
    if open_:
        schema[PRESERVE] = True
    return schema


def array(
    description: str,
    items: Schema,
    *,
    merge_key: str | None = None,
    map_keys: Iterable[str] = (),
) -> Schema:
    """A list; with `merge_key` a keyed list (strategic merge patch merges items by the key,
    server-side apply by `map_keys`, which default to the merge key)."""
    schema: Schema = {"type": "array", "description": description, "items": items}
    if merge_key:
        schema["x-kubernetes-patch-merge-key"] = merge_key
        schema["x-kubernetes-patch-strategy"] = "merge"
        schema["x-kubernetes-list-type"] = "map"
        schema["x-kubernetes-list-map-keys"] = list(map_keys) or [merge_key]
    return schema


def string_set(description: str) -> Schema:
    return {
        "type": "array",
        "description": description,
        "items": {"type": "string"},
        "x-kubernetes-patch-strategy": "merge",
        "x-kubernetes-list-type": "set",
    }


def strings(description: str) -> Schema:
    return {"type": "array", "description": description, "items": {"type": "string"}}


# -- shared parts -----------------------------------------------------------------------------

OWNER_REFERENCE = obj(
    "An object this one depends on; it is garbage-collected when all its owners are gone.",
    {
        "apiVersion": string("API version of the owner."),
        "kind": string("Kind of the owner."),
        "name": string("Name of the owner."),
        "uid": string("UID of the owner."),
        "controller": boolean("Whether the owner is the managing controller."),
        "blockOwnerDeletion": boolean("Whether foreground deletion of the owner waits for this."),
    },
    required=("apiVersion", "kind", "name", "uid"),
)

OBJECT_META = obj(
    "Standard object metadata: identity, labels, annotations, owners, finalizers.",
    {
        "name": string("Name, unique within a namespace; cannot be updated."),
        "generateName": string("Prefix for a server-generated name when name is empty."),
        "namespace": string("Namespace of a namespaced object."),
        "uid": string("Unique identity, set by the server."),
        "resourceVersion": string("Opaque version for optimistic concurrency and watches."),
        "generation": {
            "type": "integer",
            "format": "int64",
            "description": "Sequence number of the desired state (spec), set by the server.",
        },
        "creationTimestamp": timestamp("When the object was created, set by the server."),
        "deletionTimestamp": timestamp("When the object will be deleted (graceful deletion)."),
        "deletionGracePeriodSeconds": {
            "type": "integer",
            "format": "int64",
            "description": "Seconds allowed for graceful termination before deletion.",
        },
        "labels": string_map("Key/value pairs that selectors match."),
        "annotations": string_map("Key/value pairs for tools; not selectable."),
        "ownerReferences": array("Objects this one depends on.", OWNER_REFERENCE, merge_key="uid"),
        "finalizers": string_set("Must be empty before the object is deleted from the registry."),
        "managedFields": {
            "type": "array",
            "description": "Which manager owns which fields (server-side apply).",
            "items": open_object("One manager's fields."),
        },
        "selfLink": string("Deprecated; not set."),
    },
)

LABEL_SELECTOR = obj(
    "A label query over a set of objects.",
    {
        "matchLabels": string_map("Labels that must all match."),
        "matchExpressions": {
            "type": "array",
            "description": "Label requirements that must all hold.",
            "items": obj(
                "A label requirement.",
                {
                    "key": string("The label key."),
                    "operator": string("In, NotIn, Exists or DoesNotExist."),
                    "values": strings("Values for In and NotIn."),
                },
                required=("key", "operator"),
            ),
        },
    },
)

RESOURCES = obj(
    "Compute resources a container needs and may use.",
    {
        "limits": {
            "type": "object",
            "description": "Maximum amounts (cpu, memory, nvidia.com/gpu...).",
            "additionalProperties": int_or_string("A quantity."),
        },
        "requests": {
            "type": "object",
            "description": "Amounts the scheduler reserves.",
            "additionalProperties": int_or_string("A quantity."),
        },
    },
    open_=True,
)

_ENV_VAR = obj(
    "An environment variable.",
    {
        "name": string("Variable name."),
        "value": string("Literal value."),
        "valueFrom": open_object("Where the value comes from (Secret, ConfigMap, field)."),
    },
    required=("name",),
)
_CONTAINER_PORT = obj(
    "A port the container exposes.",
    {
        "name": string("IANA service name of the port."),
        "containerPort": integer("Port number on the pod's IP."),
        "protocol": string("TCP (default), UDP or SCTP.", default="TCP"),
        "hostPort": integer("Port on the host (rarely needed)."),
    },
    required=("containerPort",),
)
_VOLUME_MOUNT = obj(
    "A volume mounted into the container.",
    {
        "name": string("Name of a volume of the pod."),
        "mountPath": string("Path in the container."),
        "readOnly": boolean("Mount read-only."),
        "subPath": string("Path inside the volume to mount instead of its root."),
    },
    required=("name", "mountPath"),
)
CONTAINER = obj(
    "A container of a pod.",
    {
        "name": string("Container name, a DNS label unique in the pod."),
        "image": string("Container image."),
        "imagePullPolicy": string("Always, IfNotPresent or Never."),
        "command": strings("Entrypoint array (not run in a shell)."),
        "args": strings("Arguments to the entrypoint."),
        "workingDir": string("Working directory."),
        "env": array("Environment variables.", _ENV_VAR, merge_key="name"),
        "envFrom": {
            "type": "array",
            "description": "Sources of environment variables.",
            "items": open_object("A ConfigMap or Secret to take variables from."),
        },
        "ports": array(
            "Ports the container exposes.",
            _CONTAINER_PORT,
            merge_key="containerPort",
            map_keys=("containerPort", "protocol"),
        ),
        "resources": RESOURCES,
        "volumeMounts": array("Volumes to mount.", _VOLUME_MOUNT, merge_key="mountPath"),
        "livenessProbe": open_object("Restart the container when this fails."),
        "readinessProbe": open_object("Take the pod out of Service endpoints when this fails."),
        "startupProbe": open_object("Other probes wait until this succeeds."),
        "lifecycle": open_object("Actions on start and before stop."),
        "securityContext": open_object("Security options of the container."),
        "restartPolicy": string("Always for a native sidecar init container."),
    },
    required=("name",),
    open_=True,
)
_NAME_REFERENCE = obj("A reference by name.", {"name": string("Name of the object.")})
VOLUME = obj(
    "A volume the pod's containers can mount.",
    {
        "name": string("Volume name, a DNS label unique in the pod."),
        "configMap": open_object("A ConfigMap's keys as files."),
        "secret": open_object("A Secret's keys as files."),
        "emptyDir": open_object("A directory that lives as long as the pod."),
        "persistentVolumeClaim": open_object("A PersistentVolumeClaim."),
        "projected": open_object("Several sources projected into one directory."),
        "hostPath": open_object("A path on the node."),
    },
    required=("name",),
    open_=True,
)
POD_SPEC = obj(
    "What a pod runs and where.",
    {
        "containers": array("Containers of the pod.", CONTAINER, merge_key="name"),
        "initContainers": array("Containers run before the others.", CONTAINER, merge_key="name"),
        "volumes": array("Volumes of the pod.", VOLUME, merge_key="name"),
        "serviceAccountName": string("ServiceAccount the pod runs as."),
        "automountServiceAccountToken": boolean("Mount the service account's token."),
        "nodeSelector": string_map("Labels a node must have."),
        "tolerations": {
            "type": "array",
            "description": "Taints the pod tolerates.",
            "items": open_object("A toleration."),
        },
        "affinity": open_object("Scheduling constraints."),
        "topologySpreadConstraints": {
            "type": "array",
            "description": "How pods spread over topology domains.",
            "items": open_object("A spread constraint."),
        },
        "imagePullSecrets": array("Secrets for pulling images.", _NAME_REFERENCE, merge_key="name"),
        "priorityClassName": string("PriorityClass of the pod."),
        "runtimeClassName": string("RuntimeClass of the pod (e.g. nvidia)."),
        "restartPolicy": string("Always, OnFailure or Never."),
        "terminationGracePeriodSeconds": {
            "type": "integer",
            "format": "int64",
            "description": "Seconds between SIGTERM and SIGKILL.",
        },
        "securityContext": open_object("Pod-level security options."),
        "nodeName": string("The node the pod runs on."),
        "hostname": string("The pod's hostname."),
    },
    required=("containers",),
    open_=True,
)
POD_TEMPLATE = obj(
    "The pods a workload creates.",
    {"metadata": OBJECT_META, "spec": POD_SPEC},
)
CONDITION = obj(
    "A condition of the object.",
    {
        "type": string("Type of the condition."),
        "status": string("True, False or Unknown."),
        "reason": string("Machine-readable reason for the last transition."),
        "message": string("Human-readable details."),
        "lastTransitionTime": timestamp("When the status last changed."),
        "lastUpdateTime": timestamp("When the condition was last updated."),
        "observedGeneration": {
            "type": "integer",
            "format": "int64",
            "description": "The generation the condition was set for.",
        },
    },
    required=("type", "status"),
    open_=True,
)


def conditions(description: str) -> Schema:
    return array(description, CONDITION, merge_key="type")


def envelope(
    description: str,
    properties: Mapping[str, Schema],
    *,
    required: Iterable[str] = (),
) -> Schema:
    """A whole object: apiVersion, kind, metadata and the kind's own fields."""
    return obj(
        description,
        {
            "apiVersion": string("Versioned schema of this representation of an object."),
            "kind": string("REST resource this object represents."),
            "metadata": OBJECT_META,
            **properties,
        },
        required=required,
    )


# -- the kinds --------------------------------------------------------------------------------

_DEPLOYMENT = envelope(
    "Declarative updates for Pods: keeps `replicas` pods of the template running.",
    {
        "spec": obj(
            "The desired state of the Deployment.",
            {
                "replicas": integer("Number of desired pods (default 1)."),
                "selector": LABEL_SELECTOR,
                "template": POD_TEMPLATE,
                "strategy": open_object("How old pods are replaced (RollingUpdate, Recreate)."),
                "minReadySeconds": integer("Seconds a new pod must be ready to count available."),
                "revisionHistoryLimit": integer("Old ReplicaSets kept for rollback."),
                "progressDeadlineSeconds": integer("Seconds before a rollout is reported stuck."),
                "paused": boolean("Whether the rollout is paused."),
            },
            required=("selector", "template"),
        ),
        "status": obj(
            "The observed state of the Deployment.",
            {
                "observedGeneration": {
                    "type": "integer",
                    "format": "int64",
                    "description": "The generation the controller observed.",
                },
                "replicas": integer("Pods targeted by the Deployment."),
                "updatedReplicas": integer("Pods of the current template."),
                "readyReplicas": integer("Pods ready."),
                "availableReplicas": integer("Pods ready for at least minReadySeconds."),
                "unavailableReplicas": integer("Pods still needed for 100% availability."),
                "conditions": conditions("Available, Progressing, ReplicaFailure."),
            },
            open_=True,
        ),
    },
)
_SERVICE_PORT = obj(
    "A port the Service exposes.",
    {
        "name": string("Name of the port, unique in the Service."),
        "port": integer("Port the Service listens on."),
        "targetPort": int_or_string("Port (number or name) on the selected pods."),
        "protocol": string("TCP (default), UDP or SCTP.", default="TCP"),
        "nodePort": integer("Port on every node (NodePort, LoadBalancer)."),
        "appProtocol": string("Application protocol of the port."),
    },
    required=("port",),
)
_SERVICE = envelope(
    "A stable address and load balancer for a set of pods.",
    {
        "spec": obj(
            "The desired behaviour of the Service.",
            {
                "type": string("ClusterIP (default), NodePort, LoadBalancer or ExternalName."),
                "selector": string_map("Pods with these labels receive the traffic."),
                "ports": array(
                    "Ports the Service exposes.",
                    _SERVICE_PORT,
                    merge_key="port",
                    map_keys=("port", "protocol"),
                ),
                "clusterIP": string("The virtual IP, allocated by the server ('None': headless)."),
                "clusterIPs": strings("The virtual IPs, allocated by the server."),
                "sessionAffinity": string("ClientIP or None."),
                "externalTrafficPolicy": string("Cluster or Local."),
                "internalTrafficPolicy": string("Cluster or Local."),
                "publishNotReadyAddresses": boolean("Route to pods that are not ready."),
            },
            open_=True,
        ),
        "status": open_object("The observed state of the Service (load balancer)."),
    },
)
_POD = envelope(
    "A group of containers scheduled together on one node.",
    {
        "spec": POD_SPEC,
        "status": obj(
            "The observed state of the Pod.",
            {
                "phase": string("Pending, Running, Succeeded, Failed or Unknown."),
                "conditions": conditions("PodScheduled, Initialized, ContainersReady, Ready."),
                "podIP": string("IP address of the pod."),
                "podIPs": {
                    "type": "array",
                    "description": "IP addresses of the pod.",
                    "items": obj("An IP address.", {"ip": string("The address.")}),
                },
                "hostIP": string("IP address of the node."),
                "startTime": timestamp("When the kubelet acknowledged the pod."),
                "containerStatuses": {
                    "type": "array",
                    "description": "The state of each container.",
                    "items": open_object("A container's state, readiness and restart count."),
                },
            },
            open_=True,
        ),
    },
)
_OBJECT_REFERENCE = obj(
    "A reference to an object.",
    {
        "apiVersion": string("API version of the object."),
        "kind": string("Kind of the object."),
        "name": string("Name of the object."),
        "namespace": string("Namespace of the object."),
        "uid": string("UID of the object."),
        "resourceVersion": string("The object's resourceVersion the reference was made at."),
        "fieldPath": string("A part of the object (e.g. a container)."),
    },
)
_MICRO_TIME = {
    "type": "string",
    "format": "date-time",
    "description": "A time with microseconds.",
}
_EVENT = envelope(
    "A report of something that happened to an object (core v1 Event).",
    {
        "involvedObject": _OBJECT_REFERENCE,
        "reason": string("Short, machine-understandable reason (UpperCamelCase)."),
        "message": string("Human-readable description."),
        "type": string("Normal or Warning."),
        "source": obj(
            "The component that reported the event.",
            {"component": string("Component name."), "host": string("Node name.")},
        ),
        "firstTimestamp": timestamp("When the event was first recorded."),
        "lastTimestamp": timestamp("When the most recent occurrence was recorded."),
        "count": integer("How many times the event occurred."),
        "eventTime": _MICRO_TIME,
        "series": obj(
            "Data about the series of this event (it is repeated).",
            {
                "count": integer("Occurrences in the series so far."),
                "lastObservedTime": _MICRO_TIME,
            },
        ),
        "action": string("What was taken or failed regarding the object."),
        "related": _OBJECT_REFERENCE,
        "reportingComponent": string("Controller that emitted the event."),
        "reportingInstance": string("Instance of the controller."),
    },
    required=("metadata", "involvedObject"),
)
_EVENTS_V1 = envelope(
    "A report of something that happened to an object (events.k8s.io/v1).",
    {
        "eventTime": _MICRO_TIME,
        "series": obj(
            "Data about the series of this event.",
            {"count": integer("Occurrences so far."), "lastObservedTime": _MICRO_TIME},
        ),
        "reportingController": string("Controller that emitted the event."),
        "reportingInstance": string("Instance of the controller."),
        "action": string("What was taken or failed regarding the object."),
        "reason": string("Why the action was taken."),
        "regarding": _OBJECT_REFERENCE,
        "related": _OBJECT_REFERENCE,
        "note": string("Human-readable description."),
        "type": string("Normal or Warning."),
        "deprecatedSource": open_object("The v1 Event's source."),
        "deprecatedFirstTimestamp": timestamp("The v1 Event's firstTimestamp."),
        "deprecatedLastTimestamp": timestamp("The v1 Event's lastTimestamp."),
        "deprecatedCount": integer("The v1 Event's count."),
    },
    required=("eventTime",),
)
_CONFIG_MAP = envelope(
    "Configuration data for pods to consume.",
    {
        "data": string_map("UTF-8 entries."),
        "binaryData": string_map("Binary entries, base64-encoded."),
        "immutable": boolean("Whether the data may no longer change."),
    },
)
_SECRET = envelope(
    "Secret data (keys, tokens, certificates) for pods to consume.",
    {
        "type": string("Opaque (default), kubernetes.io/tls, kubernetes.io/dockerconfigjson..."),
        "data": string_map("Entries, base64-encoded."),
        "stringData": string_map("Write-only plain-text entries, merged into data."),
        "immutable": boolean("Whether the data may no longer change."),
    },
)
_NAMESPACE = envelope(
    "A scope for names; deleting it deletes what it holds.",
    {
        "spec": obj("The namespace's finalizers.", {"finalizers": strings("Finalizers.")}),
        "status": obj(
            "The observed state of the namespace.",
            {
                "phase": string("Active or Terminating."),
                "conditions": conditions("Conditions of the namespace."),
            },
        ),
    },
)
_SERVICE_ACCOUNT = envelope(
    "An identity for processes in pods.",
    {
        "automountServiceAccountToken": boolean("Mount the token into pods by default."),
        "imagePullSecrets": array("Secrets for pulling images.", _NAME_REFERENCE),
        "secrets": {
            "type": "array",
            "description": "Secrets the service account may use.",
            "items": _OBJECT_REFERENCE,
        },
    },
)
_ENDPOINTS = envelope(
    "The addresses behind a Service.",
    {
        "subsets": {
            "type": "array",
            "description": "Sets of addresses and ports.",
            "items": open_object("Addresses with their ports."),
        }
    },
)
_POLICY_RULE = obj(
    "What a Role allows.",
    {
        "apiGroups": strings("API groups ('' for the core group)."),
        "resources": strings("Resources (plurals, with /subresource)."),
        "resourceNames": strings("Names the rule is limited to."),
        "verbs": strings("Verbs allowed (get, list, watch, create, update, patch, delete...)."),
        "nonResourceURLs": strings("Non-resource URLs (ClusterRole only)."),
    },
    required=("verbs",),
)
_ROLE = envelope(
    "Permissions within a namespace.",
    {"rules": {"type": "array", "description": "The rules.", "items": _POLICY_RULE}},
)
_CLUSTER_ROLE = envelope(
    "Permissions across the cluster.",
    {
        "rules": {"type": "array", "description": "The rules.", "items": _POLICY_RULE},
        "aggregationRule": open_object("ClusterRoles aggregated into this one."),
    },
)
_ROLE_REF = obj(
    "The role granted.",
    {
        "apiGroup": string("rbac.authorization.k8s.io"),
        "kind": string("Role or ClusterRole."),
        "name": string("Name of the role."),
    },
    required=("apiGroup", "kind", "name"),
)
_SUBJECT = obj(
    "Who is granted the role.",
    {
        "kind": string("User, Group or ServiceAccount."),
        "apiGroup": string("'' for ServiceAccount, rbac.authorization.k8s.io otherwise."),
        "name": string("Name of the subject."),
        "namespace": string("Namespace of a ServiceAccount."),
    },
    required=("kind", "name"),
)


def _binding(description: str) -> Schema:
    return envelope(
        description,
        {
            "roleRef": _ROLE_REF,
            "subjects": {"type": "array", "description": "The subjects.", "items": _SUBJECT},
        },
        required=("roleRef",),
    )


_PDB = envelope(
    "How many pods of a set may be disrupted voluntarily at once.",
    {
        "spec": obj(
            "The desired disruption budget.",
            {
                "minAvailable": int_or_string("Pods (or percent) that must stay available."),
                "maxUnavailable": int_or_string("Pods (or percent) that may be unavailable."),
                "selector": LABEL_SELECTOR,
                "unhealthyPodEvictionPolicy": string("IfHealthyBudget or AlwaysAllow."),
            },
        ),
        "status": obj(
            "The observed state of the budget.",
            {
                "currentHealthy": integer("Healthy pods."),
                "desiredHealthy": integer("Pods that must be healthy."),
                "disruptionsAllowed": integer("Disruptions allowed now."),
                "expectedPods": integer("Pods counted by the budget."),
                "observedGeneration": {
                    "type": "integer",
                    "format": "int64",
                    "description": "The generation observed.",
                },
                "conditions": conditions("Conditions of the budget."),
            },
            open_=True,
        ),
    },
)
_NETWORK_POLICY = envelope(
    "Which traffic may reach and leave a set of pods.",
    {
        "spec": obj(
            "The policy.",
            {
                "podSelector": LABEL_SELECTOR,
                "policyTypes": strings("Ingress and/or Egress."),
                "ingress": {
                    "type": "array",
                    "description": "Allowed incoming traffic.",
                    "items": open_object("An ingress rule."),
                },
                "egress": {
                    "type": "array",
                    "description": "Allowed outgoing traffic.",
                    "items": open_object("An egress rule."),
                },
            },
            required=("podSelector",),
        )
    },
)
_LEASE = envelope(
    "A lease (leader election, heartbeats).",
    {
        "spec": obj(
            "The lease.",
            {
                "holderIdentity": string("Who holds the lease."),
                "leaseDurationSeconds": integer(
                    "How long the holder may hold it without renewing."
                ),
                "acquireTime": _MICRO_TIME,
                "renewTime": _MICRO_TIME,
                "leaseTransitions": integer("How many times the holder changed."),
            },
            open_=True,
        )
    },
)
_CRD = envelope(
    "A CustomResourceDefinition: a kind this server serves from its schema.",
    {
        "spec": open_object("The group, names, scope and versions with their schemas."),
        "status": open_object("Accepted names and conditions."),
    },
    required=("spec",),
)

BUILTIN_KINDS: tuple[BuiltinKind, ...] = (
    BuiltinKind("v1/namespaces", "Namespace", False, _NAMESPACE, ("status", "finalize"), ("ns",)),
    BuiltinKind("v1/events", "Event", True, _EVENT, (), ("ev",)),
    BuiltinKind("events.k8s.io/v1/events", "Event", True, _EVENTS_V1, (), ("ev",)),
    BuiltinKind("v1/configmaps", "ConfigMap", True, _CONFIG_MAP, (), ("cm",)),
    BuiltinKind("v1/secrets", "Secret", True, _SECRET),
    BuiltinKind("v1/services", "Service", True, _SERVICE, ("status",), ("svc",), ("all",)),
    BuiltinKind("v1/endpoints", "Endpoints", True, _ENDPOINTS, (), ("ep",)),
    BuiltinKind("v1/pods", "Pod", True, _POD, ("status",), ("po",), ("all",)),
    BuiltinKind("v1/serviceaccounts", "ServiceAccount", True, _SERVICE_ACCOUNT, (), ("sa",)),
    BuiltinKind(
        "apps/v1/deployments",
        "Deployment",
        True,
        _DEPLOYMENT,
        ("scale", "status"),
        ("deploy",),
        ("all",),
    ),  # fmt: skip
    BuiltinKind("coordination.k8s.io/v1/leases", "Lease", True, _LEASE),
    BuiltinKind("rbac.authorization.k8s.io/v1/roles", "Role", True, _ROLE),
    BuiltinKind(
        "rbac.authorization.k8s.io/v1/rolebindings",
        "RoleBinding",
        True,
        _binding("Grants a Role or ClusterRole within a namespace."),
    ),  # fmt: skip
    BuiltinKind("rbac.authorization.k8s.io/v1/clusterroles", "ClusterRole", False, _CLUSTER_ROLE),
    BuiltinKind(
        "rbac.authorization.k8s.io/v1/clusterrolebindings",
        "ClusterRoleBinding",
        False,
        _binding("Grants a ClusterRole across the cluster."),
    ),  # fmt: skip
    BuiltinKind(
        "policy/v1/poddisruptionbudgets", "PodDisruptionBudget", True, _PDB, ("status",), ("pdb",)
    ),
    BuiltinKind(
        "networking.k8s.io/v1/networkpolicies",
        "NetworkPolicy",
        True,
        _NETWORK_POLICY,
        (),
        ("netpol",),
    ),  # fmt: skip
    BuiltinKind(
        "apiextensions.k8s.io/v1/customresourcedefinitions",
        "CustomResourceDefinition",
        False,
        _CRD,
        ("status",),
        ("crd", "crds"),
        ("api-extensions",),
    ),  # fmt: skip
)


def definition_name(group: str, version: str, kind: str) -> str:
    """The OpenAPI definition name kube-apiserver uses: io.k8s.api.<group>.<version>.<Kind>
    for built-ins, the reversed group for custom resources (modelfleet.io -> io.modelfleet)."""
    short = {
        "": "core",
        "apps": "apps",
        "coordination.k8s.io": "coordination",
        "rbac.authorization.k8s.io": "rbac",
        "policy": "policy",
        "networking.k8s.io": "networking",
        "events.k8s.io": "events",
    }
    if group == "apiextensions.k8s.io":
        return f"io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.{version}.{kind}"
    if group in short:
        return f"io.k8s.api.{short[group]}.{version}.{kind}"
    return ".".join(reversed(group.split("."))) + f".{version}.{kind}"
