"""The platform capability: tools for an internal developer platform's copilot.

Repositories from templates with a branch-protection policy, project-name rules in YAML, CI pipelines
(GitHub Actions, GitLab CI) and Kubernetes manifests validated offline against their published
schemas, ``kubectl apply`` behind approval, and search over the platform's guidelines. The one design
decision: every artifact is a real file in the run's workspace, checked by the same validator a CI
server or a cluster would use, so an agent's work is verified before anything leaves the machine.

Optional libraries (copier, check-jsonschema, kubernetes-validate: the ``platform`` extra) are
imported on first use, so importing this package costs no more than the tools' schemas.
"""

from edgecrew.platform.config import PlatformConfig
from edgecrew.platform.tools import PLATFORM_TOOLS, register_platform_tools

__all__ = ["PLATFORM_TOOLS", "PlatformConfig", "register_platform_tools"]
