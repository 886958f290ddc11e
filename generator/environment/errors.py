"""Why an environment could not be built: the resolver, the index or a wheel said no."""

from __future__ import annotations

from ..errors import GenBundleError


class EnvBuildError(GenBundleError):
    """The environment cannot be built; nothing has been written when it is raised."""

    exit_code = 1


class NotInCache(EnvBuildError):
    """--offline (and check, which fetches nothing unless asked): a wheel the lock pins is not cached."""
