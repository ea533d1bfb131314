"""What `shipyard k8s render` is asked for: one model, its replicas, its image and its resources.

Checked once here, so that the manifest builders (pure functions of a Target) never see a bad value
and a mistake is one line at the command line instead of an object the API server refuses later.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields

from shipyard._version import __version__
from shipyard.errors import InvalidInput
from shipyard.names import check_name

# A Kubernetes quantity as people write CPU and memory: 500m, 1, 1.5, 512Mi, 2Gi.
QUANTITY = re.compile(r"(?P<number>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?")
# A DNS-1123 label: the rule for the names of the objects referred to (the Secret).
LABEL = re.compile(r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?")
HTTP_PORT = 8000
GRPC_PORT = 8001
DEFAULT_IMAGE = f"shipyard:{__version__}"
DEFAULT_SECRET = "shipyard-registry"


@dataclass(frozen=True)
class Target:
    """A model to run on Kubernetes. Unset min/max replicas follow `replicas`: min = replicas, max = 2x."""

    name: str
    replicas: int = 2
    image: str = DEFAULT_IMAGE
    min_replicas: int | None = None
    max_replicas: int | None = None
    cpu: str = "1"
    memory: str = "1Gi"
    target_cpu: int = 70
    registry_secret: str = DEFAULT_SECRET
    storage_uri: str | None = None

    def __post_init__(self) -> None:
        check_name(self.name)
        if self.replicas < 1:
            raise InvalidInput(f"--replicas must be at least 1, not {self.replicas}")
        if not 1 <= self.low <= self.replicas <= self.high:
            raise InvalidInput(
                f"replicas must satisfy 1 <= --min-replicas ({self.low}) <= --replicas ({self.replicas}) "
                f"<= --max-replicas ({self.high})"
            )
        for flag, value in (("--cpu", self.cpu), ("--memory", self.memory)):
            quantity = QUANTITY.fullmatch(value)
            if not quantity or not float(quantity["number"]):
                raise InvalidInput(f"{flag} {value!r} is no Kubernetes quantity such as 500m, 2, 512Mi, 4Gi")
        if self.target_cpu < 1:  # above 100 is allowed: pods may use more CPU than they request
            raise InvalidInput(
                f"--target-cpu is a percentage of the CPU request, at least 1, not {self.target_cpu}"
            )
        if not LABEL.fullmatch(self.registry_secret):
            raise InvalidInput(f"--registry-secret {self.registry_secret!r} is no Kubernetes object name")
        if not self.image.strip() or any(c.isspace() for c in self.image):
            raise InvalidInput(f"--image {self.image!r} is no image reference")
        if self.storage_uri is not None and "://" not in self.storage_uri:
            raise InvalidInput(
                f"--storage-uri {self.storage_uri!r} needs a scheme: s3://, gs://, pvc://, https://"
            )

    @property
    def object_name(self) -> str:
        """The model's name as Kubernetes allows it: lower case, '-' for '_' and '.'."""
        return re.sub(r"[_.]", "-", self.name.lower())[:63].rstrip("-")  # names start with one: never empty

    @property
    def app(self) -> str:
        """The name of the Deployment, Service, autoscaler and disruption budget."""
        return f"shipyard-{self.object_name}"[:63].rstrip("-")

    @property
    def low(self) -> int:
        return self.replicas if self.min_replicas is None else self.min_replicas

    @property
    def high(self) -> int:
        return 2 * self.replicas if self.max_replicas is None else self.max_replicas

    @property
    def model_uri(self) -> str:
        """Where KServe's storage initializer fetches the model's folder from."""
        return self.storage_uri or f"s3://shipyard-models/{self.object_name}"

    def command(self) -> str:
        """The command line that renders this target, for the header of each file written."""
        words = ["shipyard", "k8s", "render", self.name, "--replicas", str(self.replicas)]
        flags = {"replicas": None, "name": None}
        for field in fields(self):
            if field.name in flags:
                continue
            value = getattr(self, field.name)
            if value != field.default:
                words += [f"--{field.name.replace('_', '-')}", str(value)]
        return " ".join(words)
